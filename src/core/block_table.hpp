// Where block records live: one reserved array per runtime, so a block handle
// (the record's address) can be checked by range and stride before it is
// ever dereferenced, and records never move.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/books.hpp"

namespace ndisshm::core {

class BlockTable {
public:
    BlockTable(Block* base, uint64_t capacity) : base_(base), capacity_(capacity) {}

    // A never-used record, or nullptr when the table is full.
    Block* carve() {
        uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
        if (i >= capacity_) {
            next_.store(capacity_, std::memory_order_relaxed);
            return nullptr;
        }
        return new (&base_[i]) Block();
    }

    // The record this handle names, or nullptr if it names none.
    Block* find(const void* handle) const {
        const auto p = reinterpret_cast<uintptr_t>(handle);
        const auto b = reinterpret_cast<uintptr_t>(base_);
        // next_ may briefly run past capacity while a full table is asked
        // for more (see carve): never name a record beyond the table.
        uint64_t carved = next_.load(std::memory_order_acquire);
        if (carved > capacity_) carved = capacity_;
        if (p < b || (p - b) % sizeof(Block) != 0 || (p - b) / sizeof(Block) >= carved) return nullptr;
        return &base_[(p - b) / sizeof(Block)];
    }

    uint64_t capacity() const { return capacity_; }
    uint64_t carved() const {
        uint64_t n = next_.load(std::memory_order_relaxed);
        return n < capacity_ ? n : capacity_;
    }
    Block* base() const { return base_; }

private:
    Block* base_;
    uint64_t capacity_;
    std::atomic<uint64_t> next_{0};
};

}  // namespace ndisshm::core
