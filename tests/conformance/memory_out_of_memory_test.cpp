// Running out of memory is NDIS_STATUS_RESOURCES with the reason in the verifier log (stderr when
// enabled), never a crash and never a violation: an arena that is full, and the OS refusing memory (the
// huge page pool running dry). Memory freed afterwards is usable again.
#include <gtest/gtest.h>

#include <vector>

#include "conformance/fixture.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {

namespace {

class MemoryOutOfMemory : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override {
        c.report_to_stderr = 1;  // the log line is what the test reads
        c.page_mode = NDISSHM_PAGES_BASE;
        c.arena_capacity_bytes = 1 << 20;
        c.max_block_bytes = 1 << 20;
    }
};

TEST_F(MemoryOutOfMemory, AFullArenaIsResourcesWithTheReasonLogged) {
    Alloc all = allocate(adapter_, 1 << 20);
    ASSERT_TRUE(all.ok());
    ::testing::internal::CaptureStderr();
    Alloc more = allocate(adapter_, 4096);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(more.status, NDIS_STATUS_RESOURCES);
    EXPECT_EQ(more.handle, nullptr);
    EXPECT_NE(err.find("NDIS_STATUS_RESOURCES"), std::string::npos) << err;
    EXPECT_NE(err.find("no free range"), std::string::npos) << err;
    EXPECT_TRUE(log_.all().empty()) << "running out is not misuse";
    NdisFreeSharedMemory(adapter_, all.handle);
    // Small blocks fill it again exactly, cached or not.
    std::vector<NDIS_HANDLE> small;
    for (int i = 0; i < 256; ++i) {
        Alloc a = allocate(adapter_, 4096);
        ASSERT_TRUE(a.ok()) << i;
        small.push_back(a.handle);
    }
    EXPECT_EQ(allocate(adapter_, 4096).status, NDIS_STATUS_RESOURCES);
    for (NDIS_HANDLE h : small) NdisFreeSharedMemory(adapter_, h);
    // And the cached small blocks are taken back for one large block.
    Alloc big = allocate(adapter_, 1 << 20);
    EXPECT_TRUE(big.ok());
    NdisFreeSharedMemory(adapter_, big.handle);
}

TEST(MemoryOutOfMemoryHuge, TheHugePagePoolRunningDryIsResourcesWithTheErrnoText) {
    HugePageReservation pool(2);
    if (!pool.ok()) GTEST_SKIP() << pool.why();
    const long free_pages = HugePageReservation::free_pages();
    if (free_pages > 100) GTEST_SKIP() << "the pool has " << free_pages << " free huge pages: too many to exhaust here";
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 1;
    c.page_mode = NDISSHM_PAGES_HUGE;
    c.arena_capacity_bytes = uint64_t{1} << 30;
    ndisshm_runtime* rt = nullptr;
    ASSERT_EQ(ndisshm_runtime_create(&c, &rt, nullptr, 0), NDIS_STATUS_SUCCESS);
    NDIS_HANDLE adapter = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "dry", &adapter), NDIS_STATUS_SUCCESS);
    std::vector<NDIS_HANDLE> held;
    NDIS_STATUS s = NDIS_STATUS_SUCCESS;
    std::string err;
    for (long i = 0; i < free_pages + 8 && s == NDIS_STATUS_SUCCESS; ++i) {
        Alloc a(2u << 20, 1, 0, NdisSharedMemoryUsageReceive, 0);
        ::testing::internal::CaptureStderr();
        s = a.status = NdisAllocateSharedMemory(adapter, &a.params, &a.handle);
        err = ::testing::internal::GetCapturedStderr();
        if (s == NDIS_STATUS_SUCCESS) held.push_back(a.handle);
    }
    EXPECT_EQ(s, NDIS_STATUS_RESOURCES) << ndisshm_status_name(s);
    EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
    EXPECT_NE(err.find("fallocate"), std::string::npos) << err;
    ASSERT_FALSE(held.empty());
    NdisFreeSharedMemory(adapter, held.back());
    held.pop_back();
    Alloc again(2u << 20, 1, 0, NdisSharedMemoryUsageReceive, 0);
    EXPECT_EQ(NdisAllocateSharedMemory(adapter, &again.params, &again.handle), NDIS_STATUS_SUCCESS)
        << "committed huge pages are reused";
    held.push_back(again.handle);
    for (NDIS_HANDLE h : held) NdisFreeSharedMemory(adapter, h);
    ndisshm_adapter_destroy(adapter);
    ndisshm_runtime_destroy(rt);
}

}  // namespace

}  // namespace ndisshm::test
