// memory::Arena with per-CPU caches: freed small blocks are parked per CPU and reused without the arena
// lock, yet count as free, are zeroed before reuse, are taken back when space runs out, and a block can
// still be freed exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "memory/arena.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

using ndisshm::test::fill_pattern;
using ndisshm::test::first_nonzero;

class ArenaCache : public ::testing::Test {
protected:
    void make(uint64_t capacity_pages, uint64_t grow_pages = 16) {
        ArenaConfig c;
        c.name = "ndisshm-arena-cache-test";
        c.capacity_bytes = capacity_pages * unit_;
        c.grow_step_bytes = grow_pages * unit_;
        c.cpu_cache = true;
        auto a = Arena::create(c);
        ASSERT_TRUE(a) << a.error().message();
        arena_ = std::move(*a);
    }
    void SetUp() override { make(1024); }

    const uint64_t unit_ = os::page_size();
    std::unique_ptr<Arena> arena_;
};

TEST_F(ArenaCache, AFreedSmallBlockComesBackFromTheCacheZeroed) {
    auto a = arena_->allocate(unit_);
    ASSERT_TRUE(a);
    EXPECT_EQ(arena_->stats().cache_misses, 1u);
    fill_pattern(a->address, a->length, 1);
    ASSERT_TRUE(arena_->free(a->offset, a->length));
    auto b = arena_->allocate(unit_);
    ASSERT_TRUE(b);
    // The thread may have moved to another CPU in between; on the same CPU it is the same block.
    const ArenaStats s = arena_->stats();
    EXPECT_EQ(s.cache_hits + s.cache_misses, 2u);
    EXPECT_EQ(first_nonzero(b->address, b->length), b->length);
    if (b->offset == a->offset) {
        EXPECT_EQ(s.zeroed_by_memset_bytes, unit_);
    }
    ASSERT_TRUE(arena_->free(b->offset, b->length));
    EXPECT_TRUE(arena_->check_consistency());
}

TEST_F(ArenaCache, AMissRefillsABatchThatLaterHitsUse) {
    auto a = arena_->allocate(2 * unit_);
    ASSERT_TRUE(a);
    const ArenaStats s = arena_->stats();
    EXPECT_EQ(s.cache_misses, 1u);
    EXPECT_GE(s.cached_blocks, 1u) << "the rest of the batch waits in the cache";
    EXPECT_EQ(s.blocks_in_use, 1u);
    EXPECT_EQ(s.bytes_in_use, 2 * unit_);
    auto b = arena_->allocate(2 * unit_);
    ASSERT_TRUE(b);
    EXPECT_NE(a->offset, b->offset);
    EXPECT_GE(arena_->stats().cache_hits + arena_->stats().cache_misses, 2u);
    EXPECT_EQ(first_nonzero(b->address, b->length), b->length) << "fresh batch blocks are zero untouched";
    EXPECT_EQ(arena_->stats().zeroed_bytes, 0u) << "never-used blocks need no clearing, cached or not";
}

TEST_F(ArenaCache, CachedBlocksCountAsFree) {
    std::vector<ArenaBlock> blocks;
    for (int i = 0; i < 5; ++i) {
        auto b = arena_->allocate(3 * unit_);
        ASSERT_TRUE(b);
        blocks.push_back(*b);
    }
    EXPECT_EQ(arena_->stats().blocks_in_use, 5u);
    EXPECT_EQ(arena_->stats().bytes_in_use, 15 * unit_);
    for (auto& b : blocks) ASSERT_TRUE(arena_->free(b.offset, b.length));
    ArenaStats s = arena_->stats();
    EXPECT_EQ(s.blocks_in_use, 0u);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_GE(s.cached_blocks, 5u);
    EXPECT_GT(arena_->flush_caches(), 0u);
    s = arena_->stats();
    EXPECT_EQ(s.cached_blocks, 0u);
    EXPECT_EQ(s.cached_bytes, 0u);
    EXPECT_EQ(s.largest_free_bytes, 1024 * unit_) << "all coalesced back";
    EXPECT_TRUE(arena_->check_consistency());
}

TEST_F(ArenaCache, ABlockIsFreedOnceWhateverTheCacheHolds) {
    auto a = arena_->allocate(unit_);
    ASSERT_TRUE(a);
    ASSERT_TRUE(arena_->free(a->offset, a->length));
    EXPECT_FALSE(arena_->free(a->offset, a->length)) << "double free of a cached block";
    EXPECT_FALSE(arena_->is_live(a->offset, a->length));
    // Had the second free been taken, the cache would hold the block twice and hand it out twice.
    std::set<uint64_t> offsets;
    std::vector<ArenaBlock> blocks;
    for (int i = 0; i < 200; ++i) {
        auto b = arena_->allocate(unit_);
        ASSERT_TRUE(b);
        EXPECT_TRUE(offsets.insert(b->offset).second) << "offset " << b->offset << " handed out twice";
        blocks.push_back(*b);
    }
    for (auto& b : blocks) ASSERT_TRUE(arena_->free(b.offset, b.length));
    arena_->flush_caches();
    EXPECT_EQ(arena_->stats().blocks_in_use, 0u);
    EXPECT_TRUE(arena_->check_consistency());
}

