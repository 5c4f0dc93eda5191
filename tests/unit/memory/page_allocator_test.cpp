// PageAllocator: the contract in page_allocator.hpp, checked directly and against a per-page reference
// model under random load.
#include "memory/page_allocator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <numeric>
#include <random>
#include <vector>

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

struct Snapshot {
    uint64_t in_use, blocks, high_water, largest, free_ranges;
    bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const PageAllocator& a) {
    return {a.pages_in_use(), a.blocks_in_use(), a.high_water_pages(), a.largest_free_range(),
            a.free_ranges()};
}

// The obvious, slow allocator: one state per page. Used to judge what PageAllocator may and must do.
class Model {
public:
    enum class Page : uint8_t { Never, InUse, Dirty };

    explicit Model(uint64_t capacity) : pages_(capacity, Page::Never) {}

    uint64_t longest_free_run() const {
        uint64_t best = 0, run = 0;
        for (Page p : pages_) {
            run = p == Page::InUse ? 0 : run + 1;
            best = std::max(best, run);
        }
        return best;
    }
    // Marks a range in use; false if any page of it already was (an overlap).
    bool take(uint64_t first, uint64_t n, bool& all_never, bool& any_used_before) {
        all_never = true;
        any_used_before = false;
        for (uint64_t p = first; p < first + n; ++p) {
            if (pages_[p] == Page::InUse) return false;
            all_never = all_never && pages_[p] == Page::Never;
            any_used_before = any_used_before || pages_[p] != Page::Never;
            pages_[p] = Page::InUse;
        }
        high_water_ = std::max(high_water_, first + n);
        blocks_[first] = n;
        return true;
    }
    void give_back(uint64_t first) {
        const uint64_t n = blocks_.at(first);
        std::fill(pages_.begin() + static_cast<std::ptrdiff_t>(first),
                  pages_.begin() + static_cast<std::ptrdiff_t>(first + n), Page::Dirty);
        blocks_.erase(first);
    }
    uint64_t in_use() const {
        return static_cast<uint64_t>(std::count(pages_.begin(), pages_.end(), Page::InUse));
    }
    uint64_t high_water() const { return high_water_; }
    const std::map<uint64_t, uint64_t>& blocks() const { return blocks_; }

private:
    std::vector<Page> pages_;
    std::map<uint64_t, uint64_t> blocks_;  // first page -> pages
    uint64_t high_water_ = 0;
};

TEST(PageAllocator, AllocatedRangesNeverOverlap) {
    for (uint32_t seed : {1u, 2u, 3u, 42u, 4242u}) {
        SCOPED_TRACE(testing::Message() << "seed " << seed);
        constexpr uint64_t kCapacity = 6000;
        PageAllocator a(kCapacity);
        Model m(kCapacity);
        std::mt19937_64 rng(seed);
        std::vector<uint64_t> live;  // first pages of outstanding blocks

        for (int op = 0; op < 6000; ++op) {
            const uint64_t roll = rng() % 100;
            if (roll < 55 || live.empty()) {
                // Mostly small sizes, some spanning several second-level classes, a few large.
                uint64_t n = 1 + rng() % 8;
                if (roll % 5 == 0) n = 1 + rng() % 200;
                if (roll == 7) n = 1 + rng() % 2500;
                const uint64_t longest = m.longest_free_run();
                const auto r = a.allocate(n);
                if (!r) {
                    ASSERT_LT(longest, n) << "refused " << n << " pages with a free run of " << longest;
                    continue;
                }
                ASSERT_EQ(r->pages, n);
                ASSERT_LE(r->first_page + r->pages, kCapacity);
                bool all_never = false, any_used_before = false;
                ASSERT_TRUE(m.take(r->first_page, n, all_never, any_used_before))
                    << "overlap at [" << r->first_page << ", +" << n << ")";
                ASSERT_TRUE(!r->fresh || all_never) << "fresh range contains reused pages";
                // Not a contract requirement, but needless zeroing would be a performance bug.
                ASSERT_TRUE(r->fresh || any_used_before) << "never-used range not marked fresh";
                live.push_back(r->first_page);
            } else if (roll < 95) {
                const size_t i = rng() % live.size();
                const uint64_t first = live[i];
                ASSERT_TRUE(a.free(first, m.blocks().at(first)));
                m.give_back(first);
                live[i] = live.back();
                live.pop_back();
            } else {
                // Misuse: must be refused and leave no trace.
                const Snapshot before = snapshot(a);
                const uint64_t first = rng() % (kCapacity + 10);
                uint64_t n = 1 + rng() % 50;
                const auto it = m.blocks().find(first);
                if (it != m.blocks().end() && it->second == n) ++n;
                ASSERT_FALSE(a.free(first, n));
                ASSERT_EQ(snapshot(a), before);
            }
            ASSERT_EQ(a.pages_in_use(), m.in_use());
            ASSERT_EQ(a.blocks_in_use(), live.size());
            ASSERT_EQ(a.high_water_pages(), m.high_water());
            if (op % 97 == 0) {
                ASSERT_EQ(a.largest_free_range(), m.longest_free_run());
                ASSERT_TRUE(a.check_consistency());
            }
        }
        for (uint64_t first : live) ASSERT_TRUE(a.free(first, m.blocks().at(first)));
        EXPECT_EQ(a.pages_in_use(), 0u);
        EXPECT_EQ(a.largest_free_range(), kCapacity);
        EXPECT_LE(a.free_ranges(), 1u);
        EXPECT_TRUE(a.check_consistency());
    }
}

