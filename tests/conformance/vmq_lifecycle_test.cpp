// The VMQ life cycle (spec section 4): a queue is allocated with its
// parameters, its allocation completes, and only then does the miniport
// allocate shared memory for it; the provider hears of the queue at
// completion and learns each block's SharedMemoryHandle before the
// allocation returns.
#include <gtest/gtest.h>

#include "conformance/fixture.hpp"
#include "pool_provider.hpp"

namespace ndisshm::test {

namespace {

class VmqLifecycle : public NdisTest {};

TEST_F(VmqLifecycle, SharedMemoryBeforeAllocationCompleteIsRefusedAndReported) {
    ndisshm_queue_params qp{sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 128};
    ASSERT_EQ(ndisshm_queue_allocate(adapter_, 5, &qp), NDIS_STATUS_SUCCESS);
    Alloc early = allocate(adapter_, 4096, 5, NdisSharedMemoryUsageReceiveLookahead);
    EXPECT_EQ(early.status, NDIS_STATUS_INVALID_PARAMETER);
    auto v = log_.of(NDISSHM_VIOLATION_BAD_PARAMETERS);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_NE(v[0].message.find("has not completed"), std::string::npos) << v[0].message;

    ASSERT_EQ(ndisshm_queue_allocation_complete(adapter_, 5), NDIS_STATUS_SUCCESS);
    Alloc later = allocate(adapter_, 4096, 5, NdisSharedMemoryUsageReceiveLookahead);
    EXPECT_TRUE(later.ok());
    NdisFreeSharedMemory(adapter_, later.handle);
    EXPECT_EQ(ndisshm_queue_free(adapter_, 5), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqLifecycle, QueueParametersAreKeptAndCompletionIsOnce) {
    ndisshm_queue_params qp{sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 256};
    ASSERT_EQ(ndisshm_queue_allocate(adapter_, 2, &qp), NDIS_STATUS_SUCCESS);
    ndisshm_queue_params got{};
    int complete = -1;
    ASSERT_EQ(ndisshm_queue_get_params(adapter_, 2, &got, &complete), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(got.flags, static_cast<uint32_t>(NDISSHM_QUEUE_LOOKAHEAD_SPLIT));
    EXPECT_EQ(got.lookahead_size, 256u);
    EXPECT_EQ(complete, 0);
    ASSERT_EQ(ndisshm_queue_allocation_complete(adapter_, 2), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_get_params(adapter_, 2, nullptr, &complete), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(complete, 1);
    EXPECT_EQ(ndisshm_queue_allocation_complete(adapter_, 2), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_queue_allocation_complete(adapter_, 77), NDIS_STATUS_INVALID_PARAMETER);
    ndisshm_queue_params bad{sizeof(ndisshm_queue_params), 0x80, 0};
    EXPECT_EQ(ndisshm_queue_allocate(adapter_, 3, &bad), NDIS_STATUS_INVALID_PARAMETER);
}

TEST_F(VmqLifecycle, ProviderHearsOfAQueueAtCompletionAndOfItsGoing) {
    NDIS_HANDLE binding = new_binding(adapter_, "vswitch");
    TestProvider& p = new_provider();
    ndisshm_provider_ops ops = p.ops();
    ASSERT_EQ(ndisshm_binding_register_provider(binding, &ops), NDIS_STATUS_SUCCESS);
    // The binding allocates the queue (OID_RECEIVE_FILTER_ALLOCATE_QUEUE): its provider serves it.
    ASSERT_EQ(ndisshm_queue_allocate(binding, 4, nullptr), NDIS_STATUS_SUCCESS);
    EXPECT_TRUE(p.queue_events().empty()) << "not before the allocation completes";
    ASSERT_EQ(ndisshm_queue_allocation_complete(adapter_, 4), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(p.queue_events().size(), 1u);
    EXPECT_EQ(p.queue_events()[0], std::make_pair(NDIS_RECEIVE_QUEUE_ID{4}, true));
    ASSERT_EQ(ndisshm_queue_free(adapter_, 4), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(p.queue_events().size(), 2u);
    EXPECT_EQ(p.queue_events()[1], std::make_pair(NDIS_RECEIVE_QUEUE_ID{4}, false));
}

TEST_F(VmqLifecycle, AQueueFreedBeforeCompletionIsNeverAnnouncedToTheProvider) {
    NDIS_HANDLE binding = new_binding(adapter_, "vswitch");
    TestProvider& p = new_provider();
    ndisshm_provider_ops ops = p.ops();
    ASSERT_EQ(ndisshm_binding_register_provider(binding, &ops), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_allocate(binding, 6, nullptr), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 6), NDIS_STATUS_SUCCESS);
    EXPECT_TRUE(p.queue_events().empty());
}

// A pool provider (support/'s: it owns real memory, and keeps each block's handle as a switch does).
TEST_F(VmqLifecycle, ProviderLearnsEachBlocksSharedMemoryHandleBeforeTheCallReturns) {
    support::PoolProvider pool("vswitch", 4, 4096);
    ndisshm_provider_ops ops = pool.ops();
    NDIS_HANDLE binding = new_binding(adapter_, "vswitch");
    ASSERT_EQ(ndisshm_binding_register_provider(binding, &ops), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(binding, 3), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, 4096, 3);
    ASSERT_TRUE(a.ok());
    ASSERT_NE(a.params.SharedMemoryHandle, nullptr);
    EXPECT_EQ(pool.shared_memory_handle(a.params.VirtualAddress), a.params.SharedMemoryHandle);
    Alloc b = allocate(adapter_, 4096, 3);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(pool.shared_memory_handle(b.params.VirtualAddress), b.params.SharedMemoryHandle);
    EXPECT_NE(a.params.SharedMemoryHandle, b.params.SharedMemoryHandle);
    // A refused allocation (no queue 9) reaches no provider and commits nothing.
    Alloc refused = allocate(adapter_, 4096, 9);
    EXPECT_FALSE(refused.ok());
    EXPECT_EQ(pool.live(), 2u);
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(pool.shared_memory_handle(a.params.VirtualAddress), nullptr) << "a freed block keeps no handle";
    ndisshm_binding_destroy(binding);
    EXPECT_EQ(pool.live(), 0u);
    EXPECT_EQ(pool.bad_frees(), 0u);
}

}  // namespace

}  // namespace ndisshm::test
