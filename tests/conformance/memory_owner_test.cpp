// Owners (host.h): a block of the default provider goes back to the adapter that freed it as that
// adapter left it, and reaches any other adapter (or one created later) zeroed, whichever way it
// changed hands: freed then allocated, its adapter destroyed, its queue freed, its pages released
// (punch hole). Each test fills blocks with a pattern through one adapter, lets them go that way, and
// takes blocks through another, on one CPU (so that the CPU's cache hands the very same blocks over),
// checking that the new blocks lie on the old ones (else the test would prove nothing) and are zero.
// The binding's way (a provider detached with blocks outstanding) is in
// unit/providers/binding_detach_owner_test.cpp.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <vector>

#include "conformance/fixture.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {
namespace {

// The calling thread on the CPU it runs on now, for the length of a test (best effort: the tests
// also pass where pinning is refused, only with less proof that the cache handed blocks over).
class PinnedHere {
public:
    PinnedHere() {
        pthread_getaffinity_np(pthread_self(), sizeof(old_), &old_);
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(static_cast<unsigned>(std::max(0, sched_getcpu())), &one);
        pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    }
    ~PinnedHere() { pthread_setaffinity_np(pthread_self(), sizeof(old_), &old_); }

private:
    cpu_set_t old_;
};

struct Block {
    NDIS_HANDLE handle;
    unsigned char* va;
    uint64_t bytes;  // page-rounded
};

class MemoryOwners : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override {
        c.page_mode = NDISSHM_PAGES_BASE;       // the release path exists only for 4 KiB pages
        c.zero_ahead = NDISSHM_ZERO_AHEAD_OFF;  // every clearing is the allocation's own, counted below
    }
    static uint64_t rounded(ULONG length) { return (length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE; }

    // `count` blocks of `length` bytes on `queue` of `adapter`, each filled with a pattern.
    std::vector<Block> fill(NDIS_HANDLE adapter, ULONG length, int count, ULONG queue = 0) {
        std::vector<Block> out;
        for (int i = 0; i < count; ++i) {
            Alloc a = allocate(adapter, length, queue, NdisSharedMemoryUsageReceive, 0, 32);
            EXPECT_EQ(a.status, NDIS_STATUS_SUCCESS);
            if (!a.ok()) break;
            out.push_back({a.handle, a.bytes(), rounded(length)});
            fill_pattern(a.bytes(), rounded(length), static_cast<uint64_t>(i) + 1);
        }
        return out;
    }
    // Takes `count` blocks of `length` bytes through `adapter`: each must be all zero. Returns how many
    // lie on a block of `old` (the memory handed over), and frees them.
    size_t take_zeroed(NDIS_HANDLE adapter, ULONG length, int count, const std::vector<Block>& old) {
        size_t reused = 0;
        std::vector<NDIS_HANDLE> taken;
        for (int i = 0; i < count; ++i) {
            Alloc a = allocate(adapter, length, 0, NdisSharedMemoryUsageReceive, 0, 32);
            EXPECT_EQ(a.status, NDIS_STATUS_SUCCESS);
            if (!a.ok()) break;
            taken.push_back(a.handle);
            const uint64_t at = first_nonzero(a.bytes(), rounded(length));
            EXPECT_EQ(at, rounded(length)) << "block " << i << " of " << length << " bytes holds byte " << at
                                           << " = " << int(a.bytes()[at]) << ": another adapter's data";
            const auto lo = reinterpret_cast<uintptr_t>(a.bytes()), hi = lo + rounded(length);
            reused += std::any_of(old.begin(), old.end(), [&](const Block& b) {
                const auto blo = reinterpret_cast<uintptr_t>(b.va);
                return lo < blo + b.bytes && blo < hi;
            });
        }
        for (NDIS_HANDLE h : taken) NdisFreeSharedMemory(adapter, h);
        return reused;
    }
    ndisshm_memory_stats memory() {
        ndisshm_memory_stats m{};
        EXPECT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
        return m;
    }
    PinnedHere pinned_;
};

// The documented exception, pinned down: the same adapter gets its own block back, not cleared.
TEST_F(MemoryOwners, TheAdapterThatFreedABlockGetsItBackAsItLeftIt) {
    for (ULONG length : {ULONG{PAGE_SIZE}, ULONG{16 * PAGE_SIZE}}) {
        std::vector<Block> mine = fill(adapter_, length, 1);
        ASSERT_EQ(mine.size(), 1u);
        NdisFreeSharedMemory(adapter_, mine[0].handle);
        const ndisshm_memory_stats before = memory();
        Alloc again = allocate(adapter_, length, 0, NdisSharedMemoryUsageReceive, 0, 32);
        ASSERT_TRUE(again.ok());
        EXPECT_EQ(again.bytes(), mine[0].va) << "the CPU's cache gave the last block back";
        EXPECT_EQ(again.bytes()[0], pattern_byte(1, 0)) << "as the adapter left it";
        EXPECT_EQ(again.bytes()[rounded(length) - 1], pattern_byte(1, rounded(length) - 1));
        const ndisshm_memory_stats after = memory();
        EXPECT_EQ(after.owner_reuses - before.owner_reuses, 1u);
        EXPECT_EQ(after.zeroed_by_memset_bytes, before.zeroed_by_memset_bytes) << "nothing cleared";
        NdisFreeSharedMemory(adapter_, again.handle);
    }
    // Above 64 KiB blocks are not cached, and every reuse is cleared, even for the same adapter.
    std::vector<Block> big = fill(adapter_, 17 * PAGE_SIZE, 1);
    ASSERT_EQ(big.size(), 1u);
    NdisFreeSharedMemory(adapter_, big[0].handle);
    EXPECT_EQ(take_zeroed(adapter_, 17 * PAGE_SIZE, 1, big), 1u);
    EXPECT_TRUE(log_.all().empty());
}

TEST_F(MemoryOwners, ABlockFreedByOneAdapterReachesAnotherZeroed) {
    const NDIS_HANDLE other = new_adapter("eth1");
    for (ULONG length : {ULONG{100}, ULONG{PAGE_SIZE}, ULONG{5 * PAGE_SIZE + 7}, ULONG{16 * PAGE_SIZE},
                         ULONG{40 * PAGE_SIZE}}) {
        SCOPED_TRACE(testing::Message() << "Length " << length);
        std::vector<Block> old = fill(adapter_, length, 6);
        for (const Block& b : old) NdisFreeSharedMemory(adapter_, b.handle);
        const ndisshm_memory_stats before = memory();
        EXPECT_GT(take_zeroed(other, length, 6, old), 0u)
            << "no block was handed over: the test proves nothing";
        const ndisshm_memory_stats after = memory();
        EXPECT_EQ(after.owner_reuses, before.owner_reuses);
        EXPECT_GT(after.zeroed_by_memset_bytes, before.zeroed_by_memset_bytes);
    }
    EXPECT_TRUE(log_.all().empty());
}

TEST_F(MemoryOwners, BlocksOfADestroyedAdapterReachTheNextAdapterZeroed) {
    const NDIS_HANDLE doomed = new_adapter("doomed");
    std::vector<Block> old = fill(doomed, 8 * PAGE_SIZE, 6);
    ASSERT_EQ(old.size(), 6u);
    ndisshm_adapter_destroy(doomed);  // leaks them: freed through the provider, reported
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_LEAK).size(), 6u);
    const NDIS_HANDLE later = new_adapter("later");  // an adapter created after: never the same owner
    EXPECT_GT(take_zeroed(later, 8 * PAGE_SIZE, 6, old), 0u) << "no block was handed over";
}