TEST_F(ArenaCache, FreesThatAreNotABlockAreRefusedAndChangeNothing) {
    auto a = arena_->allocate(4 * unit_);
    ASSERT_TRUE(a);
    const ArenaStats before = arena_->stats();
    EXPECT_FALSE(arena_->free(a->offset, 2 * unit_)) << "wrong length";
    EXPECT_FALSE(arena_->free(a->offset + unit_, unit_)) << "interior unit";
    EXPECT_FALSE(arena_->free(a->offset + 1, a->length)) << "unaligned";
    EXPECT_FALSE(arena_->free(1024 * unit_, unit_)) << "beyond the arena";
    EXPECT_FALSE(arena_->free(UINT64_MAX - unit_ + 1, unit_)) << "overflowing";
    EXPECT_FALSE(arena_->free(a->offset, 0));
    EXPECT_EQ(arena_->stats().blocks_in_use, before.blocks_in_use);
    EXPECT_TRUE(arena_->is_live(a->offset, a->length));
    EXPECT_TRUE(arena_->free(a->offset, a->length));
}

TEST_F(ArenaCache, CachedBlocksAreTakenBackBeforeNoRoomIsReported) {
    make(64, 64);
    std::vector<ArenaBlock> blocks;
    for (int i = 0; i < 64; ++i) {
        auto b = arena_->allocate(unit_);
        ASSERT_TRUE(b) << i << ": " << b.error().message();
        blocks.push_back(*b);
    }
    EXPECT_FALSE(arena_->allocate(unit_)) << "full";
    for (auto& b : blocks) ASSERT_TRUE(arena_->free(b.offset, b.length));
    // Every unit sits in a cache (or was spilled back); one block of all 64 must still be possible.
    auto all = arena_->allocate(64 * unit_);
    ASSERT_TRUE(all) << all.error().message();
    EXPECT_EQ(arena_->stats().cached_blocks, 0u);
    auto none = arena_->allocate(unit_);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().err, ENOMEM);
    EXPECT_TRUE(arena_->free(all->offset, all->length));
    EXPECT_TRUE(arena_->check_consistency());
}

TEST_F(ArenaCache, AFullStackSpillsItsOlderHalfToThePageAllocator) {
    const unsigned cap = CpuCache::capacity(1);
    std::vector<ArenaBlock> blocks;
    for (unsigned i = 0; i < 3 * cap; ++i) {
        auto b = arena_->allocate(unit_);
        ASSERT_TRUE(b);
        blocks.push_back(*b);
    }
    for (auto& b : blocks) ASSERT_TRUE(arena_->free(b.offset, b.length));
    const ArenaStats s = arena_->stats();
    // Bounded per CPU: however the thread moved, no slot holds more than its capacity.
    EXPECT_LE(s.cached_blocks, uint64_t{cap} * os::cpu_count());
    EXPECT_EQ(s.blocks_in_use, 0u);
    EXPECT_TRUE(arena_->check_consistency());
}

TEST_F(ArenaCache, LargeBlocksBypassTheCache) {
    auto big = arena_->allocate((CpuCache::kMaxPages + 1) * unit_);
    ASSERT_TRUE(big);
    ASSERT_TRUE(arena_->free(big->offset, big->length));
    const ArenaStats s = arena_->stats();
    EXPECT_EQ(s.cache_hits + s.cache_misses, 0u);
    EXPECT_EQ(s.cached_blocks, 0u);
}

// Threads allocate and free blocks of many sizes at once; each fills its blocks with its own pattern
// and checks that every block arrives all zero and that no two live blocks overlap.
TEST_F(ArenaCache, ThreadsNeverShareABlockAndAlwaysGetZeroes) {
    make(8192, 256);
    constexpr int kThreads = 4;
    constexpr int kSteps = 3000;
    std::mutex live_mu;
    std::map<uint64_t, uint64_t> live;  // offset -> length, across threads
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
            std::vector<ArenaBlock> mine;
            for (int step = 0; step < kSteps && failures == 0; ++step) {
                if (mine.empty() || rng() % 2 == 0) {
                    const uint64_t pages = rng() % 8 == 0 ? 17 + rng() % 40 : 1 + rng() % 16;
                    auto b = arena_->allocate(pages * unit_);
                    if (!b) continue;  // full for the moment
                    if (first_nonzero(b->address, b->length) != b->length) ++failures;
                    {
                        std::lock_guard lock(live_mu);
                        auto next = live.lower_bound(b->offset);
                        if (next != live.end() && next->first < b->offset + b->length) ++failures;
                        if (next != live.begin() && std::prev(next)->first + std::prev(next)->second > b->offset)
                            ++failures;
                        live.emplace(b->offset, b->length);
                    }
                    fill_pattern(b->address, b->length, static_cast<uint64_t>(t * 1000000 + step));
                    mine.push_back(*b);
                } else {
                    const size_t i = rng() % mine.size();
                    const ArenaBlock b = mine[i];
                    mine[i] = mine.back();
                    mine.pop_back();
                    {
                        std::lock_guard lock(live_mu);
                        live.erase(b.offset);
                    }
                    if (!arena_->free(b.offset, b.length)) ++failures;
                }
            }
            for (auto& b : mine) {
                {
                    std::lock_guard lock(live_mu);
                    live.erase(b.offset);
                }
                if (!arena_->free(b.offset, b.length)) ++failures;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    const ArenaStats s = arena_->stats();
    EXPECT_EQ(s.blocks_in_use, 0u);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_GT(s.cache_hits, 0u);
    arena_->flush_caches();
    EXPECT_TRUE(arena_->check_consistency());
    EXPECT_EQ(arena_->stats().largest_free_bytes, 8192 * unit_);
}

}  // namespace
}  // namespace ndisshm::test
