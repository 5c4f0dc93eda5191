// Arena: one memfd, mapped once, carved into page-aligned blocks.
//
// Every block is a range of one memfd, so it can be handed to another process as (fd, offset, length).
// The whole capacity is reserved as address space up front (so a block's address never changes), and
// memory comes under it in steps as the allocator reaches further:
//  - base pages (4 KiB): the file grows with ftruncate, grow_step_bytes at a time; the kernel supplies
//    pages when they are first touched. Transparent huge pages are asked for (MADV_HUGEPAGE), which the
//    kernel honours for shared memory only when /sys/kernel/mm/transparent_hugepage/shmem_enabled says
//    so; thp_advised() tells whether the advice was accepted, not whether it is followed.
//  - huge pages (2 MiB, hugetlb): the pages of each 2 MiB step are allocated from the system's pool
//    with fallocate when the allocator first reaches them, because hugetlb has no overcommit: touching
//    a page the pool could not supply is SIGBUS, so a missing page must be an allocation error instead.
//    Creation fails if not even the first huge page can be had.
// The allocation unit is the base page (4 KiB) either way: drivers ask for 4 KiB blocks and get them.
// In a huge page arena a CONTIGUOUS block of at most 2 MiB is placed inside one huge page when such a
// place is free, so that it is also one physically contiguous range.
//
// Owners and zeroing. Every block is allocated for an owner (a number the caller chooses: the default
// provider uses the adapter's; 0 means "nobody in particular"), which its state word keeps while it is
// live and while it waits in a cache. A block is handed out zero unless it goes back to the owner that
// freed it: then it comes as that owner left it (nothing in it that owner has not seen; Linux's
// page_pool recycles pages within a pool the same way). So: never-used units are zero already, a small
// block (1..16 units) taken from a CPU's cache by its own owner is not cleared, and every other reuse is
// cleared as zeroing.hpp says: by another owner, by owner 0, and every block above 16 units.
//
// Freeing: small blocks go to per-CPU caches (cpu_cache.hpp) when enabled, the rest straight back to the
// page allocator. With a Zeroer (zeroer.hpp), a cache's spill goes to the arena's depot (depot.hpp)
// instead, whose dirty blocks the zeroer clears ahead of time; an allocation that would have to clear
// another owner's block takes a clean one from there when it can.
//
// NUMA: with a node, the mapping prefers that node's memory (mbind), and huge pages are taken from that
// node's pool.
//
// Thread-safe. Lock order: a cache slot's lock, then the arena's mutex; never the other way.
// A free of anything that is not a live block (wrong offset or length, double free, a block sitting in
// a cache) is refused and changes nothing: each block's first unit has a state word, changed by
// compare-and-swap, so a block can be freed once whatever the caches hold.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/result.hpp"
#include "memory/cpu_cache.hpp"
#include "memory/depot.hpp"
#include "memory/zeroing.hpp"
#include "memory/page_allocator.hpp"
#include "os/os.hpp"

