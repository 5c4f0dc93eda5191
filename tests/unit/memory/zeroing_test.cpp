// Zeroing of reused memory: memset below the threshold, pages released (punched) at and above it, and
// counted either way. Memory never handed out before is not cleared at all.
#include "memory/zeroing.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/memory_support.hpp"
#include "memory/arena.hpp"
#include "os/fault.hpp"

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

using ndisshm::test::fill_pattern;
using ndisshm::test::first_nonzero;

std::unique_ptr<Arena> make_arena(uint64_t capacity, uint64_t zero_by_release, bool cache) {
    ArenaConfig c;
    c.name = "ndisshm-zeroing-test";
    c.capacity_bytes = capacity;
    c.grow_step_bytes = uint64_t{4} << 20;
    c.zero_by_release_bytes = zero_by_release;
    c.cpu_cache = cache;
    auto a = Arena::create(c);
    EXPECT_TRUE(a) << a.error().message();
    return a ? std::move(*a) : nullptr;
}

uint64_t file_blocks(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_blocks) : 0;
}

TEST(Zeroing, DefaultThresholdIsTheMeasuredOne) {
    EXPECT_EQ(resolve_zero_by_release(0), kDefaultZeroByReleaseBytes);
    EXPECT_EQ(kDefaultZeroByReleaseBytes, uint64_t{16} << 20);
    EXPECT_EQ(resolve_zero_by_release(12345), 12345u);
    EXPECT_EQ(resolve_zero_by_release(UINT64_MAX), UINT64_MAX);
}

TEST(Zeroing, ReleaseGivesThePagesBackAndTheyReadZero) {
    auto arena = make_arena(uint64_t{16} << 20, 0, false);
    ASSERT_TRUE(arena);
    const uint64_t bytes = uint64_t{1} << 20;
    auto b = arena->allocate(bytes);
    ASSERT_TRUE(b);
    fill_pattern(b->address, bytes, 3);
    const uint64_t resident = file_blocks(arena->fd());
    EXPECT_GE(resident * 512, bytes);
    EXPECT_EQ(zero_block(arena->fd(), arena->base(), b->offset, bytes, bytes, true), ZeroMethod::Release);
    EXPECT_LT(file_blocks(arena->fd()) * 512, bytes) << "the punched pages no longer hold memory";
    EXPECT_EQ(first_nonzero(b->address, bytes), bytes);
    // Below the threshold, or when releasing is not allowed: memset.
    fill_pattern(b->address, bytes, 4);
    EXPECT_EQ(zero_block(arena->fd(), arena->base(), b->offset, bytes, bytes + 1, true), ZeroMethod::Memset);
    EXPECT_EQ(first_nonzero(b->address, bytes), bytes);
    fill_pattern(b->address, bytes, 5);
    EXPECT_EQ(zero_block(arena->fd(), arena->base(), b->offset, bytes, 0, false), ZeroMethod::Memset);
    EXPECT_EQ(first_nonzero(b->address, bytes), bytes);
}

TEST(Zeroing, ArenaReleasesReusedBlocksFromTheThresholdUp) {
    const uint64_t threshold = 64 * 1024;
    auto arena = make_arena(uint64_t{64} << 20, threshold, false);
    ASSERT_TRUE(arena);
    for (uint64_t bytes : {threshold / 2, threshold, uint64_t{3} << 20}) {
        auto a = arena->allocate(bytes);
        ASSERT_TRUE(a);
        fill_pattern(a->address, a->length, bytes);
        ASSERT_TRUE(arena->free(a->offset, a->length));
        const ArenaStats before = arena->stats();
        auto b = arena->allocate(bytes);
        ASSERT_TRUE(b);
        EXPECT_EQ(first_nonzero(b->address, b->length), b->length) << bytes;
        const ArenaStats after = arena->stats();
        if (bytes >= threshold) {
            EXPECT_EQ(after.zeroed_by_release_bytes - before.zeroed_by_release_bytes, b->length) << bytes;
            EXPECT_EQ(after.zeroed_by_memset_bytes, before.zeroed_by_memset_bytes) << bytes;
        } else {
            EXPECT_EQ(after.zeroed_by_memset_bytes - before.zeroed_by_memset_bytes, b->length) << bytes;
            EXPECT_EQ(after.zeroed_by_release_bytes, before.zeroed_by_release_bytes) << bytes;
        }
        EXPECT_EQ(after.zeroed_bytes, after.zeroed_by_memset_bytes + after.zeroed_by_release_bytes);
        ASSERT_TRUE(arena->free(b->offset, b->length));
    }
}

// Blocks the per-CPU cache hands out are counted before they are zeroed, by the method foreseen; a
// punch the kernel refuses turns into a memset, and the count follows it.
TEST(Zeroing, CachedBlocksAreCountedByTheWayTheyWereReallyZeroed) {
    const uint64_t threshold = 64 * 1024;
    auto arena = make_arena(uint64_t{64} << 20, threshold, true);
    ASSERT_TRUE(arena);
    for (bool refused : {false, true}) {
        auto a = arena->allocate(threshold);
        ASSERT_TRUE(a);
        fill_pattern(a->address, a->length, refused ? 2 : 1);
        ASSERT_TRUE(arena->free(a->offset, a->length));
        const ArenaStats before = arena->stats();
        if (refused) {
            ASSERT_TRUE(os::fault::arm("fallocate", 1, EOPNOTSUPP));
        }
        auto b = arena->allocate(threshold);
        os::fault::disarm();
        ASSERT_TRUE(b);
        EXPECT_EQ(b->offset, a->offset) << "the same block, back from the cache";
        EXPECT_EQ(first_nonzero(b->address, b->length), b->length);
        const ArenaStats after = arena->stats();
        EXPECT_EQ(after.zeroed_by_release_bytes - before.zeroed_by_release_bytes, refused ? 0 : threshold);
        EXPECT_EQ(after.zeroed_by_memset_bytes - before.zeroed_by_memset_bytes, refused ? threshold : 0);
        ASSERT_TRUE(arena->free(b->offset, b->length));
    }
}

