// Depot: an arena's small blocks that are free and in no CPU's cache, kept apart from the page allocator
// while the arena zeroes ahead (arena.hpp), so that the zeroer can find them and clear them at leisure.
//
// Two bounded stacks per block size (1..16 units, as the CPU caches): `dirty` holds blocks spilled from
// a CPU's cache, still holding what their owner wrote; `clean` holds blocks the zeroer has cleared, for
// any owner. The zeroer takes a dirty block (reserving room for it in the clean stack first, so that its
// work is never thrown away), clears it with no lock held, and gives it back as clean. A full stack
// refuses: the caller gives the block to the page allocator instead.
//
// A size is `wanted` when an allocation had to clear another owner's block itself, for want of a clean
// one: the zeroer then also clears blocks it takes from the page allocator, until that size's clean
// stack is full (so that blocks start to flow: an allocation that takes a clean block leaves the other
// owner's block in its CPU's cache, whose spills come here dirty).
//
// Bounds: 1 MiB of blocks per size and kind (at least 4 blocks): at most 32 MiB per arena, only while
// zeroing ahead. Not thread-safe: the arena's lock is held around every call except clean_hint().
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "memory/cpu_cache.hpp"

namespace ndisshm::memory {

namespace depot_sizes {
constexpr unsigned capacity(uint64_t pages) {
    return pages * 4 >= 256 ? 4u : static_cast<unsigned>(256 / pages);
}
constexpr unsigned entries_before(uint64_t pages) {
    unsigned o = 0;
    for (uint64_t p = 1; p < pages; ++p) o += capacity(p);
    return o;
}
inline constexpr auto kCapacity = cache_sizes::table<capacity>();
inline constexpr auto kOffset = cache_sizes::table<entries_before>();
constexpr unsigned kEntries = entries_before(CpuCache::kMaxPages + 1);
}  // namespace depot_sizes

class Depot {
public:
    static constexpr unsigned capacity(uint64_t pages) { return depot_sizes::capacity(pages); }

    // Entries are first pages (dirty) or CpuCache entries (clean). False when that stack is full.
    bool push_dirty(uint64_t pages, uint64_t first_page) { return dirty_.push(pages, first_page); }
    bool push_clean(uint64_t pages, uint64_t entry) {
        if (!clean_.push(pages, entry)) return false;
        clean_hint_[pages].store(clean_.count(pages), std::memory_order_relaxed);
        return true;
    }
    // Up to `max` entries of blocks of `pages` units, the newest first; returns how many.
    unsigned take_clean(uint64_t pages, uint64_t* out, unsigned max) {
        const unsigned n = clean_.take(pages, out, max);
        clean_hint_[pages].store(clean_.count(pages), std::memory_order_relaxed);
        return n;
    }
    unsigned take_dirty(uint64_t pages, uint64_t* out, unsigned max) { return dirty_.take(pages, out, max); }

    // For the zeroer: a dirty block whose size has room left among the clean ones (the room is kept for
    // it until zeroed() or unreserve()). False when there is no such block.
    bool take_for_zeroing(uint64_t& pages, uint64_t& first_page);
    // A block of `pages` units is being cleared (taken above, or carved for a wanted size): it counts
    // as the depot's (free memory) until zeroed() gives it back as clean.
    void clearing(uint64_t pages) {
        ++clearing_blocks_;
        clearing_pages_ += pages;
    }
    void zeroed(uint64_t pages, uint64_t entry) {  // the block taken for zeroing, now clean
        --reserved_[pages];
        --clearing_blocks_;
        clearing_pages_ -= pages;
        [[maybe_unused]] const bool pushed = push_clean(pages, entry);
    }

