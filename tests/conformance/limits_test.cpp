// Caps on outstanding bytes per adapter and per queue, and the books by NUMA
// node: exceeding a cap is NDIS_STATUS_RESOURCES, never an abort, and never a
// verifier violation (the driver did nothing wrong).
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "conformance/fixture.hpp"

namespace ndisshm::test {

namespace {

class Limits : public NdisTest {};

TEST_F(Limits, AllocationOverTheAdapterLimitIsResourcesAndChangesNothing) {
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 64 * 1024), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, 48 * 1024);
    ASSERT_TRUE(a.ok());
    const ndisshm_adapter_stats before = stats(adapter_);
    Alloc b = allocate(adapter_, 32 * 1024);
    EXPECT_EQ(b.status, NDIS_STATUS_RESOURCES);
    EXPECT_EQ(b.handle, nullptr);
    EXPECT_EQ(b.params.VirtualAddress, nullptr);
    const ndisshm_adapter_stats after = stats(adapter_);
    EXPECT_EQ(after.total.blocks, before.total.blocks);
    EXPECT_EQ(after.total.bytes, before.total.bytes);
    EXPECT_EQ(after.total.failures, before.total.failures + 1);
    EXPECT_EQ(after.limit_bytes, 64u * 1024);
    EXPECT_TRUE(log_.all().empty()) << "a cap is not misuse: no violation";
    // Exactly up to the cap is allowed.
    Alloc c = allocate(adapter_, 16 * 1024);
    EXPECT_TRUE(c.ok());
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, c.handle);
}

TEST_F(Limits, FreeingUnderTheLimitLetsAllocationsThroughAgain) {
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 8192), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, 8192);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(allocate(adapter_, 4096).status, NDIS_STATUS_RESOURCES);
    NdisFreeSharedMemory(adapter_, a.handle);
    Alloc b = allocate(adapter_, 4096);
    EXPECT_TRUE(b.ok());
    NdisFreeSharedMemory(adapter_, b.handle);
}

TEST_F(Limits, QueueLimitBindsOnlyThatQueue) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 1), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_set_limit(adapter_, 1, 4096), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, 4096, 1);
    ASSERT_TRUE(a.ok());
    Alloc refused = allocate(adapter_, 4096, 1);
    EXPECT_EQ(refused.status, NDIS_STATUS_RESOURCES);
    EXPECT_EQ(queue_stats(adapter_, 1).failures, 1u);
    Alloc other = allocate(adapter_, 64 * 1024, 0);
    EXPECT_TRUE(other.ok()) << "the default queue has no cap";
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, other.handle);
}

TEST_F(Limits, ZeroRemovesTheCapAndLoweringBelowOutstandingFreesNothing) {
    Alloc a = allocate(adapter_, 16 * 1024);
    ASSERT_TRUE(a.ok());
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 4096), NDIS_STATUS_SUCCESS);
    EXPECT_TRUE(is_live(adapter_, a.handle)) << "a lower cap never takes memory back";
    EXPECT_EQ(allocate(adapter_, 4096).status, NDIS_STATUS_RESOURCES);
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 0), NDIS_STATUS_SUCCESS);
    Alloc b = allocate(adapter_, 4096);
    EXPECT_TRUE(b.ok());
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, b.handle);
}

TEST_F(Limits, SettingALimitOnAnUnknownQueueIsInvalidParameter) {
    EXPECT_EQ(ndisshm_queue_set_limit(adapter_, 9, 4096), NDIS_STATUS_INVALID_PARAMETER);
}

TEST_F(Limits, ProviderFailureReturnsTheAdmittedBytes) {
    TestProvider& p = provide(adapter_);
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 8192), NDIS_STATUS_SUCCESS);
    p.fail_with = NDIS_STATUS_RESOURCES;
    EXPECT_EQ(allocate(adapter_, 8192).status, NDIS_STATUS_RESOURCES);
    p.fail_with = NDIS_STATUS_SUCCESS;
    Alloc a = allocate(adapter_, 8192);
    EXPECT_TRUE(a.ok()) << "a failed call must not keep its bytes counted against the cap";
    NdisFreeSharedMemory(adapter_, a.handle);
}