// clear_bytes takes the vector loop only for warm, 128-byte multiples up to kVectorClearMaxBytes; every
// other case is memset. Each must clear exactly its range: not a byte short, not a byte past either end.
// The loop writes the two halves of the range in turn: 384 and 4096 + 128 leave it an odd 128-byte piece
// at the end, and 128 a range with no halves at all.
TEST(Zeroing, ClearBytesClearsExactlyItsRangeByEitherWay) {
    constexpr uint64_t kGuard = 256;
    const uint64_t lengths[] = {
        128, 384,      4096, 4096 + 128, 4096 * 3, kVectorClearMaxBytes, kVectorClearMaxBytes + 4096,
        100, 4096 + 64};
    std::vector<unsigned char> buf(kVectorClearMaxBytes + 2 * 4096 + 2 * kGuard + 128);
    // 128-aligned start, so the warm multiples of 128 really take the loop; +64 makes one misaligned.
    const auto base = (reinterpret_cast<uintptr_t>(buf.data()) + kGuard + 127) & ~uintptr_t{127};
    for (const Warmth warmth : {Warmth::Warm, Warmth::Cold}) {
        for (const uint64_t misalign : {uint64_t{0}, uint64_t{64}}) {
            for (const uint64_t length : lengths) {
                std::fill(buf.begin(), buf.end(), 0xA5);
                auto* p = reinterpret_cast<unsigned char*>(base + misalign);
                clear_bytes(reinterpret_cast<std::byte*>(p), length, warmth);
                const std::string what = "length " + std::to_string(length) + ", misaligned by " +
                                         std::to_string(misalign) +
                                         (warmth == Warmth::Warm ? ", warm" : ", cold");
                EXPECT_EQ(first_nonzero(p, length), length) << what;
                for (uint64_t i = 1; i <= kGuard; ++i) {
                    ASSERT_EQ(p[-static_cast<ptrdiff_t>(i)], 0xA5)
                        << what << ": cleared " << i << " bytes before";
                    ASSERT_EQ(p[length + i - 1], 0xA5) << what << ": cleared " << i << " bytes past the end";
                }
            }
        }
    }
}

// The arena's cache hits are warm: a block another owner freed a moment ago is cleared by the loop (where
// the CPU has AVX2), and must read as zero all the same, at every size the caches hold.
TEST(Zeroing, AWarmBlockFromAnotherOwnerReadsZeroAtEveryCachedSize) {
    // On one CPU throughout, so that each free and the allocation after it meet in the same cache.
    cpu_set_t old, one;
    ASSERT_EQ(sched_getaffinity(0, sizeof(old), &old), 0);
    CPU_ZERO(&one);
    CPU_SET(static_cast<int>(os::current_cpu()), &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    struct Restore {
        cpu_set_t* mask;
        ~Restore() { sched_setaffinity(0, sizeof(*mask), mask); }
    } restore{&old};
    auto arena = make_arena(uint64_t{64} << 20, UINT64_MAX, true);
    ASSERT_TRUE(arena);
    for (uint64_t pages = 1; pages <= CpuCache::kMaxPages; ++pages) {
        const uint64_t bytes = pages * os::page_size();
        auto a = arena->allocate(bytes, false, /*owner=*/1);
        ASSERT_TRUE(a);
        fill_pattern(a->address, a->length, pages);
        ASSERT_TRUE(arena->free(a->offset, a->length));
        auto b = arena->allocate(bytes, false, /*owner=*/2);
        ASSERT_TRUE(b);
        EXPECT_EQ(b->offset, a->offset) << "the same block, back from this CPU's cache";
        EXPECT_EQ(first_nonzero(b->address, b->length), b->length) << pages << " pages";
        ASSERT_TRUE(arena->free(b->offset, b->length));
    }
}

TEST(Zeroing, MaxThresholdAlwaysMemsets) {
    auto arena = make_arena(uint64_t{64} << 20, UINT64_MAX, true);
    ASSERT_TRUE(arena);
    const uint64_t bytes = uint64_t{32} << 20;
    auto a = arena->allocate(bytes);
    ASSERT_TRUE(a);
    fill_pattern(a->address, 4096, 9);
    fill_pattern(a->address + bytes - 4096, 4096, 9);
    ASSERT_TRUE(arena->free(a->offset, a->length));
    auto b = arena->allocate(bytes);
    ASSERT_TRUE(b);
    EXPECT_EQ(first_nonzero(b->address, bytes), bytes);
    EXPECT_EQ(arena->stats().zeroed_by_memset_bytes, bytes);
    EXPECT_EQ(arena->stats().zeroed_by_release_bytes, 0u);
}

TEST(Zeroing, NeverUsedMemoryIsNotCleared) {
    auto arena = make_arena(uint64_t{64} << 20, 0, true);
    ASSERT_TRUE(arena);
    for (uint64_t bytes : {uint64_t{4096}, uint64_t{64} << 10, uint64_t{20} << 20}) {
        auto b = arena->allocate(bytes);
        ASSERT_TRUE(b);
        EXPECT_EQ(first_nonzero(b->address, b->length), b->length);
    }
    EXPECT_EQ(arena->stats().zeroed_bytes, 0u);
}

}  // namespace
}  // namespace ndisshm::test
