// The books' statistics (host.h: ndisshm_adapter_get_stats, ndisshm_queue_get_stats): blocks and bytes
// outstanding, their peaks, allocations, frees, and refused allocations, per adapter, per usage and per
// queue.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

using Stats = NdisTest;

ndisshm_usage_stats usage(uint64_t blocks, uint64_t bytes, uint64_t peak_blocks, uint64_t peak_bytes,
                          uint64_t allocations, uint64_t frees, uint64_t failures) {
    return {blocks, bytes, peak_blocks, peak_bytes, allocations, frees, failures};
}

TEST_F(Stats, AFreshAdapterHasEmptyBooksAndItsDefaultQueue) {
    const auto s = stats(adapter_);
    EXPECT_EQ(s.total, usage(0, 0, 0, 0, 0, 0, 0));
    EXPECT_EQ(s.queues, 1u);
    EXPECT_EQ(s.bindings, 0u);
    EXPECT_EQ(s.has_provider, 0);
    EXPECT_EQ(queue_stats(adapter_, NDIS_DEFAULT_RECEIVE_QUEUE_ID), usage(0, 0, 0, 0, 0, 0, 0));
}

TEST_F(Stats, AdapterStatsCountBlocksBytesAndPeaks) {
    Alloc a = allocate(adapter_, 100);
    Alloc b = allocate(adapter_, 3 * PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(stats(adapter_).total, usage(2, 100 + 3 * PAGE_SIZE, 2, 100 + 3 * PAGE_SIZE, 2, 0, 0))
        << "bytes are the requested Length, not pages";
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(stats(adapter_).total, usage(1, 100, 2, 100 + 3 * PAGE_SIZE, 2, 1, 0));
    Alloc c = allocate(adapter_, 10);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(stats(adapter_).total, usage(2, 110, 2, 100 + 3 * PAGE_SIZE, 3, 1, 0));
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, c.handle);
    EXPECT_EQ(stats(adapter_).total, usage(0, 0, 2, 100 + 3 * PAGE_SIZE, 3, 3, 0));
}

TEST_F(Stats, StatsAreKeptPerUsage) {
    Alloc r1 = allocate(adapter_, 1000, 0, NdisSharedMemoryUsageReceive);
    Alloc r2 = allocate(adapter_, 2000, 0, NdisSharedMemoryUsageReceive);
    Alloc x = allocate(adapter_, 500, 0, NdisSharedMemoryUsageXmit);
    Alloc bad = allocate(adapter_, 0, 0, NdisSharedMemoryUsageReceiveLookahead);
    ASSERT_TRUE(r1.ok() && r2.ok() && x.ok());
    NdisFreeSharedMemory(adapter_, r1.handle);
    const auto s = stats(adapter_);
    EXPECT_EQ(s.by_usage[NdisSharedMemoryUsageReceive], usage(1, 2000, 2, 3000, 2, 1, 0));
    EXPECT_EQ(s.by_usage[NdisSharedMemoryUsageXmit], usage(1, 500, 1, 500, 1, 0, 0));
    EXPECT_EQ(s.by_usage[NdisSharedMemoryUsageReceiveLookahead], usage(0, 0, 0, 0, 0, 0, 1));
    for (int u : {0, 2, 3, 6, 7, 8, 9}) EXPECT_EQ(s.by_usage[u], usage(0, 0, 0, 0, 0, 0, 0)) << "usage " << u;
    EXPECT_EQ(s.total, usage(2, 2500, 3, 3500, 3, 1, 1));
}

TEST_F(Stats, QueueStatsCountOnlyThatQueue) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 1), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 2), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, 1);
    Alloc b = allocate(adapter_, 2 * PAGE_SIZE, 1);
    Alloc c = allocate(adapter_, 3 * PAGE_SIZE, 2);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    NdisFreeSharedMemory(adapter_, a.handle);
    TestProvider& refusing = provide(adapter_);
    refusing.fail_with = NDIS_STATUS_RESOURCES;
    EXPECT_EQ(allocate(adapter_, PAGE_SIZE, 2).status, NDIS_STATUS_RESOURCES);

    EXPECT_EQ(queue_stats(adapter_, 1), usage(1, 2 * PAGE_SIZE, 2, 3 * PAGE_SIZE, 2, 1, 0));
    EXPECT_EQ(queue_stats(adapter_, 2), usage(1, 3 * PAGE_SIZE, 1, 3 * PAGE_SIZE, 1, 0, 1));
    EXPECT_EQ(queue_stats(adapter_, 0), usage(0, 0, 0, 0, 0, 0, 0));
    EXPECT_EQ(stats(adapter_).queues, 3u);
}