TEST(PageAllocator, FreedNeighboursCoalesceIntoOneRange) {
    PageAllocator a(100);
    const auto r0 = a.allocate(10), r1 = a.allocate(10), r2 = a.allocate(10), r3 = a.allocate(10);
    ASSERT_TRUE(r0 && r1 && r2 && r3);
    ASSERT_TRUE(a.free(r0->first_page, 10));
    ASSERT_TRUE(a.free(r2->first_page, 10));
    EXPECT_EQ(a.free_ranges(), 2u);
    ASSERT_TRUE(a.free(r1->first_page, 10));  // joins both sides
    EXPECT_EQ(a.free_ranges(), 1u);
    EXPECT_TRUE(a.check_consistency());

    // The whole coalesced range serves one request, from reused pages rather than the wilderness.
    const auto big = a.allocate(30);
    ASSERT_TRUE(big);
    EXPECT_EQ(big->first_page, 0u);
    EXPECT_FALSE(big->fresh);
    EXPECT_EQ(a.high_water_pages(), 40u);
    EXPECT_EQ(a.free_ranges(), 0u);
    EXPECT_TRUE(a.check_consistency());
}

TEST(PageAllocator, FreshOnlyUntilFirstReuse) {
    PageAllocator a(64);
    const auto first = a.allocate(4);
    ASSERT_TRUE(first);
    EXPECT_TRUE(first->fresh);
    ASSERT_TRUE(a.free(first->first_page, 4));

    const auto again = a.allocate(4);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->first_page, first->first_page);
    EXPECT_FALSE(again->fresh);

    const auto beyond = a.allocate(4);
    ASSERT_TRUE(beyond);
    EXPECT_EQ(beyond->first_page, 4u);
    EXPECT_TRUE(beyond->fresh);
    EXPECT_EQ(a.high_water_pages(), 8u);

    // A freed range stays dirty even when it is the topmost: it must not melt back into the wilderness.
    ASSERT_TRUE(a.free(beyond->first_page, 4));
    const auto top = a.allocate(2);
    ASSERT_TRUE(top);
    EXPECT_EQ(top->first_page, 4u);
    EXPECT_FALSE(top->fresh);
}

TEST(PageAllocator, DoubleFreeIsRefusedAndChangesNothing) {
    PageAllocator a(100);
    const auto r0 = a.allocate(5), r1 = a.allocate(5), r2 = a.allocate(5);
    ASSERT_TRUE(r0 && r1 && r2);
    ASSERT_TRUE(a.free(r1->first_page, 5));
    Snapshot before = snapshot(a);
    EXPECT_FALSE(a.free(r1->first_page, 5));
    EXPECT_EQ(snapshot(a), before);

    // After coalescing, the old block's first page is inside a bigger free range: still refused.
    ASSERT_TRUE(a.free(r0->first_page, 5));
    before = snapshot(a);
    EXPECT_FALSE(a.free(r1->first_page, 5));
    EXPECT_FALSE(a.free(r0->first_page, 5));
    EXPECT_FALSE(a.free(r0->first_page, 10));  // exactly the merged free range, never allocated as such
    EXPECT_EQ(snapshot(a), before);
    EXPECT_TRUE(a.check_consistency());
    EXPECT_TRUE(a.free(r2->first_page, 5));
}

TEST(PageAllocator, WrongSizeFreeIsRefused) {
    PageAllocator a(100);
    const auto r = a.allocate(8);
    ASSERT_TRUE(r);
    const Snapshot before = snapshot(a);
    EXPECT_FALSE(a.free(r->first_page, 4));
    EXPECT_FALSE(a.free(r->first_page, 9));
    EXPECT_FALSE(a.free(r->first_page + 1, 7));   // a page inside the block
    EXPECT_FALSE(a.free(50, 8));                  // the wilderness
    EXPECT_FALSE(a.free(100, 1));                 // past capacity
    EXPECT_FALSE(a.free(UINT64_MAX, 1));
    EXPECT_FALSE(a.free(r->first_page, UINT64_MAX));  // first + pages overflows
    EXPECT_FALSE(a.free(UINT64_MAX - 3, 8));
    EXPECT_EQ(snapshot(a), before);
    EXPECT_TRUE(a.check_consistency());
    EXPECT_TRUE(a.free(r->first_page, 8));
}

