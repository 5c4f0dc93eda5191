// PageAllocator::allocate_within: blocks that do not cross a boundary (a huge page), used for CONTIGUOUS
// requests in huge page arenas.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "memory/page_allocator.hpp"

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

constexpr uint64_t kHuge = 512;  // 4 KiB units per 2 MiB

bool inside_one(uint64_t first, uint64_t pages, uint64_t boundary) {
    return first / boundary == (first + pages - 1) / boundary;
}

TEST(PageAllocatorWithin, FromTheWildernessSkipsToTheNextBoundaryAndKeepsTheGapFree) {
    PageAllocator a(4 * kHuge);
    auto first = a.allocate(500);
    ASSERT_TRUE(first);
    auto b = a.allocate_within(100, kHuge);  // 500 + 100 would cross 512
    ASSERT_TRUE(b);
    EXPECT_EQ(b->first_page, kHuge);
    EXPECT_TRUE(b->fresh);
    EXPECT_EQ(a.free_ranges(), 1u) << "the 12 units before the boundary are a free range";
    EXPECT_TRUE(a.check_consistency());
    // The gap is usable by anything that fits it.
    auto small = a.allocate(12);
    ASSERT_TRUE(small);
    EXPECT_EQ(small->first_page, 500u);
    EXPECT_TRUE(a.check_consistency());
}

TEST(PageAllocatorWithin, GapMergesWithAFreeRangeEndingAtHighWater) {
    PageAllocator a(4 * kHuge);
    auto x = a.allocate(400);
    auto y = a.allocate(100);
    ASSERT_TRUE(x && y);
    ASSERT_TRUE(a.free(y->first_page, y->pages));  // free [400, 500) ends at high water
    auto b = a.allocate_within(200, kHuge);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->first_page, kHuge);
    EXPECT_EQ(a.free_ranges(), 1u) << "[400, 512) is one range";
    EXPECT_TRUE(a.check_consistency());
}

TEST(PageAllocatorWithin, InsideAFreeRangeSplitsItInThree) {
    PageAllocator a(4 * kHuge);
    auto big = a.allocate(3 * kHuge);
    auto guard = a.allocate(1);
    ASSERT_TRUE(big && guard);
    ASSERT_TRUE(a.free(big->first_page, big->pages));
    // A free range [0, 1536): a 300-unit block at 0 fits inside the first huge page.
    auto b = a.allocate_within(300, kHuge);
    ASSERT_TRUE(b);
    EXPECT_TRUE(inside_one(b->first_page, 300, kHuge));
    EXPECT_FALSE(b->fresh);
    // Now [300, 1536) is free: 300 more would cross 512 at 300, so it goes to 512.
    auto c = a.allocate_within(300, kHuge);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->first_page, kHuge);
    EXPECT_EQ(a.free_ranges(), 2u) << "[300, 512) and [812, 1536)";
    EXPECT_TRUE(a.check_consistency());
    ASSERT_TRUE(a.free(c->first_page, c->pages));
    ASSERT_TRUE(a.free(b->first_page, b->pages));
    EXPECT_EQ(a.free_ranges(), 1u) << "all coalesced again";
    EXPECT_TRUE(a.check_consistency());
}

TEST(PageAllocatorWithin, NulloptWhenNoPlaceInsideOneBoundaryIsFree) {
    PageAllocator a(2 * kHuge);
    auto x = a.allocate(kHuge - 10);
    auto y = a.allocate(20);  // [502, 522): across the boundary
    auto z = a.allocate(kHuge - 10);
    ASSERT_TRUE(x && y && z);
    ASSERT_TRUE(a.free(y->first_page, y->pages));
    EXPECT_FALSE(a.allocate_within(20, kHuge)) << "the only 20 free units cross the boundary";
    EXPECT_TRUE(a.check_consistency());
    EXPECT_TRUE(a.allocate(20)) << "anywhere is still possible";
    EXPECT_FALSE(a.allocate_within(kHuge + 1, kHuge)) << "larger than the boundary";
    EXPECT_FALSE(a.allocate_within(0, kHuge));
}

TEST(PageAllocatorWithin, RandomLoadNeverCrossesAndStaysConsistent) {
    PageAllocator a(64 * kHuge);
    std::mt19937_64 rng(7);
    std::map<uint64_t, uint64_t> live;
    for (int step = 0; step < 20000; ++step) {
        if (live.empty() || rng() % 3 != 0) {
            const uint64_t pages = 1 + rng() % (rng() % 4 == 0 ? kHuge : 64);
            const bool within = rng() % 2 == 0;
            auto r = within ? a.allocate_within(pages, kHuge) : a.allocate(pages);
            if (!r) continue;
            ASSERT_EQ(r->pages, pages);
            if (within) {
                ASSERT_TRUE(inside_one(r->first_page, pages, kHuge)) << r->first_page << "+" << pages;
            }
            ASSERT_TRUE(live.emplace(r->first_page, pages).second);
        } else {
            auto it = live.begin();
            std::advance(it, static_cast<long>(rng() % live.size()));
            ASSERT_TRUE(a.free(it->first, it->second));
            live.erase(it);
        }
        if (step % 1000 == 0) {
            ASSERT_TRUE(a.check_consistency()) << step;
        }
    }
    // And from an empty allocator whose free space is all dirty ranges.
    for (auto& [first, pages] : live) ASSERT_TRUE(a.free(first, pages));
    for (int i = 0; i < 200; ++i) {
        const uint64_t pages = 1 + rng() % kHuge;
        auto r = a.allocate_within(pages, kHuge);
        if (!r) break;
        EXPECT_TRUE(inside_one(r->first_page, pages, kHuge)) << r->first_page << "+" << pages;
    }
    EXPECT_TRUE(a.check_consistency());
}

}  // namespace
}  // namespace ndisshm::test
