// The caller's scatter/gather list (spec sections 2 and 3): filled on success, one element for a
// CONTIGUOUS block, several allowed otherwise, BUFFER_TOO_SHORT with the needed count when it is too
// small, and never written past SGListBufferLength.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

using SgList = NdisTest;

TEST_F(SgList, ContiguousRequestGetsExactlyOneElement) {
    for (ULONG flag :
         {ULONG{NDIS_SHARED_MEM_PARAMETERS_CONTIGOUS}, ULONG{NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS}}) {
        for (ULONG length : {1u, 4096u, 5000u, 64u * 4096u}) {
            SCOPED_TRACE(testing::Message() << "Length " << length);
            Alloc a = allocate(adapter_, length, 0, NdisSharedMemoryUsageReceive, flag, 8);
            ASSERT_TRUE(a.ok()) << ndisshm_status_name(a.status);
            EXPECT_EQ(a.sg.list()->NumberOfElements, 1u);
            EXPECT_GE(a.element(0).Length, length);
            EXPECT_TRUE(a.sg.canary_intact());
            NdisFreeSharedMemory(adapter_, a.handle);
        }
    }
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(SgList, NonContiguousBlockMayBeDescribedBySeveralElements) {
    TestProvider& provider = provide(adapter_);
    provider.elements = 3;
    Alloc a = allocate(adapter_, 3 * PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, 0, 3);
    ASSERT_TRUE(a.ok()) << ndisshm_status_name(a.status);
    ASSERT_EQ(a.sg.list()->NumberOfElements, 3u);
    uint64_t described = 0;
    for (ULONG i = 0; i < 3; ++i) {
        EXPECT_EQ(static_cast<uintptr_t>(a.element(i).Address.QuadPart),
                  reinterpret_cast<uintptr_t>(a.params.VirtualAddress) + i * PAGE_SIZE);
        described += a.element(i).Length;
    }
    EXPECT_EQ(described, 3u * PAGE_SIZE);
    EXPECT_TRUE(a.sg.canary_intact());
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(SgList, TooSmallSgBufferGivesBufferTooShortWithNeededCount) {
    // Default provider: room for the list header but no element.
    Alloc a(PAGE_SIZE, 0, 0, NdisSharedMemoryUsageReceive, 0);
    a.sg.list()->NumberOfElements = 77;
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &a.params, &a.handle), NDIS_STATUS_BUFFER_TOO_SHORT);
    EXPECT_EQ(a.sg.list()->NumberOfElements, 1u);
    EXPECT_TRUE(a.sg.canary_intact());
    only_violation(log_, NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT, "NdisAllocateSharedMemory");
    EXPECT_EQ(stats(adapter_).total.blocks, 0u);
    EXPECT_EQ(stats(adapter_).total.failures, 1u);

    // Registered provider that needs 3 elements, buffer for 2.
    NDIS_HANDLE eth1 = new_adapter("eth1");
    TestProvider& provider = provide(eth1);
    provider.elements = 3;
    Alloc b = allocate(eth1, 3 * PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, 0, 2);
    EXPECT_EQ(b.status, NDIS_STATUS_BUFFER_TOO_SHORT);
    EXPECT_EQ(b.sg.list()->NumberOfElements, 3u);
    EXPECT_TRUE(b.sg.canary_intact());
    EXPECT_EQ(stats(eth1).total.blocks, 0u);
    EXPECT_EQ(stats(eth1).total.failures, 1u);
    EXPECT_EQ(provider.live(), 0u);
    EXPECT_TRUE(provider.free_calls().empty()) << "the provider allocated nothing, so nothing to free";

    // With room for 3 the same request succeeds.
    Alloc c = allocate(eth1, 3 * PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, 0, 3);
    EXPECT_TRUE(c.ok()) << ndisshm_status_name(c.status);
}

TEST_F(SgList, SgBufferShorterThanTheListHeaderIsNotWritten) {
    for (ULONG bytes : {0u, 4u, 8u, NDISSHM_SG_LIST_HEADER_BYTES - 1}) {
        SCOPED_TRACE(testing::Message() << "SGListBufferLength " << bytes);
        SgBuffer sg(bytes);
        std::memset(sg.raw(), 0x5C, bytes);
        auto p = make_params(PAGE_SIZE, sg);
        NDIS_HANDLE h = nullptr;
        EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_BUFFER_TOO_SHORT);
        for (ULONG i = 0; i < bytes; ++i) ASSERT_EQ(sg.raw()[i], 0x5C) << "byte " << i << " written";
        EXPECT_TRUE(sg.canary_intact());
    }
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT).size(), 4u);
    EXPECT_EQ(stats(adapter_).total.blocks, 0u);
}

TEST_F(SgList, SgListIsNeverWrittenPastSgListBufferLength) {
    // Exactly one element of room, default provider.
    Alloc a = allocate(adapter_, 10 * PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, 0, 1);
    ASSERT_TRUE(a.ok());
    EXPECT_TRUE(a.sg.canary_intact());

    // An odd length that holds one element and part of another.
    SgBuffer odd(NDISSHM_SG_LIST_BYTES(1) + 20);
    auto p = make_params(PAGE_SIZE, odd);
    NDIS_HANDLE h = nullptr;
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
    EXPECT_TRUE(odd.canary_intact());
    EXPECT_EQ(odd.list()->NumberOfElements, 1u);
}

TEST_F(SgList, NumberOfElementsOnEntryIsReplacedByTheCount) {
    // As the SmartNIC driver of section 6 does: NumberOfElements preset to the buffer's capacity.
    Alloc a(16 * PAGE_SIZE, 16, 0, NdisSharedMemoryUsageReceive, 0);
    a.sg.list()->NumberOfElements = 16;
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &a.params, &a.handle), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(a.sg.list()->NumberOfElements, 1u);
    EXPECT_EQ(a.element(0).Length, 16u * PAGE_SIZE);
}

TEST_F(SgList, ElementsDescribeTheWholeBlockAtItsAddress) {
    for (ULONG length : {100u, 4096u, 12345u}) {
        Alloc a = allocate(adapter_, length);
        ASSERT_TRUE(a.ok());
        ASSERT_EQ(a.sg.list()->NumberOfElements, 1u);
        EXPECT_EQ(a.element(0).Length, length);
        // Default provider, no iova_base: IOVA = VA.
        EXPECT_EQ(static_cast<uintptr_t>(a.element(0).Address.QuadPart),
                  reinterpret_cast<uintptr_t>(a.params.VirtualAddress));
        ndisshm_block_info info{};
        ASSERT_EQ(ndisshm_block_get_info(adapter_, a.handle, &info), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(info.first_address, static_cast<ULONG64>(a.element(0).Address.QuadPart));
    }
}

}  // namespace
}  // namespace ndisshm::test
