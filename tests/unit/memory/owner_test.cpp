// memory::Arena's owners and its zeroer: a small block goes back to the owner that freed it as it was,
// to any other owner (or owner 0, or an owner number too large to keep) cleared; with a Zeroer, blocks
// spilled from the CPUs' caches are cleared ahead of time and serve other owners clean, and the zeroer
// also prepares clean blocks of a size that allocations had to clear themselves.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "common/memory_support.hpp"
#include "memory/arena.hpp"
#include "memory/zeroer.hpp"
#include "os/os.hpp"

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

// The calling thread stays on its CPU for the test's length (best effort), so that a freed block is
// the next allocation's, through that CPU's cache.
class Pinned : public ::testing::Test {
protected:
    void SetUp() override {
        pthread_getaffinity_np(pthread_self(), sizeof(old_), &old_);
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(static_cast<unsigned>(std::max(0, sched_getcpu())), &one);
        pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    }
    void TearDown() override { pthread_setaffinity_np(pthread_self(), sizeof(old_), &old_); }
    std::unique_ptr<Arena> make(Zeroer* zeroer = nullptr) {
        ArenaConfig c;
        c.name = "ndisshm-owner-test";
        c.capacity_bytes = uint64_t{256} << 20;
        c.grow_step_bytes = uint64_t{4} << 20;
        c.cpu_cache = true;
        c.zeroer = zeroer;
        auto a = Arena::create(c);
        EXPECT_TRUE(a) << a.error().message();
        if (a && zeroer != nullptr) zeroer->add(a->get());
        return a ? std::move(*a) : nullptr;
    }
    const uint64_t unit_ = os::page_size();
    cpu_set_t old_;
};

using ArenaOwners = Pinned;
using ArenaZeroer = Pinned;

TEST_F(ArenaOwners, ABlockGoesBackToItsOwnerAsItWasAndToAnyoneElseCleared) {
    auto arena = make();
    ASSERT_TRUE(arena);
    for (uint64_t pages : {uint64_t{1}, uint64_t{7}, CpuCache::kMaxPages}) {
        const uint64_t bytes = pages * unit_;
        auto a = arena->allocate(bytes, false, 11);
        ASSERT_TRUE(a);
        fill_pattern(a->address, bytes, pages);
        ASSERT_TRUE(arena->free(a->offset, a->length));
        auto same = arena->allocate(bytes, false, 11);
        ASSERT_TRUE(same);
        EXPECT_EQ(same->offset, a->offset);
        EXPECT_EQ(same->address[bytes - 1], std::byte{pattern_byte(pages, bytes - 1)}) << "not cleared";
        ASSERT_TRUE(arena->free(same->offset, same->length));
        for (uint64_t other : {uint64_t{12}, uint64_t{0}, Arena::kMaxOwner + 11}) {
            auto b = arena->allocate(bytes, false, other);
            ASSERT_TRUE(b);
            EXPECT_EQ(b->offset, a->offset) << "the same block, from the CPU's cache";
            EXPECT_EQ(first_nonzero(b->address, bytes), bytes) << "owner " << other;
            fill_pattern(b->address, bytes, pages + 100);
            ASSERT_TRUE(arena->free(b->offset, b->length));
        }
        // Owner 0 and an owner number too large to keep are nobody: even they get their block cleared.
        for (uint64_t nobody : {uint64_t{0}, Arena::kMaxOwner + 11}) {
            auto c = arena->allocate(bytes, false, nobody);
            ASSERT_TRUE(c);
            EXPECT_EQ(first_nonzero(c->address, bytes), bytes);
            fill_pattern(c->address, bytes, pages + 200);
            ASSERT_TRUE(arena->free(c->offset, c->length));
        }
    }
    const ArenaStats s = arena->stats();
    EXPECT_EQ(s.owner_reuses, 3u);
    EXPECT_EQ(s.blocks_in_use, 0u);
    EXPECT_TRUE(arena->check_consistency());
}

TEST_F(ArenaOwners, AFreeKeepsRefusingWhatIsNotALiveBlockWhateverItsOwner) {
    auto arena = make();
    ASSERT_TRUE(arena);
    auto a = arena->allocate(2 * unit_, false, 5);
    ASSERT_TRUE(a);
    EXPECT_TRUE(arena->is_live(a->offset, a->length));
    EXPECT_FALSE(arena->free(a->offset, unit_)) << "wrong length";
    ASSERT_TRUE(arena->free(a->offset, a->length));
    EXPECT_FALSE(arena->is_live(a->offset, a->length));
    EXPECT_FALSE(arena->free(a->offset, a->length)) << "double free, the block in a cache with its owner";
    EXPECT_TRUE(arena->check_consistency());
}

