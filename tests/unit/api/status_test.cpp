// The C API's one error convention (<ndisshm/status.h>): every code has a
// name and a meaning, ndisshm's own codes cannot be mistaken for Windows'
// and sort as the guest's loop needs, and the error buffer is filled on
// failure, emptied on success, and never overrun.
#include <gtest/gtest.h>
#include <ndisshm/guest.h>
#include <ndisshm/host.h>
#include <ndisshm/hub.h>

#include <cstring>
#include <string>

namespace ndisshm::test {
namespace {

TEST(Status, EveryCodeTheApiReturnsHasANameAndAMeaning) {
    for (NDIS_STATUS s : {NDIS_STATUS_SUCCESS, NDIS_STATUS_PENDING, NDIS_STATUS_FAILURE, NDIS_STATUS_INVALID_PARAMETER,
                          NDIS_STATUS_RESOURCES, NDIS_STATUS_NOT_SUPPORTED, NDIS_STATUS_INVALID_LENGTH,
                          NDIS_STATUS_INVALID_DATA, NDIS_STATUS_BUFFER_TOO_SHORT, NDISSHM_STATUS_TIMEOUT,
                          NDISSHM_STATUS_HOST_BYE, NDISSHM_STATUS_HOST_GONE, NDISSHM_STATUS_REFUSED,
                          NDISSHM_STATUS_PROTOCOL}) {
        SCOPED_TRACE(ndisshm_status_name(s));
        EXPECT_EQ(std::string(ndisshm_status_name(s)).find("0x"), std::string::npos) << "a known code has a name";
        EXPECT_STRNE(ndisshm_status_text(s), "unknown status");
    }
    EXPECT_STREQ(ndisshm_status_name(NDISSHM_STATUS_HOST_GONE), "NDISSHM_STATUS_HOST_GONE");
    EXPECT_STREQ(ndisshm_status_text(NDIS_STATUS_RESOURCES), "out of memory or over a limit");
    EXPECT_STREQ(ndisshm_status_name(static_cast<NDIS_STATUS>(0xC0FFEE01u)), "NDIS_STATUS_0xC0FFEE01");
    EXPECT_STREQ(ndisshm_status_text(static_cast<NDIS_STATUS>(0xC0FFEE01u)), "unknown status");
}

TEST(Status, NdisshmCodesAreCustomerCodesThatSortAsTheSessionGoesOn) {
    for (NDIS_STATUS s : {NDISSHM_STATUS_TIMEOUT, NDISSHM_STATUS_HOST_BYE, NDISSHM_STATUS_HOST_GONE,
                          NDISSHM_STATUS_REFUSED, NDISSHM_STATUS_PROTOCOL})
        EXPECT_NE(static_cast<uint32_t>(s) & 0x20000000u, 0u) << "NTSTATUS customer bit: " << ndisshm_status_name(s);
    // `s >= 0` (NT_SUCCESS) is "the session goes on": only SUCCESS and TIMEOUT.
    EXPECT_GE(NDISSHM_STATUS_TIMEOUT, 0);
    EXPECT_LT(NDISSHM_STATUS_HOST_BYE, 0);
    EXPECT_LT(NDISSHM_STATUS_HOST_GONE, 0);
    EXPECT_LT(NDISSHM_STATUS_REFUSED, 0);
    EXPECT_LT(NDISSHM_STATUS_PROTOCOL, 0);
}

TEST(Status, TheErrorBufferHoldsTheReasonCutToFitAndIsEmptiedOnSuccess) {
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = "status";
    ndisshm_guest* g = nullptr;
    char tiny[8];
    std::memset(tiny, 'x', sizeof(tiny));
    ASSERT_EQ(ndisshm_guest_create(&c, &g, tiny, sizeof(tiny)), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(std::strlen(tiny), sizeof(tiny) - 1) << "cut to fit, NUL-terminated";

    char error[256];
    std::memset(error, 'x', sizeof(error));
    c.memory_bytes = 1 << 20;
    ASSERT_EQ(ndisshm_guest_create(&c, &g, error, sizeof(error)), NDIS_STATUS_SUCCESS) << error;
    EXPECT_STREQ(error, "") << "no stale reason after a success";
    std::memset(error, 'x', sizeof(error));
    EXPECT_EQ(ndisshm_guest_poll(g, 0, error, sizeof(error)), NDIS_STATUS_FAILURE) << "no session yet";
    EXPECT_NE(std::string(error).find("no session"), std::string::npos) << error;
    EXPECT_EQ(ndisshm_guest_connect(g, "/nonexistent-ndisshm/host.sock", 100, nullptr, 0), NDIS_STATUS_FAILURE)
        << "the buffer is optional";
    ndisshm_guest_destroy(g);
}

TEST(Status, ConfigsOfAnotherSizeAreRefusedWithTheReason) {
    ndisshm_guest_config gc;
    ndisshm_guest_config_init(&gc);
    EXPECT_EQ(gc.struct_size, sizeof(gc));
    gc.name = "size";
    gc.memory_bytes = 4096;
    gc.struct_size = sizeof(gc) - 8;
    ndisshm_guest* g = nullptr;
    char error[256] = {};
    EXPECT_EQ(ndisshm_guest_create(&gc, &g, error, sizeof(error)), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_NE(std::string(error).find("struct_size"), std::string::npos) << error;

    ndisshm_runtime_config rc;
    ndisshm_runtime_config_init(&rc);
    rc.struct_size = 4;
    ndisshm_runtime* rt = reinterpret_cast<ndisshm_runtime*>(1);
    EXPECT_EQ(ndisshm_runtime_create(&rc, &rt, error, sizeof(error)), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(rt, nullptr);
    EXPECT_NE(std::string(error).find("struct_size is 4"), std::string::npos) << error;

    ndisshm_queue_params qp;
    ndisshm_queue_params_init(&qp);
    EXPECT_EQ(qp.struct_size, sizeof(qp));
    EXPECT_EQ(qp.flags, 0u);
    ndisshm_provider_ops ops;
    ndisshm_provider_ops_init(&ops);
    EXPECT_EQ(ops.struct_size, sizeof(ops));
    EXPECT_EQ(ops.allocate, nullptr);
}

TEST(Status, TheLibraryIsTheAbiItsHeadersSay) {
    EXPECT_EQ(ndisshm_abi_version(), NDISSHM_ABI_VERSION);
    EXPECT_EQ(NDISSHM_ABI_VERSION, 2);
}

}  // namespace
}  // namespace ndisshm::test
