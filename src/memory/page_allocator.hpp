// PageAllocator: decides which pages of [0, capacity_pages) each block gets.
//
// Contract:
//  - Offsets only: no memory is touched, no OS call is made. The arena above maps the pages; this class
//    only keeps the books, so it can be tested in isolation and reasoned about as pure arithmetic.
//  - allocate(n) returns exactly n contiguous pages, or std::nullopt when no run of n free pages exists
//    (never throws, never aborts for lack of space or for lack of memory for its own bookkeeping).
//  - A returned range is `fresh` only if none of its pages was ever handed out before, so the caller may
//    skip zeroing it (the memory behind it is still as the OS gave it).
//  - free(first, n) accepts only a range that is allocated exactly like that; anything else (double free,
//    wrong size, out of bounds, a page in the middle of a block) returns false and changes nothing, so the
//    caller can report misuse without the allocator being corrupted by it.
//  - Not thread-safe: the caller (the arena) holds its lock around every call, including the observers.
//
// Design: TLSF (two-level segregated fit). Free ranges sit in lists by size class: first level is
// log2(pages), second level splits each power of two into 32 steps, and two levels of bitmaps find a
// non-empty list with one count-trailing-zeros each, so allocate and free are O(1) (expected, as the
// range lookups are hash-table lookups, amortised over table growth). The never-used top of the space,
// [high_water, capacity) (the "wilderness"), is kept apart from the lists: it is the only source of fresh
// pages, and it is used only when no freed range fits, so reused (dirty) memory is preferred and the
// high-water mark (which bounds how far the memfd has to grow) rises as slowly as possible. Freed ranges
// never go back into the wilderness, because their pages are dirty.
//
// Bookkeeping costs roughly 60-100 bytes per range (allocated or free), nothing per page: a million
// outstanding blocks need under 100 MiB whatever their sizes, and an empty space of any size almost nothing.
// The tables do not shrink after a peak (the next peak will want them again).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

namespace ndisshm::memory {

class PageAllocator {
public:
    struct Range {
        uint64_t first_page;
        uint64_t pages;
        bool fresh;  // no page of it was ever handed out before: the caller may skip zeroing
    };

    explicit PageAllocator(uint64_t capacity_pages);

    // Exactly `pages` contiguous pages (pages >= 1), or std::nullopt when no free run is that large.
    // O(1), except when the request would otherwise fail: before giving up, the one size-class list the
    // request falls into is searched in full (see page_allocator.cpp), so that nullopt really means
    // "no room" and not "TLSF rounding missed it".
    std::optional<Range> allocate(uint64_t pages) noexcept;

    // Like allocate, but placed so that it does not cross a multiple of `boundary` pages (pages <=
    // boundary): with boundary = one huge page, the block lies inside one huge page and is physically
    // contiguous. std::nullopt when no such place is free (the caller may then take any place). Looks
    // at a few ranges per size class from the request's up to the first class whose every range has a
    // place (pages + boundary - 1), then at the wilderness: bounded, but not O(1) like allocate, and
    // meant for the rare CONTIGUOUS requests that need it.
    std::optional<Range> allocate_within(uint64_t pages, uint64_t boundary) noexcept;

    // Gives back a range exactly as allocate returned it (same first_page, same pages). Coalesces it with
    // free neighbours. False, changing nothing, for anything else. O(1).
    bool free(uint64_t first_page, uint64_t pages) noexcept;

    uint64_t capacity_pages() const { return capacity_; }
    uint64_t pages_in_use() const { return pages_in_use_; }
    uint64_t blocks_in_use() const { return blocks_in_use_; }
    // Highest page index ever handed out + 1: every page at or beyond it is fresh.
    uint64_t high_water_pages() const { return high_water_; }
    // Largest n for which allocate(n) would succeed now. Cost: one walk of the largest non-empty
    // size-class list (short in practice: few ranges are that large); meant for statistics, not hot paths.
    uint64_t largest_free_range() const;
    // Number of free ranges in the size-class lists (the wilderness not counted): a fragmentation measure.
    uint64_t free_ranges() const { return free_ranges_; }