TEST_F(Stats, EveryRefusedAllocationCountsAsAFailure) {
    uint64_t refused = 0;
    EXPECT_EQ(allocate(adapter_, 0).status, NDIS_STATUS_INVALID_LENGTH);
    ++refused;
    EXPECT_EQ(allocate(adapter_, PAGE_SIZE, 42).status, NDIS_STATUS_INVALID_PARAMETER);
    ++refused;
    EXPECT_EQ(allocate(adapter_, PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, 0, 0).status,
              NDIS_STATUS_BUFFER_TOO_SHORT);
    ++refused;
    TestProvider& provider = provide(adapter_);
    provider.omit_context = true;
    EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_FAILURE);
    ++refused;
    provider.omit_context = false;
    provider.fail_with = NDIS_STATUS_RESOURCES;
    EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_RESOURCES);
    ++refused;
    EXPECT_EQ(stats(adapter_).total.failures, refused);
    EXPECT_EQ(stats(adapter_).by_usage[NdisSharedMemoryUsageReceive].failures, refused);

    // host.h: "failures: allocations refused, for any reason" -- the IRQL is one.
    {
        IrqlGuard guard;
        KIRQL old;
        KeRaiseIrql(DISPATCH_LEVEL, &old);
        EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_FAILURE);
        ++refused;
        KeLowerIrql(old);
    }
    EXPECT_EQ(stats(adapter_).total.failures, refused) << "a call refused for its IRQL was not counted";
    EXPECT_EQ(stats(adapter_).by_usage[NdisSharedMemoryUsageReceive].failures, refused);
    EXPECT_EQ(queue_stats(adapter_, 0).failures, refused - 1)
        << "all but the one for queue 42, which is none";
    EXPECT_EQ(stats(adapter_).total.allocations, 0u);
}

TEST_F(Stats, StatsOfUnknownThingsAreInvalidParameter) {
    ndisshm_usage_stats q{};
    EXPECT_EQ(ndisshm_queue_get_stats(adapter_, 77, &q), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_queue_get_stats(adapter_, 0, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_adapter_get_stats(adapter_, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    ndisshm_adapter_stats s{};
    int on_stack = 0;
    EXPECT_EQ(ndisshm_adapter_get_stats(&on_stack, &s), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(global_log_.of(NDISSHM_VIOLATION_BAD_HANDLE).size(), 1u);
}

TEST_F(Stats, QueuesAndBindingsAreCounted) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 7), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(ndisshm_queue_create(adapter_, 7), NDIS_STATUS_INVALID_PARAMETER) << "exists already";
    EXPECT_EQ(ndisshm_queue_create(adapter_, 0), NDIS_STATUS_INVALID_PARAMETER) << "the default queue";
    NDIS_HANDLE b1 = new_binding(adapter_, "one");
    new_binding(adapter_, "two");
    auto s = stats(adapter_);
    EXPECT_EQ(s.queues, 2u);
    EXPECT_EQ(s.bindings, 2u);
    EXPECT_EQ(s.has_provider, 0);
    ASSERT_EQ(new_provider().register_on(b1), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats(adapter_).has_provider, 1);
    EXPECT_EQ(ndisshm_queue_free(adapter_, 0), NDIS_STATUS_INVALID_PARAMETER) << "the default queue stays";
    EXPECT_EQ(ndisshm_queue_free(adapter_, 8), NDIS_STATUS_INVALID_PARAMETER);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 7), NDIS_STATUS_SUCCESS);
    ndisshm_binding_destroy(b1);
    s = stats(adapter_);
    EXPECT_EQ(s.queues, 1u);
    EXPECT_EQ(s.bindings, 1u);
    EXPECT_EQ(s.has_provider, 0);
}

}  // namespace
}  // namespace ndisshm::test