TEST_F(Limits, RacingThreadsNeverTogetherExceedTheCap) {
    constexpr ULONG kBlock = 4096;
    constexpr uint64_t kCap = 8 * kBlock;
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, kCap), NDIS_STATUS_SUCCESS);
    std::atomic<uint64_t> over{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 500; ++i) {
                std::vector<NDIS_HANDLE> held;
                for (int k = 0; k < 4; ++k) {
                    Alloc a = allocate(adapter_, kBlock);
                    if (a.ok()) held.push_back(a.handle);
                }
                ndisshm_adapter_stats s{};
                ndisshm_adapter_get_stats(adapter_, &s);
                if (s.total.bytes > kCap) over.fetch_add(1);
                for (NDIS_HANDLE h : held) NdisFreeSharedMemory(adapter_, h);
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(over.load(), 0u);
    EXPECT_EQ(stats(adapter_).total.peak_bytes <= kCap, true) << stats(adapter_).total.peak_bytes;
    EXPECT_EQ(stats(adapter_).total.blocks, 0u);
}

class LimitsDefault : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override {
        c.adapter_limit_bytes = 1 << 20;
        c.queue_limit_bytes = 64 * 1024;
    }
};

TEST_F(LimitsDefault, RuntimeConfigCapsEveryAdapterAndQueue) {
    EXPECT_EQ(stats(adapter_).limit_bytes, 1u << 20);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 3), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, 64 * 1024, 3);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(allocate(adapter_, 4096, 3).status, NDIS_STATUS_RESOURCES);
    NdisFreeSharedMemory(adapter_, a.handle);
}

class LimitsNodeBooks : public NdisTest {};

TEST_F(LimitsNodeBooks, DefaultProviderBlocksAreCountedOnTheirNode) {
    Alloc any = allocate(adapter_, 8192);
    ASSERT_TRUE(any.ok());
    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, any.handle, &info), NDIS_STATUS_SUCCESS);
    ASSERT_GE(info.node, 0);
    ASSERT_LT(info.node, NDISSHM_MAX_NODES);
    EXPECT_EQ(stats(adapter_).by_node[info.node].blocks, 1u);
    EXPECT_EQ(stats(adapter_).by_node[info.node].bytes, 8192u);
    NdisFreeSharedMemory(adapter_, any.handle);
    EXPECT_EQ(stats(adapter_).by_node[info.node].blocks, 0u);
    EXPECT_EQ(stats(adapter_).by_node[info.node].frees, 1u);
}

TEST_F(LimitsNodeBooks, ANodePastTheLastIsAnyNodeAndCountedWhereTheBlockLanded) {
    Alloc a(4096, 1, 0, NdisSharedMemoryUsageReceive, 0);
    a.params.PreferredNode = NDISSHM_MAX_NODES - 1;  // no test machine has 64 nodes
    a.status = NdisAllocateSharedMemory(adapter_, &a.params, &a.handle);
    ASSERT_EQ(a.status, NDIS_STATUS_SUCCESS) << "Windows: a node past the last one means any node";
    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, a.handle, &info), NDIS_STATUS_SUCCESS);
    ASSERT_GE(info.node, 0);
    EXPECT_EQ(stats(adapter_).by_node[info.node].blocks, 1u);
    EXPECT_EQ(stats(adapter_).by_node[NDISSHM_MAX_NODES - 1].failures, 0u);
    NdisFreeSharedMemory(adapter_, a.handle);
}

TEST_F(LimitsNodeBooks, ProviderThatGivesNoNodeIsCountedOnNone) {
    provide(adapter_);
    Alloc a = allocate(adapter_, 4096);
    ASSERT_TRUE(a.ok());
    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, a.handle, &info), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(info.node, -1);
    uint64_t counted = 0;
    for (const auto& n : stats(adapter_).by_node) counted += n.blocks;
    EXPECT_EQ(counted, 0u);
    NdisFreeSharedMemory(adapter_, a.handle);
}

TEST_F(LimitsNodeBooks, MemoryStatsDescribeTheDefaultProvidersMemory) {
    Alloc a = allocate(adapter_, 64 * 1024);
    ASSERT_TRUE(a.ok());
    ndisshm_memory_stats m{};
    ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
    EXPECT_NE(m.page_mode, static_cast<uint32_t>(NDISSHM_PAGES_AUTO)) << "stats show the mode in use";
    EXPECT_TRUE(m.page_bytes == 4096 || m.page_bytes == 2u << 20) << m.page_bytes;
    EXPECT_GE(m.arenas, 1u);
    EXPECT_GE(m.numa_nodes, 1u);
    EXPECT_GE(m.bytes_in_use, 64u * 1024);
    EXPECT_GE(m.blocks_in_use, 1u);
    EXPECT_GE(m.file_bytes, m.bytes_in_use);
    EXPECT_GE(m.reserved_bytes, m.file_bytes);
    EXPECT_EQ(ndisshm_runtime_get_memory_stats(rt_, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    NdisFreeSharedMemory(adapter_, a.handle);
}

}  // namespace

}  // namespace ndisshm::test