namespace ndisshm::memory {

class Zeroer;

struct ArenaConfig {
    std::string name = "ndisshm";
    uint64_t capacity_bytes = uint64_t{16} << 30;   // address space reserved (huge pages: rounded up to 2 MiB)
    uint64_t grow_step_bytes = uint64_t{64} << 20;  // base pages: the file grows by this much at a time
    bool huge_pages = false;                        // 2 MiB hugetlb pages, committed 2 MiB at a time
    int node = -1;                                  // NUMA node whose memory to prefer; -1: no binding
    bool cpu_cache = false;                         // per-CPU caches of freed small blocks
    uint64_t zero_by_release_bytes = 0;             // see zeroing.hpp: 0 the default, UINT64_MAX never
    Zeroer* zeroer = nullptr;  // zeroes freed blocks ahead of time (with cpu_cache only); must outlive it
};

struct ArenaBlock {
    uint64_t offset = 0;  // bytes from the start of the memfd
    uint64_t length = 0;  // bytes, a multiple of unit_bytes()
    std::byte* address = nullptr;
};

struct ArenaStats {
    uint64_t capacity_bytes = 0;  // address space reserved
    uint64_t file_bytes = 0;      // memfd bytes that memory can be behind: the file's size (base pages) or
                                  // the huge pages committed
    uint64_t bytes_in_use = 0;    // blocks handed out and not freed (cached ones are free)
    uint64_t blocks_in_use = 0;
    uint64_t cached_bytes = 0;    // freed blocks held in per-CPU caches
    uint64_t cached_blocks = 0;
    uint64_t high_water_bytes = 0;
    uint64_t largest_free_bytes = 0;  // largest block the page allocator could carve now (caches aside)
    uint64_t zeroed_bytes = 0;        // cleared because reused: the two below together
    uint64_t zeroed_by_memset_bytes = 0;
    uint64_t zeroed_by_release_bytes = 0;
    uint64_t cache_hits = 0;    // allocations served by a per-CPU cache
    uint64_t cache_misses = 0;  // cacheable allocations that had to go to the page allocator
    uint64_t owner_reuses = 0;  // allocations that got their owner's own block back, not cleared
    uint64_t zeroed_ahead_bytes = 0;  // cleared by the zeroer, before anyone asked for them
    uint64_t served_pre_zeroed = 0;   // allocations served by a block the zeroer had cleared
};

class Arena {
public:
    static Result<std::unique_ptr<Arena>> create(const ArenaConfig& config);
    ~Arena();
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    // A block of at least `bytes` (rounded up to units) for `owner`: zero, or (a small block that was
    // `owner`'s before, owner != 0) as `owner` left it. `contiguous`: the caller needs one physical
    // range; in a huge page arena, a block of up to 2 MiB is then placed inside one huge page if any
    // such place is free. Fails with an Error (err = ENOMEM for lack of space, EINVAL for 0 bytes, or
    // the OS's errno when it refused memory) and allocates nothing.
    Result<ArenaBlock> allocate(uint64_t bytes, bool contiguous = false, uint64_t owner = 0);

    // Returns a block exactly as allocate gave it. False, changing nothing, for anything else (the
    // caller reports the misuse).
    bool free(uint64_t offset, uint64_t length);

    // Whether [offset, offset + length) is a live block right now (for callers that must undo something
    // of theirs before free(); the answer can only change by a free or an allocate of that block).
    bool is_live(uint64_t offset, uint64_t length) const;

    // Gives every block held in the per-CPU caches and the depot back to the page allocator (allocate
    // does this by itself before it reports that no room is left). Returns the number of blocks.
    uint64_t flush_caches();

    // For the zeroer: clears one dirty block of the depot (the lock held for its bookkeeping only) and
    // returns its bytes, or 0 when there is none to clear.
    uint64_t zero_ahead_step();

    // Largest owner number a state word keeps; above it an owner counts as 0 (its blocks always cleared).
    static constexpr uint64_t kMaxOwner = (uint64_t{1} << 40) - 1;

    int fd() const { return fd_.get(); }
    std::byte* base() const { return base_; }
    uint64_t unit_bytes() const { return unit_; }  // allocation granularity: the base page
    unsigned unit_shift() const { return unit_shift_; }  // log2(unit_bytes())
    uint64_t page_bytes() const { return config_.huge_pages ? os::kHugePageBytes : unit_; }
    uint64_t capacity_bytes() const { return capacity_; }
    bool huge_pages() const { return config_.huge_pages; }
    bool thp_advised() const { return thp_advised_; }
    int node() const { return config_.node; }
    const std::string& name() const { return config_.name; }
    ArenaStats stats() const;
    // Page allocator consistency (tests): O(number of ranges).
    bool check_consistency() const;

private:
    Arena(ArenaConfig config, os::UniqueFd fd, std::byte* base, uint64_t capacity, uint64_t* states);