TEST_F(MemoryOwners, BlocksFreedWithTheirQueueReachAnotherAdapterZeroed) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 3), NDIS_STATUS_SUCCESS);
    std::vector<Block> old = fill(adapter_, 4 * PAGE_SIZE, 6, 3);
    ASSERT_EQ(old.size(), 6u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 3), NDIS_STATUS_SUCCESS);  // with its blocks: reported, freed
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS).size(), 6u);
    const NDIS_HANDLE other = new_adapter("eth1");
    EXPECT_GT(take_zeroed(other, 4 * PAGE_SIZE, 6, old), 0u) << "no block was handed over";
}

class MemoryOwnersRelease : public MemoryOwners {
protected:
    void configure(ndisshm_runtime_config& c) override {
        MemoryOwners::configure(c);
        c.zero_by_release_bytes = 64 * 1024;  // from 64 KiB up, reused blocks have their pages released
    }
};

TEST_F(MemoryOwnersRelease, BlocksWhosePagesAreReleasedReachAnotherAdapterZeroed) {
    const NDIS_HANDLE other = new_adapter("eth1");
    for (ULONG length : {ULONG{16 * PAGE_SIZE}, ULONG{64 * PAGE_SIZE}}) {
        SCOPED_TRACE(testing::Message() << "Length " << length);
        std::vector<Block> old = fill(adapter_, length, 4);
        for (const Block& b : old) NdisFreeSharedMemory(adapter_, b.handle);
        const uint64_t released = memory().zeroed_by_release_bytes;
        EXPECT_GT(take_zeroed(other, length, 4, old), 0u) << "no block was handed over";
        EXPECT_GT(memory().zeroed_by_release_bytes, released) << "the punch-hole path was taken";
    }
    EXPECT_TRUE(log_.all().empty());
}

}  // namespace
}  // namespace ndisshm::test
