// CpuCache: per-CPU stacks of freed small blocks, so that threads do not meet on the arena's lock.
//
// A driver's steady state is "free a 4 KiB receive buffer, allocate one": with one arena lock every
// such pair, from every thread, serialises there (measured: two threads doing 4 KiB pairs spent twice
// as long per pair as one thread). Here each CPU has a slot with its own small lock (base/cpu_lock.hpp),
// which only the threads running on that CPU take, so it is uncontended nearly always (a thread that migrates between
// taking and using it merely shares the slot for a moment; correctness never depends on the CPU).
//
// A slot holds, for each block size of 1..kMaxPages allocation units, a bounded stack of blocks that
// were freed and not yet given back to the arena's page allocator: the arena's page allocator still
// counts them as allocated, the arena's statistics count them as free. An entry is the block's first
// unit and whether its memory is still as the OS gave it (never written, so it needs no zeroing).
// Bounds: about 256 KiB of blocks per size per slot (kMaxPages sizes: about 4 MiB per CPU at most),
// small enough that the memory parked in caches does not matter, large enough to absorb bursts.
//
// Not a policy holder: the arena decides when to refill or flush; this class only keeps the stacks
// and the per-slot counters.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "base/cpu_lock.hpp"

namespace ndisshm::memory {

namespace cache_sizes {
// Entries a slot keeps for blocks of `pages` units: ~256 KiB worth, never fewer than 4.
constexpr unsigned capacity(uint64_t pages) { return pages * 4 >= 64 ? 4u : static_cast<unsigned>(64 / pages); }
// Where the stack for blocks of `pages` units starts in a slot's entry array.
constexpr unsigned entries_before(uint64_t pages) {
    unsigned o = 0;
    for (uint64_t p = 1; p < pages; ++p) o += capacity(p);
    return o;
}
}  // namespace cache_sizes

class CpuCache {
public:
    static constexpr uint64_t kMaxPages = 16;  // blocks of 1..16 units (4..64 KiB) are cached
    static constexpr unsigned capacity(uint64_t pages) { return cache_sizes::capacity(pages); }
    static constexpr unsigned kSlotEntries = cache_sizes::entries_before(kMaxPages + 1);

    static constexpr uint64_t entry(uint64_t first_page, bool fresh) { return first_page << 1 | (fresh ? 1 : 0); }
    static constexpr uint64_t entry_page(uint64_t e) { return e >> 1; }
    static constexpr bool entry_fresh(uint64_t e) { return (e & 1) != 0; }

    class Slot {
    public:
        CpuLock mu;
        // Under mu:
        uint64_t hits = 0, misses = 0;
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

        // All under mu. pop/push: false when the stack is empty/full.
        bool pop(uint64_t pages, uint64_t& out);
        bool push(uint64_t pages, uint64_t e);
        // Takes the older half of a stack (at least one entry) into out; returns how many.
        unsigned take_half(uint64_t pages, uint64_t* out);
        // Takes every entry of every stack: f(pages, entry) for each.
        template <class F>
        void drain(F&& f) {
            for (uint64_t pages = 1; pages <= kMaxPages; ++pages) {
                uint64_t* base = entries_.data() + offset(pages);
                for (unsigned i = 0; i < count_[pages]; ++i) f(pages, base[i]);
                cached_pages -= count_[pages] * pages;
                cached_blocks -= count_[pages];
                count_[pages] = 0;
            }
        }

    private:
        static constexpr unsigned offset(uint64_t pages) { return cache_sizes::entries_before(pages); }
        std::array<uint16_t, kMaxPages + 1> count_{};
        std::array<uint64_t, kSlotEntries> entries_{};
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