TEST(PageAllocator, ExhaustionReturnsNulloptNotAbort) {
    PageAllocator a(64);
    const auto all = a.allocate(64);
    ASSERT_TRUE(all);
    EXPECT_FALSE(a.allocate(1));
    EXPECT_FALSE(a.allocate(UINT64_MAX));
    ASSERT_TRUE(a.free(all->first_page, 64));
    EXPECT_FALSE(a.allocate(65));
    EXPECT_FALSE(a.allocate(UINT64_MAX));
    EXPECT_TRUE(a.allocate(64));

    PageAllocator empty(0);
    EXPECT_FALSE(empty.allocate(1));
    EXPECT_EQ(empty.largest_free_range(), 0u);
    EXPECT_FALSE(empty.free(0, 1));

    // Fragmented: plenty of free pages in total, none of them contiguous enough.
    PageAllocator f(40);
    std::vector<uint64_t> firsts;
    for (int i = 0; i < 10; ++i) firsts.push_back(f.allocate(4)->first_page);
    for (size_t i = 0; i < firsts.size(); i += 2) ASSERT_TRUE(f.free(firsts[i], 4));
    EXPECT_EQ(f.pages_in_use(), 20u);
    EXPECT_FALSE(f.allocate(5));
    EXPECT_TRUE(f.check_consistency());
}

TEST(PageAllocator, ZeroPagesIsRefused) {
    PageAllocator a(16);
    EXPECT_FALSE(a.allocate(0));
    const auto r = a.allocate(1);
    ASSERT_TRUE(r);
    EXPECT_FALSE(a.free(r->first_page, 0));
    EXPECT_EQ(a.blocks_in_use(), 1u);
    EXPECT_EQ(a.high_water_pages(), 1u);
}

TEST(PageAllocator, OneMillionOutstandingBlocks) {
    constexpr uint64_t kBlocks = 1'000'000;
    const auto start = std::chrono::steady_clock::now();
    PageAllocator a(2 * kBlocks);
    for (uint64_t i = 0; i < kBlocks; ++i) {
        const auto r = a.allocate(1);
        ASSERT_TRUE(r);
        ASSERT_EQ(r->first_page, i);
        ASSERT_TRUE(r->fresh);
    }
    EXPECT_EQ(a.blocks_in_use(), kBlocks);
    EXPECT_EQ(a.largest_free_range(), kBlocks);

    // Free in random order, so that coalescing happens on either side and the range maps churn.
    std::vector<uint64_t> order(kBlocks);
    std::iota(order.begin(), order.end(), uint64_t{0});
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    for (uint64_t i = 0; i < kBlocks / 2; ++i) ASSERT_TRUE(a.free(order[i], 1));
    EXPECT_TRUE(a.check_consistency());
    // Refill the holes: all from reused pages, none from the wilderness.
    for (uint64_t i = 0; i < kBlocks / 2; ++i) {
        const auto r = a.allocate(1);
        ASSERT_TRUE(r);
        ASSERT_FALSE(r->fresh);
        order[i] = r->first_page;
    }
    EXPECT_EQ(a.high_water_pages(), kBlocks);
    for (uint64_t first : order) ASSERT_TRUE(a.free(first, 1));
    EXPECT_EQ(a.blocks_in_use(), 0u);
    EXPECT_EQ(a.free_ranges(), 1u);
    EXPECT_EQ(a.largest_free_range(), 2 * kBlocks);
    EXPECT_TRUE(a.check_consistency());

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    RecordProperty("seconds", std::to_string(seconds));
    EXPECT_LT(seconds, 30.0) << "far slower than O(1) per operation";  // generous: shared CI machines
}

TEST(PageAllocator, LargestFreeRangeTracksFragmentation) {
    PageAllocator a(1000);
    EXPECT_EQ(a.largest_free_range(), 1000u);
    std::vector<uint64_t> firsts;
    for (int i = 0; i < 100; ++i) firsts.push_back(a.allocate(10)->first_page);
    EXPECT_EQ(a.largest_free_range(), 0u);

    for (size_t i = 0; i < firsts.size(); i += 2) ASSERT_TRUE(a.free(firsts[i], 10));
    EXPECT_EQ(a.free_ranges(), 50u);
    EXPECT_EQ(a.largest_free_range(), 10u);
    ASSERT_TRUE(a.free(firsts[41], 10));  // joins 40 and 42
    EXPECT_EQ(a.largest_free_range(), 30u);
    ASSERT_TRUE(a.free(firsts[43], 10));  // joins 40..44
    EXPECT_EQ(a.largest_free_range(), 50u);
    EXPECT_EQ(a.free_ranges(), 48u);

    const auto r = a.allocate(50);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first_page, firsts[40]);
    EXPECT_EQ(a.largest_free_range(), 10u);
    EXPECT_TRUE(a.check_consistency());
}

