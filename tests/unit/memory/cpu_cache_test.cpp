// memory::CpuCache: the per-CPU stacks of freed small blocks (bounded, LIFO, halves flushed oldest first),
// a dirty and a clean stack per size.
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

TEST(CpuCache, EntriesKeepPageCleannessAndWhoCleanedThem) {
    const uint64_t e = CpuCache::entry(12345, true);
    EXPECT_EQ(CpuCache::entry_page(e), 12345u);
    EXPECT_TRUE(CpuCache::entry_clean(e));
    EXPECT_FALSE(CpuCache::entry_ahead(e));
    EXPECT_FALSE(CpuCache::entry_clean(CpuCache::entry(7, false)));
    const uint64_t ahead = CpuCache::entry(uint64_t{1} << 35, false, true);
    EXPECT_EQ(CpuCache::entry_page(ahead), uint64_t{1} << 35);
    EXPECT_TRUE(CpuCache::entry_clean(ahead)) << "cleared ahead is clean";
    EXPECT_TRUE(CpuCache::entry_ahead(ahead));
}

TEST(CpuCache, DirtyAndCleanStacksAreApartAndPeekLeavesTheEntry) {
    CpuCache cache;
    CpuCache::Slot& s = cache.slot(0);
    std::lock_guard lock(s.mu);
    uint64_t e = 0;
    ASSERT_TRUE(s.push(CpuCache::Dirty, 2, CpuCache::entry(10, false)));
    ASSERT_TRUE(s.push(CpuCache::Clean, 2, CpuCache::entry(20, true)));
    EXPECT_EQ(s.room(CpuCache::Dirty, 2), CpuCache::capacity(2) - 1);
    EXPECT_EQ(s.room(CpuCache::Clean, 2), CpuCache::capacity(2) - 1);
    ASSERT_TRUE(s.peek(CpuCache::Dirty, 2, e));
    EXPECT_EQ(CpuCache::entry_page(e), 10u);
    ASSERT_TRUE(s.peek(CpuCache::Dirty, 2, e)) << "still there";
    EXPECT_EQ(s.cached_blocks, 2u);
    ASSERT_TRUE(s.pop(CpuCache::Clean, 2, e));
    EXPECT_EQ(CpuCache::entry_page(e), 20u);
    EXPECT_FALSE(s.peek(CpuCache::Clean, 2, e));
    ASSERT_TRUE(s.pop(CpuCache::Dirty, 2, e));
    EXPECT_EQ(CpuCache::entry_page(e), 10u);
    EXPECT_EQ(s.cached_blocks, 0u);
    EXPECT_EQ(s.cached_pages, 0u);
}

TEST(CpuCache, SlotIsLastInFirstOutPerSizeAndBounded) {
    CpuCache cache;
    ASSERT_GE(cache.slots(), 1u);
    CpuCache::Slot& s = cache.slot(0);
    std::lock_guard lock(s.mu);
    uint64_t e = 0;
    EXPECT_FALSE(s.pop(CpuCache::Dirty, 1, e));
    for (unsigned i = 0; i < CpuCache::capacity(3); ++i) ASSERT_TRUE(s.push(CpuCache::Dirty, 3, CpuCache::entry(100 + i, false)));
    EXPECT_FALSE(s.push(CpuCache::Dirty, 3, CpuCache::entry(999, false))) << "full";
    EXPECT_TRUE(s.push(CpuCache::Dirty, 1, CpuCache::entry(5, false))) << "sizes do not share room";
    EXPECT_EQ(s.cached_blocks, CpuCache::capacity(3) + 1);
    EXPECT_EQ(s.cached_pages, 3u * CpuCache::capacity(3) + 1);
    ASSERT_TRUE(s.pop(CpuCache::Dirty, 3, e));
    EXPECT_EQ(CpuCache::entry_page(e), 100u + CpuCache::capacity(3) - 1) << "the newest first";
    ASSERT_TRUE(s.pop(CpuCache::Dirty, 1, e));
    EXPECT_EQ(CpuCache::entry_page(e), 5u);
    EXPECT_FALSE(s.pop(CpuCache::Dirty, 2, e));
}

TEST(CpuCache, TakeHalfTakesTheOldestAndKeepsTheNewest) {
    CpuCache cache;
    CpuCache::Slot& s = cache.slot(0);
    std::lock_guard lock(s.mu);
    const unsigned cap = CpuCache::capacity(1);
    for (unsigned i = 0; i < cap; ++i) ASSERT_TRUE(s.push(CpuCache::Dirty, 1, CpuCache::entry(i, false)));
    std::vector<uint64_t> out(cap);
    const unsigned n = s.take_half(CpuCache::Dirty, 1, out.data());
    ASSERT_EQ(n, cap / 2);
    for (unsigned i = 0; i < n; ++i) EXPECT_EQ(CpuCache::entry_page(out[i]), i);
    EXPECT_EQ(s.cached_blocks, cap - n);
    uint64_t e = 0;
    ASSERT_TRUE(s.pop(CpuCache::Dirty, 1, e));
    EXPECT_EQ(CpuCache::entry_page(e), cap - 1u);
    // One entry: take_half takes it.
    CpuCache::Slot& t = cache.slot(0);
    while (t.pop(CpuCache::Dirty, 1, e)) {
    }
    ASSERT_TRUE(t.push(CpuCache::Dirty, 1, CpuCache::entry(42, true)));
    EXPECT_EQ(t.take_half(CpuCache::Dirty, 1, out.data()), 1u);
    EXPECT_EQ(t.take_half(CpuCache::Dirty, 1, out.data()), 0u);
}

TEST(CpuCache, DrainEmptiesEverySize) {
    CpuCache cache;
    CpuCache::Slot& s = cache.slot(cache.slots() - 1);
    std::lock_guard lock(s.mu);
    std::set<std::pair<uint64_t, uint64_t>> pushed;
    for (uint64_t pages = 1; pages <= CpuCache::kMaxPages; ++pages) {
        const uint64_t dirty = CpuCache::entry(pages * 1000, false), clean = CpuCache::entry(pages * 1000 + 1, true);
        ASSERT_TRUE(s.push(CpuCache::Dirty, pages, dirty));
        ASSERT_TRUE(s.push(CpuCache::Clean, pages, clean));
        pushed.emplace(pages, dirty);
        pushed.emplace(pages, clean);
    }
    std::set<std::pair<uint64_t, uint64_t>> drained;
    s.drain([&](uint64_t pages, uint64_t e) { drained.emplace(pages, e); });
    EXPECT_EQ(drained, pushed);
    EXPECT_EQ(s.cached_blocks, 0u);
    EXPECT_EQ(s.cached_pages, 0u);
    uint64_t e = 0;
    for (uint64_t pages = 1; pages <= CpuCache::kMaxPages; ++pages) {
        EXPECT_FALSE(s.pop(CpuCache::Dirty, pages, e));
        EXPECT_FALSE(s.pop(CpuCache::Clean, pages, e));
    }
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