    // For the zeroer: a wanted size whose clean stack has room (reserved until zeroed() or unreserve()),
    // for a block from the page allocator. A size found full is wanted no more.
    bool take_wanted(uint64_t& pages) {
        for (uint64_t p = 1; p <= CpuCache::kMaxPages; ++p) {
            if (!wanted_[p].load(std::memory_order_relaxed)) continue;
            if (clean_.count(p) + reserved_[p] >= depot_sizes::kCapacity[p]) {
                wanted_[p].store(false, std::memory_order_relaxed);
                continue;
            }
            ++reserved_[p];
            pages = p;
            return true;
        }
        return false;
    }
    void unreserve(uint64_t pages) {  // the page allocator had no block: not wanted for now
        --reserved_[pages];
        wanted_[pages].store(false, std::memory_order_relaxed);
    }
    // An allocation cleared another owner's block of `pages` units itself. True if the size was not
    // wanted yet (the caller then wakes the zeroer). Without the lock: a relaxed flag.
    bool want(uint64_t pages) {
        if (wanted_[pages].load(std::memory_order_relaxed)) return false;
        wanted_[pages].store(true, std::memory_order_relaxed);
        return true;
    }

    // Clean blocks of `pages` units now, read without the lock: a hint that a refill would find one.
    uint32_t clean_hint(uint64_t pages) const { return clean_hint_[pages].load(std::memory_order_relaxed); }
    uint64_t dirty_blocks() const { return dirty_.blocks; }
    uint64_t blocks() const { return dirty_.blocks + clean_.blocks + clearing_blocks_; }
    uint64_t pages() const { return dirty_.pages + clean_.pages + clearing_pages_; }

    // Takes every entry: f(pages, first_page) for each, dirty and clean alike. Memory is short when
    // this is called: no size is wanted any more until an allocation clears a block again.
    template <class F>
    void drain(F&& f) {
        dirty_.drain([&](uint64_t pages, uint64_t first) { f(pages, first); });
        clean_.drain([&](uint64_t pages, uint64_t e) { f(pages, CpuCache::entry_page(e)); });
        for (auto& h : clean_hint_) h.store(0, std::memory_order_relaxed);
        for (auto& w : wanted_) w.store(false, std::memory_order_relaxed);
    }

private:
    struct Stacks {
        std::array<uint16_t, CpuCache::kMaxPages + 1> n{};
        std::array<uint64_t, depot_sizes::kEntries> e{};
        uint64_t blocks = 0, pages = 0;
        unsigned count(uint64_t p) const { return n[p]; }
        bool push(uint64_t p, uint64_t v) {
            if (n[p] >= depot_sizes::kCapacity[p]) return false;
            e[depot_sizes::kOffset[p] + n[p]++] = v;
            ++blocks;
            pages += p;
            return true;
        }
        unsigned take(uint64_t p, uint64_t* out, unsigned max) {
            unsigned k = 0;
            for (; k < max && n[p] > 0; ++k) out[k] = e[depot_sizes::kOffset[p] + --n[p]];
            blocks -= k;
            pages -= k * p;
            return k;
        }
        template <class F>
        void drain(F&& f) {
            for (uint64_t p = 1; p <= CpuCache::kMaxPages; ++p) {
                for (unsigned i = 0; i < n[p]; ++i) f(p, e[depot_sizes::kOffset[p] + i]);
                n[p] = 0;
            }
            blocks = pages = 0;
        }
    };
    Stacks dirty_, clean_;
    std::array<uint16_t, CpuCache::kMaxPages + 1> reserved_{};  // clean room kept for blocks being zeroed
    std::array<std::atomic<uint32_t>, CpuCache::kMaxPages + 1> clean_hint_{};
    std::array<std::atomic<bool>, CpuCache::kMaxPages + 1> wanted_{};
    uint64_t next_size_ = 1;  // where take_for_zeroing looks first: sizes take turns
    uint64_t clearing_blocks_ = 0, clearing_pages_ = 0;  // in the zeroer's hands now
};

inline bool Depot::take_for_zeroing(uint64_t& pages, uint64_t& first_page) {
    for (uint64_t i = 0; i < CpuCache::kMaxPages; ++i) {
        const uint64_t p = (next_size_ + i - 1) % CpuCache::kMaxPages + 1;
        if (dirty_.count(p) == 0 || clean_.count(p) + reserved_[p] >= depot_sizes::kCapacity[p]) continue;
        dirty_.take(p, &first_page, 1);
        ++reserved_[p];
        pages = p;
        next_size_ = p % CpuCache::kMaxPages + 1;
        return true;
    }
    return false;
}

}  // namespace ndisshm::memory