TEST(PageAllocator, TopFreeRangeExtendsIntoTheWilderness) {
    PageAllocator a(100);
    const auto low = a.allocate(60), top = a.allocate(20);
    ASSERT_TRUE(low && top);
    ASSERT_TRUE(a.free(top->first_page, 20));
    // 20 freed pages at [60, 80) and 20 never-used at [80, 100): one run of 40.
    EXPECT_EQ(a.largest_free_range(), 40u);
    const auto r = a.allocate(30);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first_page, 60u);
    EXPECT_FALSE(r->fresh);  // partly reused
    EXPECT_EQ(a.high_water_pages(), 90u);
    EXPECT_EQ(a.free_ranges(), 0u);
    EXPECT_TRUE(a.check_consistency());
    ASSERT_TRUE(a.free(r->first_page, 30));
    const auto rest = a.allocate(40);
    ASSERT_TRUE(rest);
    EXPECT_EQ(rest->first_page, 60u);
}

TEST(PageAllocator, RangeDeeperInTheSameSizeClassIsFoundBeforeGivingUp) {
    // 64 and 65 pages share a size class; with the 64-page range at the list head and no wilderness, a
    // 65-page request must still find the 65-page range.
    PageAllocator a(65 + 1 + 64 + 1);
    const auto r65 = a.allocate(65), s1 = a.allocate(1), r64 = a.allocate(64), s2 = a.allocate(1);
    ASSERT_TRUE(r65 && s1 && r64 && s2);
    ASSERT_TRUE(a.free(r65->first_page, 65));
    ASSERT_TRUE(a.free(r64->first_page, 64));
    EXPECT_EQ(a.largest_free_range(), 65u);
    EXPECT_FALSE(a.allocate(66));
    const auto r = a.allocate(65);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first_page, r65->first_page);
    EXPECT_TRUE(a.check_consistency());
}

TEST(PageAllocator, SmallRequestReusesTheTightestRange) {
    PageAllocator a(1000);
    const auto big = a.allocate(100), sep = a.allocate(1), small = a.allocate(8), sep2 = a.allocate(1);
    ASSERT_TRUE(big && sep && small && sep2);
    ASSERT_TRUE(a.free(big->first_page, 100));
    ASSERT_TRUE(a.free(small->first_page, 8));
    const auto r = a.allocate(8);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first_page, small->first_page);  // the 100-page range stays whole
    EXPECT_EQ(a.largest_free_range(), 1000u - 110u);
    const auto r2 = a.allocate(7);  // no 7..8 range left: splits the 100, not the wilderness
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->first_page, big->first_page);
    EXPECT_EQ(a.high_water_pages(), 110u);
}

TEST(PageAllocator, HugeCapacityNeedsNoPerPageBookkeeping) {
    // 2^62 pages: only possible because nothing is kept per page.
    constexpr uint64_t kCapacity = uint64_t{1} << 62;
    PageAllocator a(kCapacity);
    const auto r1 = a.allocate(uint64_t{1} << 61);
    const auto r2 = a.allocate((uint64_t{1} << 40) + 12345);
    const auto r3 = a.allocate(3);
    ASSERT_TRUE(r1 && r2 && r3);
    EXPECT_TRUE(r1->fresh && r2->fresh && r3->fresh);
    ASSERT_TRUE(a.free(r1->first_page, r1->pages));
    ASSERT_TRUE(a.free(r2->first_page, r2->pages));
    EXPECT_EQ(a.largest_free_range(), std::max(r3->first_page, kCapacity - a.high_water_pages()));
    const auto r4 = a.allocate((uint64_t{1} << 61) + 5);
    ASSERT_TRUE(r4);
    EXPECT_EQ(r4->first_page, 0u);
    EXPECT_FALSE(r4->fresh);
    EXPECT_FALSE(a.allocate(kCapacity));
    EXPECT_TRUE(a.check_consistency());

    PageAllocator max(UINT64_MAX);
    const auto m = max.allocate(UINT64_MAX - 1);
    ASSERT_TRUE(m);
    EXPECT_TRUE(max.allocate(1));
    EXPECT_FALSE(max.allocate(1));
    ASSERT_TRUE(max.free(m->first_page, m->pages));
    EXPECT_EQ(max.largest_free_range(), UINT64_MAX - 1);
    EXPECT_TRUE(max.check_consistency());
}

}  // namespace
}  // namespace ndisshm::test
