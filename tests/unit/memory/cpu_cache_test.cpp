// memory::CpuCache: the per-CPU stacks of freed small blocks (bounded, LIFO, halves flushed oldest first).
#include "memory/cpu_cache.hpp"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

TEST(CpuCache, CapacityIsAboutAQuarterMebibytePerSizeAndAtLeastFour) {
    EXPECT_EQ(CpuCache::capacity(1), 64u);
    EXPECT_EQ(CpuCache::capacity(2), 32u);
    EXPECT_EQ(CpuCache::capacity(16), 4u);
    for (uint64_t pages = 1; pages <= CpuCache::kMaxPages; ++pages) {
        EXPECT_GE(CpuCache::capacity(pages), 4u);
        EXPECT_LE(CpuCache::capacity(pages) * pages, 64u) << pages;
    }
    EXPECT_LT(CpuCache::kSlotEntries * sizeof(uint64_t), 4096u) << "a slot stays small";
}

TEST(CpuCache, EntriesKeepPageAndFreshness) {
    const uint64_t e = CpuCache::entry(12345, true);
    EXPECT_EQ(CpuCache::entry_page(e), 12345u);
    EXPECT_TRUE(CpuCache::entry_fresh(e));
    EXPECT_FALSE(CpuCache::entry_fresh(CpuCache::entry(7, false)));
}

TEST(CpuCache, SlotIsLastInFirstOutPerSizeAndBounded) {
    CpuCache cache;
    ASSERT_GE(cache.slots(), 1u);
    CpuCache::Slot& s = cache.slot(0);
    std::lock_guard lock(s.mu);
    uint64_t e = 0;
    EXPECT_FALSE(s.pop(1, e));
    for (unsigned i = 0; i < CpuCache::capacity(3); ++i) ASSERT_TRUE(s.push(3, CpuCache::entry(100 + i, false)));
    EXPECT_FALSE(s.push(3, CpuCache::entry(999, false))) << "full";
    EXPECT_TRUE(s.push(1, CpuCache::entry(5, false))) << "sizes do not share room";
    EXPECT_EQ(s.cached_blocks, CpuCache::capacity(3) + 1);
    EXPECT_EQ(s.cached_pages, 3u * CpuCache::capacity(3) + 1);
    ASSERT_TRUE(s.pop(3, e));
    EXPECT_EQ(CpuCache::entry_page(e), 100u + CpuCache::capacity(3) - 1) << "the newest first";
    ASSERT_TRUE(s.pop(1, e));
    EXPECT_EQ(CpuCache::entry_page(e), 5u);
    EXPECT_FALSE(s.pop(2, e));
}

TEST(CpuCache, TakeHalfTakesTheOldestAndKeepsTheNewest) {
    CpuCache cache;
    CpuCache::Slot& s = cache.slot(0);
    std::lock_guard lock(s.mu);
    const unsigned cap = CpuCache::capacity(1);
    for (unsigned i = 0; i < cap; ++i) ASSERT_TRUE(s.push(1, CpuCache::entry(i, false)));
    std::vector<uint64_t> out(cap);
    const unsigned n = s.take_half(1, out.data());
    ASSERT_EQ(n, cap / 2);
    for (unsigned i = 0; i < n; ++i) EXPECT_EQ(CpuCache::entry_page(out[i]), i);
    EXPECT_EQ(s.cached_blocks, cap - n);
    uint64_t e = 0;
    ASSERT_TRUE(s.pop(1, e));
    EXPECT_EQ(CpuCache::entry_page(e), cap - 1u);
    // One entry: take_half takes it.
    CpuCache::Slot& t = cache.slot(0);
    while (t.pop(1, e)) {
    }
    ASSERT_TRUE(t.push(1, CpuCache::entry(42, true)));
    EXPECT_EQ(t.take_half(1, out.data()), 1u);
    EXPECT_EQ(t.take_half(1, out.data()), 0u);
}

TEST(CpuCache, DrainEmptiesEverySize) {
    CpuCache cache;
    CpuCache::Slot& s = cache.slot(cache.slots() - 1);
    std::lock_guard lock(s.mu);
    std::set<std::pair<uint64_t, uint64_t>> pushed;
    for (uint64_t pages = 1; pages <= CpuCache::kMaxPages; ++pages) {
        ASSERT_TRUE(s.push(pages, CpuCache::entry(pages * 1000, pages % 2 == 0)));
        pushed.emplace(pages, CpuCache::entry(pages * 1000, pages % 2 == 0));
    }
    std::set<std::pair<uint64_t, uint64_t>> drained;
    s.drain([&](uint64_t pages, uint64_t e) { drained.emplace(pages, e); });
    EXPECT_EQ(drained, pushed);
    EXPECT_EQ(s.cached_blocks, 0u);
    EXPECT_EQ(s.cached_pages, 0u);
    uint64_t e = 0;
    for (uint64_t pages = 1; pages <= CpuCache::kMaxPages; ++pages) EXPECT_FALSE(s.pop(pages, e));
}

TEST(CpuCache, LocalIsOneOfTheSlots) {
    CpuCache cache;
    CpuCache::Slot& mine = cache.local();
    bool found = false;
    for (unsigned i = 0; i < cache.slots(); ++i) found = found || &cache.slot(i) == &mine;
    EXPECT_TRUE(found);
}

}  // namespace
}  // namespace ndisshm::test