TEST_F(ArenaZeroer, TheZeroerClearsSpilledBlocksAndAnotherOwnerIsServedWithThem) {
    Zeroer zeroer;
    auto arena = make(&zeroer);
    ASSERT_TRUE(arena);
    const uint64_t bytes = CpuCache::kMaxPages * unit_;
    std::vector<ArenaBlock> held;
    for (int i = 0; i < 30; ++i) {
        auto a = arena->allocate(bytes, false, 1);
        ASSERT_TRUE(a);
        fill_pattern(a->address, bytes, static_cast<uint64_t>(i) + 1);
        held.push_back(*a);
    }
    for (const ArenaBlock& b : held) ASSERT_TRUE(arena->free(b.offset, b.length));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (arena->stats().zeroed_ahead_bytes < 4 * bytes && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_GE(arena->stats().zeroed_ahead_bytes, 4 * bytes) << "the zeroer did not run within 20 s";
    held.clear();
    for (int i = 0; i < 30; ++i) {
        auto b = arena->allocate(bytes, false, 2);
        ASSERT_TRUE(b);
        ASSERT_EQ(first_nonzero(b->address, bytes), bytes) << i;
        held.push_back(*b);
    }
    const ArenaStats s = arena->stats();
    EXPECT_GE(s.served_pre_zeroed, 4u);
    EXPECT_EQ(s.owner_reuses, 0u);
    for (const ArenaBlock& b : held) ASSERT_TRUE(arena->free(b.offset, b.length));
    zeroer.stop();
    // Everything the caches and the depot hold goes back to the page allocator, and the books agree.
    arena->flush_caches();
    const ArenaStats end = arena->stats();
    EXPECT_EQ(end.cached_blocks, 0u);
    EXPECT_EQ(end.blocks_in_use, 0u);
    EXPECT_EQ(arena->zero_ahead_step(), 0u) << "nothing left to clear";
    EXPECT_TRUE(arena->check_consistency());
}

// Two owners taking turns never free more than the cache keeps, so nothing spills: the zeroer learns
// from the allocations that had to clear a block themselves, and prepares clean ones of that size.
TEST_F(ArenaZeroer, TheZeroerPreparesCleanBlocksOfASizeAllocationsHadToClear) {
    Zeroer zeroer;
    auto arena = make(&zeroer);
    ASSERT_TRUE(arena);
    const uint64_t bytes = 8 * unit_;
    uint64_t served_clean = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (uint64_t turn = 0; served_clean == 0 && std::chrono::steady_clock::now() < deadline; ++turn) {
        auto a = arena->allocate(bytes, false, 1 + turn % 2);
        ASSERT_TRUE(a);
        ASSERT_EQ(first_nonzero(a->address, bytes), bytes) << "turn " << turn;
        fill_pattern(a->address, bytes, turn + 1);
        ASSERT_TRUE(arena->free(a->offset, a->length));
        served_clean = arena->stats().served_pre_zeroed;
        if (turn % 64 == 63) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // an idle CPU
    }
    EXPECT_GT(served_clean, 0u) << "the zeroer never served a turn within 20 s";
    EXPECT_EQ(arena->stats().owner_reuses, 0u);
    zeroer.stop();
    zeroer.stop();  // idempotent
}

// The zeroer stops with blocks still to clear, and nothing it held is lost.
TEST_F(ArenaZeroer, TheZeroerStopsWithWorkLeftAndLosesNoBlock) {
    auto zeroer = std::make_unique<Zeroer>();
    auto arena = make(zeroer.get());
    ASSERT_TRUE(arena);
    std::vector<ArenaBlock> held;
    for (int i = 0; i < 64; ++i) {
        auto a = arena->allocate(3 * unit_, false, 1);
        ASSERT_TRUE(a);
        held.push_back(*a);
    }
    for (const ArenaBlock& b : held) ASSERT_TRUE(arena->free(b.offset, b.length));
    zeroer.reset();  // at once, whatever it was doing
    EXPECT_EQ(arena->stats().blocks_in_use, 0u);
    arena->flush_caches();
    EXPECT_EQ(arena->stats().cached_blocks, 0u);
    EXPECT_TRUE(arena->check_consistency());
}

}  // namespace
}  // namespace ndisshm::test