    // Walks every structure and checks that they agree with each other. O(number of ranges); for tests
    // and debugging, never needed in normal operation.
    bool check_consistency() const;

private:
    static constexpr uint32_t kNil = UINT32_MAX;
    static constexpr unsigned kSlLog2 = 5;
    static constexpr unsigned kSlCount = 1u << kSlLog2;
    // Level 0 holds the sizes below kSlCount one per list; level f >= 1 holds [2^(f+4), 2^(f+5)).
    static constexpr unsigned kFlCount = 64 - kSlLog2 + 1;

    // One range other than the wilderness. Ranges live in a pool and are named by index, so that the
    // hash maps and lists hold 4-byte links instead of pointers that a growing vector would invalidate.
    struct Node {
        uint64_t first_page = 0;
        uint64_t pages = 0;
        uint32_t prev_free = kNil;  // links in a size-class list while free;
        uint32_t next_free = kNil;  // next_free also links the pool's unused nodes
        bool is_free = false;
    };

    // Open-addressing (linear probing, backward-shift deletion) map from a page index to a node index.
    // std::unordered_map would spend a heap node per entry and could throw on any insert; this one only
    // allocates in reserve(), which allocate() calls before it changes anything.
    class PageMap {
    public:
        void reserve(uint64_t entries);  // may throw std::bad_alloc; nothing else does
        void insert(uint64_t page, uint32_t node) noexcept;  // page must be absent, room reserved
        uint32_t find(uint64_t page) const noexcept;         // kNil when absent
        void erase(uint64_t page) noexcept;                  // page must be present
        uint64_t size() const { return size_; }
        template <class F>
        void for_each(F&& f) const {
            for (uint64_t i = 0; i < keys_.size(); ++i) {
                if (keys_[i] != kEmpty) f(keys_[i], values_[i]);
            }
        }

    private:
        static constexpr uint64_t kEmpty = UINT64_MAX;  // no page index can be this: capacity <= 2^64-1
        uint64_t home(uint64_t page) const noexcept;

        std::vector<uint64_t> keys_;
        std::vector<uint32_t> values_;
        uint64_t size_ = 0;
        unsigned shift_ = 64;
    };

    struct SizeClass {
        unsigned fl;
        unsigned sl;
    };
    static SizeClass class_of(uint64_t pages) noexcept;
    static uint64_t class_max(SizeClass c) noexcept;
    bool next_class(SizeClass& c) const noexcept;
    bool find_non_empty(SizeClass& c) const noexcept;

    bool reserve_nodes(unsigned extra) noexcept;  // room for `extra` more ranges in the pool and maps
    uint32_t new_node(uint64_t first_page, uint64_t pages) noexcept;
    void release_node(uint32_t index) noexcept;
    void link_free(uint32_t index) noexcept;    // into its size-class list and the by-last-page map
    void unlink_free(uint32_t index) noexcept;  // the reverse
    Range take_free(uint32_t index, uint64_t pages) noexcept;
    Range take_tail_and_wilderness(uint32_t index, uint64_t pages) noexcept;
    Range carve_wilderness(uint64_t pages) noexcept;
    static bool place_within(const Node& n, uint64_t pages, uint64_t boundary, uint64_t& at) noexcept;
    Range take_free_at(uint32_t index, uint64_t at, uint64_t pages) noexcept;

    uint64_t capacity_;
    uint64_t high_water_ = 0;
    uint64_t pages_in_use_ = 0;
    uint64_t blocks_in_use_ = 0;
    uint64_t free_ranges_ = 0;

    std::vector<Node> nodes_;
    uint32_t unused_nodes_ = kNil;  // pool nodes to reuse, linked through next_free
    uint64_t live_nodes_ = 0;
    PageMap by_first_;  // first page -> node, for every range: validates free() and finds the next neighbour
    PageMap by_last_;   // last page -> node, for free ranges only: finds the previous neighbour to coalesce

    uint64_t fl_bitmap_ = 0;
    std::array<uint32_t, kFlCount> sl_bitmap_{};
    std::array<std::array<uint32_t, kSlCount>, kFlCount> heads_;
};

}  // namespace ndisshm::memory
