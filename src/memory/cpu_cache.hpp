// CpuCache: per-CPU stacks of freed small blocks, so that threads do not meet on the arena's lock, and so
// that a block freed by one owner comes back to that owner first, as it is (the owner-aware part is in
// the arena, which reads the owner from the block's state word).
//
// A driver's steady state is "free a 4 KiB receive buffer, allocate one": with one arena lock every
// such pair, from every thread, serialises there (measured: two threads doing 4 KiB pairs spent twice
// as long per pair as one thread). Here each CPU has a slot with its own small lock (base/cpu_lock.hpp),
// which only the threads running on that CPU take, so it is uncontended nearly always (a thread that migrates between
// taking and using it merely shares the slot for a moment; correctness never depends on the CPU).
//
// A slot holds, for each block size of 1..kMaxPages allocation units, two bounded stacks of blocks that
// were freed and not yet given back to the arena: the arena's page allocator still counts them as
// allocated, the arena's statistics count them as free. One stack holds blocks as their owner left
// them, the other clean ones (zero: as the OS gave them, or cleared ahead of time by the arena's
// zeroer). An entry is the block's first unit, whether it is clean, and whether the zeroer cleared it.
// Bounds: about 256 KiB of blocks per size per stack (kMaxPages sizes: about 8 MiB per CPU at most;
// the clean stacks fill only with fresh memory or while zeroing ahead), small enough that the memory
// parked in caches does not matter, large enough to absorb bursts.
//
// Not a policy holder: the arena decides when to refill or flush; this class only keeps the stacks
// and the per-slot counters.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "base/cpu_lock.hpp"

namespace ndisshm::memory {

namespace cache_sizes {
constexpr uint64_t kMaxPages = 16;
// Entries a slot keeps for blocks of `pages` units: ~256 KiB worth, never fewer than 4.
constexpr unsigned capacity(uint64_t pages) { return pages * 4 >= 64 ? 4u : static_cast<unsigned>(64 / pages); }
// Where the stack for blocks of `pages` units starts in a slot's entry array.
constexpr unsigned entries_before(uint64_t pages) {
    unsigned o = 0;
    for (uint64_t p = 1; p < pages; ++p) o += capacity(p);
    return o;
}
// Both as tables, so that the hot path reads them instead of computing them (a loop and a division).
template <unsigned (*F)(uint64_t)>
constexpr std::array<uint16_t, kMaxPages + 2> table() {
    std::array<uint16_t, kMaxPages + 2> t{};
    for (uint64_t p = 1; p <= kMaxPages + 1; ++p) t[p] = static_cast<uint16_t>(F(p));
    return t;
}
inline constexpr auto kCapacity = table<capacity>();
inline constexpr auto kOffset = table<entries_before>();
}  // namespace cache_sizes

class CpuCache {
public:
    static constexpr uint64_t kMaxPages = cache_sizes::kMaxPages;  // blocks of 1..16 units (4..64 KiB) are cached
    static constexpr unsigned capacity(uint64_t pages) { return cache_sizes::capacity(pages); }
    static constexpr unsigned kSlotEntries = cache_sizes::entries_before(kMaxPages + 1);

    // clean: the block reads as zero (`ahead`: because the zeroer cleared it; otherwise it was never used).
    static constexpr uint64_t entry(uint64_t first_page, bool clean, bool ahead = false) {
        return first_page << 2 | (ahead ? 2 : 0) | (clean || ahead ? 1 : 0);
    }
    static constexpr uint64_t entry_page(uint64_t e) { return e >> 2; }
    static constexpr bool entry_clean(uint64_t e) { return (e & 1) != 0; }
    static constexpr bool entry_ahead(uint64_t e) { return (e & 2) != 0; }

    // Each size has two stacks: blocks that may hold what their owner wrote (`Dirty`; the arena keeps
    // the owner in the block's state word) and blocks that read as zero (`Clean`).
    enum Kind : unsigned { Dirty = 0, Clean = 1 };

    class Slot {
    public:
        CpuLock mu;
        // Under mu:
        uint64_t hits = 0, misses = 0;
        uint64_t owner_reuses = 0;  // hits that gave an owner back its own block, as it was
        uint64_t pre_zeroed = 0;    // allocations served by a block the zeroer had cleared
        uint64_t cached_pages = 0, cached_blocks = 0;
        // Bytes zeroed by allocations that ran on this CPU. Written under mu only, with a plain read and
        // write (a locked add would cost as much as the rest of a cache hit's bookkeeping); atomics
        // so that a reader without the lock reads whole values. Only their sum over all slots means
        // anything: a correction may land in another slot than the count it corrects.
        std::atomic<uint64_t> zeroed_by_memset{0}, zeroed_by_release{0};
        void count_zeroed(bool by_release, uint64_t delta) {  // under mu; delta may wrap (a correction)
            std::atomic<uint64_t>& c = by_release ? zeroed_by_release : zeroed_by_memset;
            c.store(c.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
        }

        // All under mu. peek/pop/push: false when the stack is empty/full. peek leaves the entry there.
        bool peek(Kind k, uint64_t pages, uint64_t& out) const {
            const unsigned n = count_[k][pages];
            if (n == 0) return false;
            out = entries_[k][cache_sizes::kOffset[pages] + n - 1];
            return true;
        }
        bool pop(Kind k, uint64_t pages, uint64_t& out) {
            uint16_t& n = count_[k][pages];
            if (n == 0) return false;
            // Last in, first out: the block freed most recently is the likeliest to be in this CPU's caches.
            out = entries_[k][cache_sizes::kOffset[pages] + --n];
            cached_pages -= pages;
            --cached_blocks;
            return true;
        }
        bool push(Kind k, uint64_t pages, uint64_t e) {
            uint16_t& n = count_[k][pages];
            if (n >= cache_sizes::kCapacity[pages]) return false;
            entries_[k][cache_sizes::kOffset[pages] + n++] = e;
            cached_pages += pages;
            ++cached_blocks;
            return true;
        }
        unsigned room(Kind k, uint64_t pages) const { return cache_sizes::kCapacity[pages] - count_[k][pages]; }
        // Takes the older half of a stack (at least one entry) into out; returns how many.
        unsigned take_half(Kind k, uint64_t pages, uint64_t* out);
        // Takes every entry of every stack: f(pages, entry) for each.
        template <class F>
        void drain(F&& f) {
            for (unsigned k = 0; k < 2; ++k) {
                for (uint64_t pages = 1; pages <= kMaxPages; ++pages) {
                    uint64_t* base = entries_[k].data() + cache_sizes::kOffset[pages];
                    for (unsigned i = 0; i < count_[k][pages]; ++i) f(pages, base[i]);
                    cached_pages -= count_[k][pages] * pages;
                    cached_blocks -= count_[k][pages];
                    count_[k][pages] = 0;
                }
            }
        }

    private:
        std::array<std::array<uint16_t, kMaxPages + 1>, 2> count_{};
        std::array<std::array<uint64_t, kSlotEntries>, 2> entries_{};
    };

    // One slot per configured CPU.
    CpuCache();
    Slot& local();  // the calling thread's CPU's slot
    unsigned slots() const { return slots_; }
    Slot& slot(unsigned i) { return slot_[i].s; }

private:
    // Each slot on its own cache lines, so two CPUs never write the same line.
    struct alignas(64) Padded {
        Slot s;
    };
    unsigned slots_;
    std::unique_ptr<Padded[]> slot_;
};

}  // namespace ndisshm::memory
