// Spec section 2: the constants a Windows driver compiles against have the WDK's values (status codes,
// usages, flags), so a driver's comparisons and switch statements mean here what they mean there.
#include "conformance/fixture.hpp"

#include <type_traits>

namespace ndisshm::test {
namespace {

TEST(Constants, StatusCodesAreTheWdkValues) {
    EXPECT_EQ(NDIS_STATUS_SUCCESS, 0x00000000);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_PENDING), 0x00000103u);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_FAILURE), 0xC0000001u);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER), 0xC000000Du);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_RESOURCES), 0xC000009Au);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_NOT_SUPPORTED), 0xC00000BBu);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_INVALID_LENGTH), 0xC0010014u);
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_INVALID_DATA), 0xC0010015u);
    // An NDIS code, not NT's STATUS_BUFFER_TOO_SMALL (0xC0000023).
    EXPECT_EQ(static_cast<uint32_t>(NDIS_STATUS_BUFFER_TOO_SHORT), 0xC0010016u);
    EXPECT_LT(NDIS_STATUS_FAILURE, 0) << "NDIS_STATUS is a signed NTSTATUS";
    EXPECT_STREQ(ndisshm_status_name(NDIS_STATUS_BUFFER_TOO_SHORT), "NDIS_STATUS_BUFFER_TOO_SHORT");
}

// ndis.h's spellings of an SG element's address, which a miniport types when it
// keeps or compares the Address of its blocks: each used as a driver would.
TEST(Constants, PhysicalAddressSpellingsAreNdisHs) {
    static_assert(sizeof(NDIS_PHYSICAL_ADDRESS) == 8 && sizeof(PNDIS_PHYSICAL_ADDRESS) == 8);
    static_assert(std::is_same_v<NDIS_PHYSICAL_ADDRESS, PHYSICAL_ADDRESS>, "ndis.h: typedef PHYSICAL_ADDRESS");
    static_assert(std::is_same_v<decltype(SCATTER_GATHER_ELEMENT::Address), NDIS_PHYSICAL_ADDRESS>);
    NDIS_PHYSICAL_ADDRESS a = NDIS_PHYSICAL_ADDRESS_CONST(0x89abcdef, 0x01234567);
    EXPECT_EQ(a.QuadPart, 0x0123456789abcdefLL) << "low part first, high part second";
    EXPECT_EQ(NdisGetPhysicalAddressLow(a), 0x89abcdefu);
    EXPECT_EQ(NdisGetPhysicalAddressHigh(a), 0x01234567);
    PNDIS_PHYSICAL_ADDRESS p = &a;
    NdisSetPhysicalAddressHigh(*p, 0x7);
    NdisSetPhysicalAddressLow(*p, 0x1000);
    EXPECT_EQ(p->QuadPart, 0x0000000700001000LL);
    const NDIS_PHYSICAL_ADDRESS none = NDIS_PHYSICAL_ADDRESS_CONST(-1, -1);
    EXPECT_EQ(none.QuadPart, -1) << "the all-ones value drivers use for 'no address'";
}

TEST(Constants, UsageValuesAreTheWdkValues) {
    const NDIS_SHARED_MEMORY_USAGE in_order[] = {NdisSharedMemoryUsageUndefined,
                                                 NdisSharedMemoryUsageXmit,
                                                 NdisSharedMemoryUsageXmitHeader,
                                                 NdisSharedMemoryUsageXmitData,
                                                 NdisSharedMemoryUsageReceive,
                                                 NdisSharedMemoryUsageReceiveLookahead,
                                                 NdisSharedMemoryUsageReceivePostLookahead,
                                                 NdisSharedMemoryUsageReceiveHeader,
                                                 NdisSharedMemoryUsageReceiveData,
                                                 NdisSharedMemoryUsageOther,
                                                 NdisSharedMemoryUsageMax};
    for (int i = 0; i <= 10; ++i) EXPECT_EQ(static_cast<int>(in_order[i]), i);
    EXPECT_EQ(NDIS_SHARED_MEM_PARAMETERS_CONTIGOUS, NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS);
    EXPECT_EQ(NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS, 1);
    EXPECT_EQ(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1, 0x40u);
    EXPECT_EQ(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2, 0x44u);
}

}  // namespace
}  // namespace ndisshm::test