    // The state word of the block starting at unit `page`: 0 (no block starts here, or it is in the page
    // allocator), live or cached, with the block's units and owner. Atomic because free() checks it
    // without a lock.
    std::atomic_ref<uint64_t> state(uint64_t page) const { return std::atomic_ref<uint64_t>(states_[page]); }
    static constexpr unsigned kOwnerShift = 24;  // units (at most 2^22) in bits 2..23, the tag in bits 0..1
    static constexpr uint64_t owner_tag(uint64_t owner) { return owner <= kMaxOwner ? owner : 0; }
    static constexpr uint64_t live(uint64_t pages, uint64_t owner) {
        return owner_tag(owner) << kOwnerShift | pages << 2 | 1;
    }
    static constexpr uint64_t cached(uint64_t pages, uint64_t owner) {
        return owner_tag(owner) << kOwnerShift | pages << 2 | 2;
    }
    static constexpr uint64_t state_pages(uint64_t s) { return (s >> 2) & ((uint64_t{1} << (kOwnerShift - 2)) - 1); }
    static constexpr uint64_t state_owner(uint64_t s) { return s >> kOwnerShift; }
    static constexpr bool state_live(uint64_t s) { return (s & 3) == 1; }

    Result<ArenaBlock> allocate_cached(uint64_t pages, uint64_t owner);
    Result<ArenaBlock> allocate_uncached(uint64_t pages, bool within_huge_page, uint64_t owner);
    // A slot's stack for `pages` is empty, or holds only another owner's blocks (`clean_only`): fetches
    // a few blocks in one trip to the arena lock: clean ones from the depot first, then (unless
    // clean_only) dirty ones from the depot, then the page allocator's. Slot locked. How many it pushed
    // (0: none to be had), or the error of a commit the OS refused.
    Result<unsigned> refill(CpuCache::Slot& slot, uint64_t pages, bool clean_only);
    // Entries that left a slot (full, or flushed): into the depot while zeroing ahead, else (or when it
    // is full) back to the page allocator. No slot lock held.
    void spill(uint64_t pages, const uint64_t* entries, unsigned n);
    // Makes memory available under [0, end_bytes): grows the file or commits huge pages. Under mu_.
    Status commit_locked(uint64_t end_bytes);
    // Zeroes the block unless `clean`, and marks it live for `owner`. `counted`: its zeroing was already
    // counted in a slot, as zero_method() foretold (under the slot lock, on the cache's path). `warmth`:
    // whether it was freed on this CPU a moment ago (zeroing.hpp: how that changes the clear).
    ArenaBlock hand_out(uint64_t first_page, uint64_t pages, uint64_t owner, bool clean, bool counted,
                        Warmth warmth = Warmth::Cold);
    // How a reused block of `length` bytes will be zeroed, unless the kernel refuses a punch.
    ZeroMethod zero_method(uint64_t length) const {
        return !config_.huge_pages && length >= release_from_ ? ZeroMethod::Release : ZeroMethod::Memset;
    }
    Error no_room(uint64_t bytes) const;

    ArenaConfig config_;
    os::UniqueFd fd_;
    std::byte* base_;
    uint64_t capacity_;  // bytes mapped
    uint64_t unit_;
    unsigned unit_shift_;  // log2(unit_): the hot paths shift instead of dividing
    uint64_t release_from_;
    bool thp_advised_ = false;
    uint64_t* states_;  // one word per unit, reserved address space: only the touched part costs memory
    mutable std::mutex mu_;
    PageAllocator pages_;     // under mu_
    uint64_t committed_ = 0;  // under mu_: bytes of the file memory can be behind
    // Under mu_: the huge page pool's last refusal, repeated without asking until retry_commit_at_.
    static constexpr std::chrono::milliseconds kCommitRetry{10};
    std::optional<Error> commit_refused_;
    std::chrono::steady_clock::time_point retry_commit_at_{};
    Depot depot_;             // under mu_ (only with a zeroer)
    std::atomic<uint64_t> zeroed_ahead_bytes_{0};  // written by the zeroer only
    mutable CpuCache cache_;  // stacks used only with config_.cpu_cache; counters always
};

}  // namespace ndisshm::memory
