// What the soak's threads share: the failures found, the live address ranges
// of every block any of them knows (the overlap check), the operation and
// check counters, and the lock that lets the book check see the library and
// the threads' own records at one instant.
//
// The invariants, and where each is checked:
// * a block handed out is zero over its whole length (memory a thread wrote a
//   pattern into before freeing it included): SoakHost::allocate;
// * a live block is the runtime's record of the adapter, queue, usage, length
//   and provider it was asked of (so it belongs to exactly one queue and one
//   provider), and a guest's block lies at the guest physical address of its
//   offset: SoakHost::allocate, SoakGuests (each BLOCK_ADDED);
// * no two live blocks overlap, by host address (LiveRanges, all blocks) and
//   by offset in a guest's memory (the guest process itself);
// * a block still holds its owner's pattern when freed (nobody else wrote
//   it): SoakHost::free_block;
// * the runtime's books (adapter, queue, default provider memory, the hub's
//   queues) equal what the threads hold: SoakHost::check_books;
// * a killed guest's session, queue and blocks go: SoakGuests.
#pragma once

#include <ndisshm/hub.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace ndisshm::cli::soak {

enum Op { kAllocate, kFree, kQueueCreate, kQueueFree, kGuestConnect, kGuestKill, kDeliver, kHostRestart, kOpCount };
inline constexpr const char* kOpNames[kOpCount] = {
    "allocate", "free", "queue_create", "queue_free", "guest_connect", "guest_kill", "deliver", "host_restart"};

enum Check {
    kZero,
    kZeroReused,
    kRecord,
    kOverlap,
    kPattern,
    kBooks,
    kGuestBlock,
    kGuestGone,
    kPackets,
    kHostBooksAtRestart,
    kGuestReconnected,
    kCheckCount
};
inline constexpr const char* kCheckNames[kCheckCount] = {
    "zeroed_on_allocate", "zeroed_after_reuse", "block_record", "no_overlap",      "pattern_kept_until_free",
    "books_equal_stats",  "guest_block",        "guest_gone",   "packets_verified",
    "host_books_empty_at_restart", "guest_reconnected"};

class Counters {
public:
    void op(Op o, uint64_t n = 1) { ops_[o].fetch_add(n, std::memory_order_relaxed); }
    void check(Check c, uint64_t n = 1) { checks_[c].fetch_add(n, std::memory_order_relaxed); }
    uint64_t ops(Op o) const { return ops_[o].load(std::memory_order_relaxed); }
    uint64_t checks(Check c) const { return checks_[c].load(std::memory_order_relaxed); }
    uint64_t total_ops() const {
        uint64_t n = 0;
        for (const auto& o : ops_) n += o.load(std::memory_order_relaxed);
        return n;
    }
    uint64_t total_checks() const {
        uint64_t n = 0;
        for (const auto& c : checks_) n += c.load(std::memory_order_relaxed);
        return n;
    }

private:
    std::array<std::atomic<uint64_t>, kOpCount> ops_{};
    std::array<std::atomic<uint64_t>, kCheckCount> checks_{};
};

// Every failure counts; the first few are kept word for word.
class Failures {
public:
    void add(const std::string& what) {
        std::lock_guard lock(mu_);
        ++count_;
        if (kept_.size() < kKept) kept_.push_back(what);
    }
    uint64_t count() const {
        std::lock_guard lock(mu_);
        return count_;
    }
    std::vector<std::string> kept() const {
        std::lock_guard lock(mu_);
        return kept_;
    }

private:
    static constexpr size_t kKept = 20;
    mutable std::mutex mu_;
    uint64_t count_ = 0;
    std::vector<std::string> kept_;
};

// The host address ranges of every live block the soak knows of, whoever
// allocated it. A range that meets another is a failure: two owners of the
// same bytes. Also remembers where freed blocks started, so a later block
// starting there counts as memory reused (its zero check then proves the
// pattern written before the free is gone).
class LiveRanges {
public:
    // False, with the clash described, if [start, start + bytes) meets a live range. *freed_by: the
    // adapter that freed the memory there (remove()), when *reused.
    bool add(uintptr_t start, uint64_t bytes, const std::string& owner, std::string* clash, bool* reused,
             const void** freed_by = nullptr) {
        std::lock_guard lock(mu_);
        auto was = freed_.find(start);
        *reused = was != freed_.end();
        if (freed_by != nullptr) *freed_by = *reused ? was->second : nullptr;
        if (*reused) freed_.erase(was);
        auto next = ranges_.lower_bound(start);
        if (next != ranges_.end() && next->first < start + bytes) {
            *clash = owner + " overlaps " + next->second.owner;
            return false;
        }
        if (next != ranges_.begin()) {
            auto prev = std::prev(next);
            if (prev->first + prev->second.bytes > start) {
                *clash = owner + " overlaps " + prev->second.owner;
                return false;
            }
        }
        ranges_.emplace(start, Range{bytes, owner});
        return true;
    }
    // `was_written`: the owner wrote it, so its next user must find zeros (unless that user is the
    // adapter `by` that freed it, which the default provider may give it back as it was: host.h).
    void remove(uintptr_t start, bool was_written, const void* by = nullptr) {
        std::lock_guard lock(mu_);
        ranges_.erase(start);
        if (was_written) freed_[start] = by;
    }
    size_t size() const {
        std::lock_guard lock(mu_);
        return ranges_.size();
    }

private:
    struct Range {
        uint64_t bytes;
        std::string owner;
    };
    mutable std::mutex mu_;
    std::map<uintptr_t, Range> ranges_;
    std::unordered_map<uintptr_t, const void*> freed_;  // start -> the adapter that freed it
};

// Shared by every soak thread.
struct World {
    Counters counters;
    Failures failures;
    LiveRanges ranges;
    // Operations hold it shared; the book check holds it alone, so what the
    // threads hold and what the library says are read at the same instant.
    std::shared_mutex books;
    std::atomic<bool> stopping{false};
};

// The counts of one hub added to those of the hubs before it (a soak with
// host restarts runs several, one after another).
inline void add_hub_stats(ndisshm_hub_stats& sum, const ndisshm_hub_stats& h) {
    sum.accepted += h.accepted;
    sum.closed += h.closed;
    sum.refused += h.refused;
    sum.delivered += h.delivered;
    sum.dropped += h.dropped;
    sum.returned += h.returned;
}

}  // namespace ndisshm::cli::soak
