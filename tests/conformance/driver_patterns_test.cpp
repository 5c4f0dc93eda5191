// The calling patterns of real drivers (spec sections 4 and 6), end to end: a SmartNIC driver's per-queue
// receive areas and the Windows virtual miniport sample's per-queue lookahead split.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

using DriverPatterns = NdisTest;

// Section 6, first caller, step by step: zeroed revision-2 parameters, Flags 0, QueueId = the VMQ,
// Usage = Receive, PreferredNode = the adapter's node, Length = frame size rounded to pages x packets;
// its own SG buffer for BYTES_TO_PAGES(Length) elements with NumberOfElements preset to that capacity;
// reads VirtualAddress and Elements[0].Address, then frees the SG buffer right after the call.
TEST_F(DriverPatterns, DriverCallsPatternOfSection6) {
    constexpr NDIS_RECEIVE_QUEUE_ID kVmq = 3;
    constexpr ULONG kFrame = 2048 + 64, kPackets = 32;
    NDIS_HANDLE binding = nullptr;
    TestProvider& vswitch = provide(adapter_, "vswitch", &binding);
    ASSERT_EQ(ndisshm_queue_create(binding, kVmq), NDIS_STATUS_SUCCESS);  // the switch allocates the VMQ

    for (NDIS_HANDLE adapter : {adapter_, new_adapter("eth1")}) {  // registered provider, then default
        SCOPED_TRACE(adapter == adapter_ ? "vswitch" : "default");
        NDIS_SHARED_MEMORY_PARAMETERS params;
        NdisZeroMemory(&params, sizeof(params));
        params.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        params.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        params.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        params.Flags = 0;
        params.QueueId = adapter == adapter_ ? kVmq : NDIS_DEFAULT_RECEIVE_QUEUE_ID;
        params.Usage = NdisSharedMemoryUsageReceive;
        params.PreferredNode = 0;
        params.Length = ((kFrame + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) * kPackets;
        const ULONG pages = BYTES_TO_PAGES(params.Length);
        ASSERT_EQ(pages, 32u);
        const ULONG sg_bytes = sizeof(SCATTER_GATHER_LIST) + pages * sizeof(SCATTER_GATHER_ELEMENT);
        auto* sg = static_cast<PSCATTER_GATHER_LIST>(std::malloc(sg_bytes));
        ASSERT_NE(sg, nullptr);
        NdisZeroMemory(sg, sg_bytes);
        sg->NumberOfElements = pages;
        params.SGListBuffer = sg;
        params.SGListBufferLength = sg_bytes;

        NDIS_HANDLE allocation = nullptr;
        ASSERT_EQ(NdisAllocateSharedMemory(adapter, &params, &allocation), NDIS_STATUS_SUCCESS);
        void* va = params.VirtualAddress;
        const PHYSICAL_ADDRESS pa = sg->Elements[0].Address;
        ASSERT_GE(sg->NumberOfElements, 1u);
        ASSERT_LE(sg->NumberOfElements, pages);
        std::free(sg);  // the SG buffer is the caller's, used only during the call

        ASSERT_NE(va, nullptr);
        EXPECT_EQ(static_cast<uintptr_t>(pa.QuadPart), reinterpret_cast<uintptr_t>(va));
        // A provider's block has a SharedMemoryHandle; NDIS's own memory has none.
        EXPECT_EQ(params.SharedMemoryHandle != nullptr, adapter == adapter_);
        std::memset(va, 0xAB, params.Length);  // the "device" fills the receive area
        ndisshm_block_info info{};
        ASSERT_EQ(ndisshm_block_get_info(adapter, allocation, &info), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(info.queue_id, params.QueueId);
        EXPECT_EQ(info.length, params.Length);
        EXPECT_EQ(info.first_address, static_cast<ULONG64>(pa.QuadPart));
        NdisFreeSharedMemory(adapter, allocation);
        EXPECT_FALSE(is_live(adapter, allocation));
    }
    ASSERT_EQ(vswitch.alloc_calls().size(), 1u);
    EXPECT_EQ(vswitch.alloc_calls()[0].params.QueueId, kVmq);
    EXPECT_EQ(vswitch.free_calls().size(), 1u);
    EXPECT_EQ(log_.size(), 0u);
}

// Section 6, second caller, with section 4's life cycle: per non-default queue, after the queue exists,
// lookahead + post-lookahead blocks when split is required, else Receive blocks; the default queue gets
// none; each queue's blocks are freed before the queue is.
TEST_F(DriverPatterns, VirtualMiniportVmqPatternOfSection6) {
    TestProvider& vswitch = provide(adapter_, "vswitch");
    struct Vmq {
        NDIS_RECEIVE_QUEUE_ID id;
        bool split;
        std::vector<Alloc> blocks;
    };
    std::vector<Vmq> queues;
    queues.push_back({1, true, {}});
    queues.push_back({2, false, {}});
    queues.push_back({3, true, {}});
    constexpr ULONG kLookahead = 256, kPost = 1514, kFull = 2048, kPerQueue = 4;
    for (auto& q : queues) {
        ASSERT_EQ(ndisshm_queue_create(adapter_, q.id), NDIS_STATUS_SUCCESS);
        for (ULONG i = 0; i < kPerQueue; ++i) {
            if (q.split) {
                q.blocks.push_back(
                    allocate(adapter_, kLookahead * 64, q.id, NdisSharedMemoryUsageReceiveLookahead));
                q.blocks.push_back(
                    allocate(adapter_, kPost * 64, q.id, NdisSharedMemoryUsageReceivePostLookahead));
            } else {
                q.blocks.push_back(allocate(adapter_, kFull * 64, q.id, NdisSharedMemoryUsageReceive));
            }
        }
        for (auto& b : q.blocks) ASSERT_TRUE(b.ok()) << ndisshm_status_name(b.status);
    }
    const auto s = stats(adapter_);
    EXPECT_EQ(s.by_usage[NdisSharedMemoryUsageReceiveLookahead].blocks, 2u * kPerQueue);
    EXPECT_EQ(s.by_usage[NdisSharedMemoryUsageReceivePostLookahead].blocks, 2u * kPerQueue);
    EXPECT_EQ(s.by_usage[NdisSharedMemoryUsageReceive].blocks, kPerQueue);
    EXPECT_EQ(queue_stats(adapter_, NDIS_DEFAULT_RECEIVE_QUEUE_ID).blocks, 0u);
    EXPECT_EQ(queue_stats(adapter_, 1).blocks, 2u * kPerQueue);
    EXPECT_EQ(queue_stats(adapter_, 2).bytes, uint64_t{kFull} * 64 * kPerQueue);
    for (const auto& c : vswitch.alloc_calls()) EXPECT_NE(c.params.QueueId, NDIS_DEFAULT_RECEIVE_QUEUE_ID);

    for (auto& q : queues) {
        for (auto& b : q.blocks) NdisFreeSharedMemory(adapter_, b.handle);
        EXPECT_EQ(queue_stats(adapter_, q.id).blocks, 0u);
        EXPECT_EQ(ndisshm_queue_free(adapter_, q.id), NDIS_STATUS_SUCCESS);
    }
    EXPECT_EQ(log_.size(), 0u) << "an orderly VMQ life cycle reports nothing";
    EXPECT_EQ(vswitch.live(), 0u);
    EXPECT_EQ(vswitch.free_calls().size(), vswitch.alloc_calls().size());
    EXPECT_EQ(stats(adapter_).queues, 1u);
}

// Section 4: received packets are described by shared memory handle + offset + length, so the consumer
// reads them in place: the handle must name the block for as long as it is allocated.
TEST_F(DriverPatterns, SharedMemoryHandleNamesTheBlockWhileItIsAllocated) {
    provide(adapter_);  // a provider's blocks are the ones packets name
    Alloc a = allocate(adapter_, 4 * PAGE_SIZE);
    Alloc b = allocate(adapter_, 4 * PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NE(a.params.SharedMemoryHandle, b.params.SharedMemoryHandle);
    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, a.params.SharedMemoryHandle, &info), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(info.virtual_address, a.params.VirtualAddress);
    // A packet at offset 0x1800, length 60, read in place.
    std::memcpy(a.bytes() + 0x1800, "packet", 6);
    EXPECT_EQ(std::memcmp(static_cast<unsigned char*>(info.virtual_address) + 0x1800, "packet", 6), 0);
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_NE(ndisshm_block_get_info(adapter_, a.params.SharedMemoryHandle, &info), NDIS_STATUS_SUCCESS);
}

}  // namespace
}  // namespace ndisshm::test
