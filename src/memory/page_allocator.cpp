// PageAllocator: TLSF over page offsets. The contract is in page_allocator.hpp.
//
// Invariants (check_consistency() verifies all of them):
//  - [0, high_water) is tiled exactly by the ranges in by_first_, each allocated or free; the wilderness
//    [high_water, capacity) belongs to no range.
//  - No two free ranges touch (free() coalesces both sides, a split leaves its remainder next to the
//    block just allocated), so a free range is always the largest run of free pages it is part of,
//    except that the free range ending at high_water continues into the wilderness.
//  - A free range is in exactly one size-class list and in by_last_; an allocated one in neither.
//  - Bitmap bits are set exactly for the non-empty lists.
//  - by_first_ and by_last_ have room reserved for one more entry than there are ranges, and free()
//    never increases the number of ranges, so only allocate() ever needs memory, and it gets it before it
//    changes anything: a failed reservation is just "no room", and state is never half-updated.
#include "memory/page_allocator.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <utility>

namespace ndisshm::memory {

// ---------------------------------------------------------------------------------------------------------
// PageMap

uint64_t PageAllocator::PageMap::home(uint64_t page) const noexcept {
    // Fibonacci hashing: the keys are page indices, often consecutive or multiples of a block size, and
    // multiplying by 2^64/phi spreads such runs evenly over the table's top bits.
    return (page * 0x9E3779B97F4A7C15ull) >> shift_;
}

void PageAllocator::PageMap::reserve(uint64_t entries) {
    const uint64_t slots = keys_.size();
    // Load at most 3/4: linear probing stays short there, and doubling keeps growth amortised O(1).
    if (slots != 0 && entries * 4 <= slots * 3) return;
    uint64_t new_slots = std::max<uint64_t>(slots, 16);
    while (entries * 4 > new_slots * 3) new_slots *= 2;

    // Build the new table aside, so that a bad_alloc leaves this one untouched.
    std::vector<uint64_t> keys(new_slots, kEmpty);
    std::vector<uint32_t> values(new_slots, kNil);
    const unsigned shift = 64 - static_cast<unsigned>(std::countr_zero(new_slots));
    const uint64_t mask = new_slots - 1;
    for (uint64_t i = 0; i < slots; ++i) {
        if (keys_[i] == kEmpty) continue;
        uint64_t j = (keys_[i] * 0x9E3779B97F4A7C15ull) >> shift;
        while (keys[j] != kEmpty) j = (j + 1) & mask;
        keys[j] = keys_[i];
        values[j] = values_[i];
    }
    keys_.swap(keys);
    values_.swap(values);
    shift_ = shift;
}

void PageAllocator::PageMap::insert(uint64_t page, uint32_t node) noexcept {
    assert((size_ + 1) * 4 <= keys_.size() * 3 && "PageMap::insert without reserve");
    const uint64_t mask = keys_.size() - 1;
    uint64_t i = home(page);
    while (keys_[i] != kEmpty) {
        assert(keys_[i] != page);
        i = (i + 1) & mask;
    }
    keys_[i] = page;
    values_[i] = node;
    ++size_;
}

uint32_t PageAllocator::PageMap::find(uint64_t page) const noexcept {
    if (keys_.empty()) return kNil;
    const uint64_t mask = keys_.size() - 1;
    for (uint64_t i = home(page); keys_[i] != kEmpty; i = (i + 1) & mask) {
        if (keys_[i] == page) return values_[i];
    }
    return kNil;
}

void PageAllocator::PageMap::erase(uint64_t page) noexcept {
    const uint64_t mask = keys_.size() - 1;
    uint64_t hole = home(page);
    while (keys_[hole] != page) {
        assert(keys_[hole] != kEmpty && "PageMap::erase of an absent key");
        hole = (hole + 1) & mask;
    }
    // Backward-shift deletion instead of tombstones: tombstones would pile up under the constant
    // allocate/free churn and make lookups degrade until a rehash.
    for (uint64_t j = (hole + 1) & mask; keys_[j] != kEmpty; j = (j + 1) & mask) {
        // The entry at j may fill the hole only if its home is not in the cyclic interval (hole, j].
        if (((j - home(keys_[j])) & mask) >= ((j - hole) & mask)) {
            keys_[hole] = keys_[j];
            values_[hole] = values_[j];
            hole = j;
        }
    }
    keys_[hole] = kEmpty;
    --size_;
}

// ---------------------------------------------------------------------------------------------------------
// Size classes

PageAllocator::SizeClass PageAllocator::class_of(uint64_t pages) noexcept {
    // Below kSlCount one list per size: splitting a power of two into 32 steps makes no sense there.
    if (pages < kSlCount) return {0, static_cast<unsigned>(pages)};
    const unsigned log2 = 63 - static_cast<unsigned>(std::countl_zero(pages));
    return {log2 - kSlLog2 + 1, static_cast<unsigned>((pages >> (log2 - kSlLog2)) - kSlCount)};
}

uint64_t PageAllocator::class_max(SizeClass c) noexcept {
    if (c.fl == 0) return c.sl;
    const uint64_t step = uint64_t{1} << (c.fl - 1);
    // Written as min + (step - 1) so that the top class does not overflow.
    return ((uint64_t{kSlCount} + c.sl) << (c.fl - 1)) + (step - 1);
}

bool PageAllocator::next_class(SizeClass& c) const noexcept {
    if (++c.sl < kSlCount) return true;
    c.sl = 0;
    return ++c.fl < kFlCount;
}

// The first non-empty list at or above c, in O(1) through the two bitmaps.
bool PageAllocator::find_non_empty(SizeClass& c) const noexcept {
    uint32_t sl_map = sl_bitmap_[c.fl] & (~uint32_t{0} << c.sl);
    if (sl_map == 0) {
        if (c.fl + 1 >= kFlCount) return false;
        const uint64_t fl_map = fl_bitmap_ & (~uint64_t{0} << (c.fl + 1));
        if (fl_map == 0) return false;
        c.fl = static_cast<unsigned>(std::countr_zero(fl_map));
        sl_map = sl_bitmap_[c.fl];
    }
    c.sl = static_cast<unsigned>(std::countr_zero(sl_map));
    return true;
}

// ---------------------------------------------------------------------------------------------------------
// Nodes and lists

PageAllocator::PageAllocator(uint64_t capacity_pages) : capacity_(capacity_pages) {
    for (auto& row : heads_) row.fill(kNil);
}

bool PageAllocator::reserve_nodes(unsigned extra) noexcept {
    try {
        if (live_nodes_ + extra >= kNil) return false;  // node indices are 32-bit: ~4G ranges at most
        // Unused pool nodes are reused first; only the rest needs room at the end of the vector.
        uint64_t reusable = 0;
        for (uint32_t i = unused_nodes_; i != kNil && reusable < extra; i = nodes_[i].next_free) ++reusable;
        if (nodes_.size() + (extra - reusable) > nodes_.capacity()) {
            const uint64_t want = std::max<uint64_t>(64, uint64_t{nodes_.size()} * 2);
            nodes_.reserve(static_cast<size_t>(std::min<uint64_t>(want, kNil)));
        }
        by_first_.reserve(live_nodes_ + extra);
        // Free ranges never outnumber ranges, so this much room in by_last_ covers every later free().
        by_last_.reserve(live_nodes_ + extra);
        return true;
    } catch (...) {  // bad_alloc (or length_error, which these sizes cannot reach): just "no room"
        return false;
    }
}

uint32_t PageAllocator::new_node(uint64_t first_page, uint64_t pages) noexcept {
    uint32_t index = unused_nodes_;
    if (index != kNil) {
        unused_nodes_ = nodes_[index].next_free;
        nodes_[index] = Node{};
    } else {
        index = static_cast<uint32_t>(nodes_.size());
        nodes_.emplace_back();  // cannot reallocate: reserve_for_one_more_node() made room
    }
    nodes_[index].first_page = first_page;
    nodes_[index].pages = pages;
    ++live_nodes_;
    by_first_.insert(first_page, index);
    return index;
}

void PageAllocator::release_node(uint32_t index) noexcept {
    Node& n = nodes_[index];
    by_first_.erase(n.first_page);
    n = Node{};
    n.next_free = unused_nodes_;
    unused_nodes_ = index;
    --live_nodes_;
}

void PageAllocator::link_free(uint32_t index) noexcept {
    Node& n = nodes_[index];
    const SizeClass c = class_of(n.pages);
    uint32_t& head = heads_[c.fl][c.sl];
    n.is_free = true;
    n.prev_free = kNil;
    n.next_free = head;
    if (head != kNil) nodes_[head].prev_free = index;
    head = index;
    sl_bitmap_[c.fl] |= uint32_t{1} << c.sl;
    fl_bitmap_ |= uint64_t{1} << c.fl;
    by_last_.insert(n.first_page + n.pages - 1, index);
    ++free_ranges_;
}

void PageAllocator::unlink_free(uint32_t index) noexcept {
    Node& n = nodes_[index];
    const SizeClass c = class_of(n.pages);
    if (n.prev_free != kNil) {
        nodes_[n.prev_free].next_free = n.next_free;
    } else {
        heads_[c.fl][c.sl] = n.next_free;
        if (n.next_free == kNil) {
            sl_bitmap_[c.fl] &= ~(uint32_t{1} << c.sl);
            if (sl_bitmap_[c.fl] == 0) fl_bitmap_ &= ~(uint64_t{1} << c.fl);
        }
    }
    if (n.next_free != kNil) nodes_[n.next_free].prev_free = n.prev_free;
    n.prev_free = n.next_free = kNil;
    n.is_free = false;
    by_last_.erase(n.first_page + n.pages - 1);
    --free_ranges_;
}

// ---------------------------------------------------------------------------------------------------------
// Allocation

PageAllocator::Range PageAllocator::take_free(uint32_t index, uint64_t pages) noexcept {
    unlink_free(index);
    const uint64_t first = nodes_[index].first_page;
    const uint64_t rest = nodes_[index].pages - pages;
    if (rest != 0) {
        // The front is handed out and the back stays free: the back keeps touching whatever followed the
        // whole range, which is not free (free ranges never touch), so no coalescing is due.
        nodes_[index].pages = pages;
        link_free(new_node(first + pages, rest));
    }
    pages_in_use_ += pages;
    ++blocks_in_use_;
    return Range{first, pages, false};
}

// For a request that neither a free range nor the wilderness can hold alone, but the free range that ends
// at high_water and the wilderness after it can together: without this, "no room" would be reported
// with enough contiguous free pages. The result is partly dirty, so not fresh.
PageAllocator::Range PageAllocator::take_tail_and_wilderness(uint32_t index, uint64_t pages) noexcept {
    if (nodes_[index].pages >= pages) return take_free(index, pages);
    unlink_free(index);
    nodes_[index].pages = pages;
    high_water_ = nodes_[index].first_page + pages;
    pages_in_use_ += pages;
    ++blocks_in_use_;
    return Range{nodes_[index].first_page, pages, false};
}

PageAllocator::Range PageAllocator::carve_wilderness(uint64_t pages) noexcept {
    const uint64_t first = high_water_;
    new_node(first, pages);
    high_water_ += pages;
    pages_in_use_ += pages;
    ++blocks_in_use_;
    return Range{first, pages, true};
}

std::optional<PageAllocator::Range> PageAllocator::allocate(uint64_t pages) noexcept {
    if (pages == 0 || pages > capacity_ - pages_in_use_) return std::nullopt;
    if (!reserve_nodes(1)) return std::nullopt;

    // 1. The head of the request's own list, if it is large enough: the tightest fit to be had in O(1).
    const SizeClass own = class_of(pages);
    const uint32_t head = heads_[own.fl][own.sl];
    if (head != kNil && nodes_[head].pages >= pages) return take_free(head, pages);

    // 2. Any range of a larger class: every one of them fits, so its list's head will do (TLSF's
    //    good fit: at most 1/32 more than the request's class, unless only much larger ranges exist).
    SizeClass c = own;
    if (next_class(c) && find_non_empty(c)) return take_free(heads_[c.fl][c.sl], pages);

    // 3. The wilderness, only now: reused pages first keeps high_water, and with it the memfd, small.
    const uint64_t wilderness = capacity_ - high_water_;
    if (wilderness >= pages) return carve_wilderness(pages);

    // 4. The free range that ends at high_water, extended into the wilderness.
    if (high_water_ != 0) {
        const uint32_t tail = by_last_.find(high_water_ - 1);
        if (tail != kNil && nodes_[tail].pages + wilderness >= pages) {
            return take_tail_and_wilderness(tail, pages);
        }
    }

    // 5. Step 1 looked only at the head of the own list, whose ranges are between class_min and class_max
    //    pages; one further down may still fit. This walk is the one place that is not O(1), and it
    //    happens only when the request would fail otherwise, on a list whose ranges are all within 1/32
    //    of the request. It is what makes nullopt mean "no room" rather than "TLSF rounding missed it".
    if (head != kNil) {
        for (uint32_t i = nodes_[head].next_free; i != kNil; i = nodes_[i].next_free) {
            if (nodes_[i].pages >= pages) return take_free(i, pages);
        }
    }
    return std::nullopt;
}

// Where in free range n a block of `pages` can start without crossing a multiple of `boundary`: at its
// start, or else at the first boundary inside it.
bool PageAllocator::place_within(const Node& n, uint64_t pages, uint64_t boundary, uint64_t& at) noexcept {
    at = n.first_page;
    if (at % boundary + pages > boundary) at = (at / boundary + 1) * boundary;
    return at + pages <= n.first_page + n.pages;
}

// Carves [at, at + pages) out of free range `index`; what is left on either side stays free (each side
// touches only the new block and whatever the whole range touched, which was not free).
PageAllocator::Range PageAllocator::take_free_at(uint32_t index, uint64_t at, uint64_t pages) noexcept {
    unlink_free(index);
    const uint64_t first = nodes_[index].first_page;
    const uint64_t end = first + nodes_[index].pages;
    if (at > first) {
        nodes_[index].pages = at - first;
        link_free(index);
        new_node(at, pages);
    } else {
        nodes_[index].pages = pages;
    }
    if (at + pages < end) link_free(new_node(at + pages, end - at - pages));
    pages_in_use_ += pages;
    ++blocks_in_use_;
    return Range{at, pages, false};
}

std::optional<PageAllocator::Range> PageAllocator::allocate_within(uint64_t pages, uint64_t boundary) noexcept {
    if (pages == 0 || boundary == 0 || pages > boundary || pages > capacity_ - pages_in_use_) return std::nullopt;
    if (!reserve_nodes(2)) return std::nullopt;  // a split in three adds two ranges
    constexpr unsigned kLookPerClass = 4;
    // Every range of a class above this one is at least pages + boundary - 1 long, which always holds a
    // place: the search ends there at the latest.
    const SizeClass sure = class_of(pages + boundary - 1);
    SizeClass c = class_of(pages);
    while (find_non_empty(c)) {
        unsigned looked = 0;
        for (uint32_t i = heads_[c.fl][c.sl]; i != kNil && looked < kLookPerClass; i = nodes_[i].next_free, ++looked) {
            uint64_t at = 0;
            if (place_within(nodes_[i], pages, boundary, at)) return take_free_at(i, at, pages);
        }
        if (c.fl > sure.fl || (c.fl == sure.fl && c.sl > sure.sl) || !next_class(c)) break;
    }
    // The wilderness, from the next boundary if the block would cross one: the gap before it becomes
    // free (merged with the free range that ends at high_water, if any, as free ranges never touch).
    uint64_t at = high_water_;
    if (at % boundary + pages > boundary) at = (at / boundary + 1) * boundary;
    if (at > capacity_ || pages > capacity_ - at) return std::nullopt;
    if (at > high_water_) {
        const uint32_t tail = high_water_ != 0 ? by_last_.find(high_water_ - 1) : kNil;
        if (tail != kNil) {
            unlink_free(tail);
            nodes_[tail].pages += at - high_water_;
            link_free(tail);
        } else {
            link_free(new_node(high_water_, at - high_water_));
        }
    }
    new_node(at, pages);
    high_water_ = at + pages;
    pages_in_use_ += pages;
    ++blocks_in_use_;
    return Range{at, pages, true};
}

bool PageAllocator::free(uint64_t first_page, uint64_t pages) noexcept {
    // Validate completely before changing anything: a bad free must leave no trace.
    if (pages == 0 || first_page >= high_water_ || pages > high_water_ - first_page) return false;
    const uint32_t index = by_first_.find(first_page);
    if (index == kNil || nodes_[index].is_free || nodes_[index].pages != pages) return false;

    pages_in_use_ -= pages;
    --blocks_in_use_;

    uint64_t first = first_page;
    uint64_t end = first_page + pages;
    uint32_t survivor = index;
    if (first != 0) {
        const uint32_t prev = by_last_.find(first - 1);  // by_last_ holds free ranges only
        if (prev != kNil) {
            unlink_free(prev);
            first = nodes_[prev].first_page;
            release_node(index);
            survivor = prev;
        }
    }
    if (end < high_water_) {
        // [0, high_water) is tiled by ranges, so some range starts at `end`; merge it only if free.
        const uint32_t next = by_first_.find(end);
        if (next != kNil && nodes_[next].is_free) {
            unlink_free(next);
            end += nodes_[next].pages;
            release_node(next);
        }
    }
    nodes_[survivor].first_page = first;
    nodes_[survivor].pages = end - first;
    link_free(survivor);
    return true;
}

// ---------------------------------------------------------------------------------------------------------
// Observers

uint64_t PageAllocator::largest_free_range() const {
    uint64_t best = capacity_ - high_water_;
    if (high_water_ != 0) {
        const uint32_t tail = by_last_.find(high_water_ - 1);
        if (tail != kNil) best += nodes_[tail].pages;
    }
    if (fl_bitmap_ == 0) return best;
    const unsigned fl = 63 - static_cast<unsigned>(std::countl_zero(fl_bitmap_));
    const unsigned sl = 31 - static_cast<unsigned>(std::countl_zero(sl_bitmap_[fl]));
    // The largest free range is in the top non-empty list, but lists are not sorted: walk it, stopping
    // as soon as nothing in it could beat what is known.
    const uint64_t cap = class_max({fl, sl});
    for (uint32_t i = heads_[fl][sl]; i != kNil && best < cap; i = nodes_[i].next_free) {
        best = std::max(best, nodes_[i].pages);
    }
    return best;
}

bool PageAllocator::check_consistency() const {
    if (high_water_ > capacity_ || pages_in_use_ > high_water_) return false;
    if (by_first_.size() != live_nodes_ || by_last_.size() != free_ranges_) return false;

    // Tiling of [0, high_water) and the counters.
    std::vector<std::pair<uint64_t, uint32_t>> ranges;
    ranges.reserve(static_cast<size_t>(live_nodes_));
    bool keys_match = true;
    by_first_.for_each([&](uint64_t page, uint32_t index) {
        if (index >= nodes_.size() || nodes_[index].first_page != page) keys_match = false;
        ranges.emplace_back(page, index);
    });
    if (!keys_match) return false;
    std::sort(ranges.begin(), ranges.end());
    uint64_t expect = 0, used = 0, blocks = 0, free_count = 0;
    bool prev_free = false;
    for (const auto& [page, index] : ranges) {
        const Node& n = nodes_[index];
        if (page != expect || n.pages == 0) return false;
        if (n.is_free && prev_free) return false;  // two free neighbours that were not coalesced
        if (n.is_free) {
            ++free_count;
            if (by_last_.find(page + n.pages - 1) != index) return false;
        } else {
            used += n.pages;
            ++blocks;
        }
        prev_free = n.is_free;
        expect = page + n.pages;
    }
    if (expect != high_water_ || used != pages_in_use_ || blocks != blocks_in_use_) return false;
    if (free_count != free_ranges_) return false;

    // Lists and bitmaps.
    uint64_t listed = 0;
    for (unsigned fl = 0; fl < kFlCount; ++fl) {
        if (((fl_bitmap_ >> fl) & 1) != (sl_bitmap_[fl] != 0 ? 1u : 0u)) return false;
        for (unsigned sl = 0; sl < kSlCount; ++sl) {
            const uint32_t head = heads_[fl][sl];
            if (((sl_bitmap_[fl] >> sl) & 1) != (head != kNil ? 1u : 0u)) return false;
            uint32_t prev = kNil;
            for (uint32_t i = head; i != kNil; i = nodes_[i].next_free) {
                const Node& n = nodes_[i];
                const SizeClass c = class_of(n.pages);
                if (!n.is_free || n.prev_free != prev || c.fl != fl || c.sl != sl) return false;
                if (by_first_.find(n.first_page) != i) return false;
                if (++listed > free_ranges_) return false;  // also stops a cycle
                prev = i;
            }
        }
    }
    return listed == free_ranges_;
}

}  // namespace ndisshm::memory
