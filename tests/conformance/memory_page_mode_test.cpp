// Page modes through the host API: BASE uses 4 KiB pages with transparent huge pages advised; HUGE uses
// 2 MiB hugetlb pages or refuses to create the runtime; AUTO takes huge pages when some are free. The
// mode in use shows in ndisshm_runtime_get_memory_stats. Huge pages are reserved per test through
// /proc/sys/vm/nr_hugepages (root; CI runs as root); a test that cannot have them skips and says why.
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "conformance/fixture.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {

namespace {

constexpr uint64_t kHuge = 2u << 20;

ndisshm_runtime* make_runtime(uint32_t page_mode, NDIS_STATUS* status = nullptr) {
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 0;
    c.page_mode = page_mode;
    c.arena_capacity_bytes = uint64_t{1} << 30;
    ndisshm_runtime* rt = nullptr;
    const NDIS_STATUS s = ndisshm_runtime_create(&c, &rt, nullptr, 0);
    if (status != nullptr) *status = s;
    return rt;
}

ndisshm_memory_stats memory(ndisshm_runtime* rt) {
    ndisshm_memory_stats m{};
    EXPECT_EQ(ndisshm_runtime_get_memory_stats(rt, &m), NDIS_STATUS_SUCCESS);
    return m;
}

// One CONTIGUOUS allocation on a fresh adapter's default queue.
struct Block {
    NDIS_HANDLE adapter = nullptr;
    Alloc alloc{1, 1, 0, NdisSharedMemoryUsageReceive, 0};
};

TEST(MemoryPageMode, BaseUsesFourKibibytePagesWithTransparentHugePagesAdvised) {
    ndisshm_runtime* rt = make_runtime(NDISSHM_PAGES_BASE);
    ASSERT_NE(rt, nullptr);
    const ndisshm_memory_stats m = memory(rt);
    EXPECT_EQ(m.page_mode, static_cast<uint32_t>(NDISSHM_PAGES_BASE));
    EXPECT_EQ(m.page_bytes, 4096u);
    if (::access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0) {
        EXPECT_EQ(m.thp_advised, 1u) << "this kernel has THP: MADV_HUGEPAGE is accepted";
    }
    EXPECT_GE(m.arenas, 1u);
    ndisshm_runtime_destroy(rt);
}

TEST(MemoryPageMode, HugeWithoutFreeHugePagesRefusesTheRuntime) {
    HugePageReservation none(0, /*empty_pool=*/true);
    if (!none.ok()) GTEST_SKIP() << none.why();
    NDIS_STATUS s = NDIS_STATUS_SUCCESS;
    ndisshm_runtime* rt = make_runtime(NDISSHM_PAGES_HUGE, &s);
    EXPECT_EQ(rt, nullptr);
    EXPECT_EQ(s, NDIS_STATUS_RESOURCES) << ndisshm_status_name(s);
    // AUTO on the same machine works, with 4 KiB pages.
    ndisshm_runtime* autort = make_runtime(NDISSHM_PAGES_AUTO, &s);
    ASSERT_NE(autort, nullptr) << ndisshm_status_name(s);
    EXPECT_EQ(memory(autort).page_mode, static_cast<uint32_t>(NDISSHM_PAGES_BASE));
    ndisshm_runtime_destroy(autort);
}

TEST(MemoryPageMode, HugeServesBlocksFromTwoMebibytePages) {
    HugePageReservation pool(8);
    if (!pool.ok()) GTEST_SKIP() << pool.why();
    ndisshm_runtime* rt = make_runtime(NDISSHM_PAGES_HUGE);
    ASSERT_NE(rt, nullptr);
    NDIS_HANDLE adapter = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "huge0", &adapter), NDIS_STATUS_SUCCESS);
    ndisshm_memory_stats m = memory(rt);
    EXPECT_EQ(m.page_mode, static_cast<uint32_t>(NDISSHM_PAGES_HUGE));
    EXPECT_EQ(m.page_bytes, kHuge);
    EXPECT_EQ(m.file_bytes % kHuge, 0u) << "huge pages are committed whole";
    std::vector<Alloc> blocks;
    // Small, odd and huge-page-sized CONTIGUOUS blocks: each is one SG element inside one huge page.
    for (ULONG length : {4096u, 10000u, 65536u, 1u << 20, 3000u, (2u << 20) - 4096, 2u << 20}) {
        blocks.emplace_back(length, 1, 0, NdisSharedMemoryUsageReceive, NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS);
        Alloc& a = blocks.back();
        a.status = NdisAllocateSharedMemory(adapter, &a.params, &a.handle);
        ASSERT_EQ(a.status, NDIS_STATUS_SUCCESS) << length;
        ASSERT_EQ(a.params.SGListBuffer->NumberOfElements, 1u);
        const uint64_t va = reinterpret_cast<uint64_t>(a.params.VirtualAddress);
        EXPECT_EQ(va / kHuge, (va + length - 1) / kHuge) << length << " bytes at " << std::hex << va
                                                         << " cross a 2 MiB page";
        EXPECT_EQ(first_nonzero(a.params.VirtualAddress, length), length);
        std::memset(a.params.VirtualAddress, 0x77, length);
        EXPECT_EQ(kernel_page_kib(a.params.VirtualAddress), 2048);
    }
    m = memory(rt);
    EXPECT_EQ(m.blocks_in_use, blocks.size());
    EXPECT_EQ(m.zeroed_by_release_bytes, 0u);
    for (Alloc& a : blocks) NdisFreeSharedMemory(adapter, a.handle);
    // Reused huge page memory arrives zeroed too.
    Alloc again(1u << 20, 1, 0, NdisSharedMemoryUsageReceive, 0);
    ASSERT_EQ(NdisAllocateSharedMemory(adapter, &again.params, &again.handle), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(first_nonzero(again.params.VirtualAddress, 1u << 20), 1u << 20);
    NdisFreeSharedMemory(adapter, again.handle);
    EXPECT_GT(memory(rt).zeroed_by_memset_bytes, 0u);
    ndisshm_adapter_destroy(adapter);
    ndisshm_runtime_destroy(rt);
}

TEST(MemoryPageMode, AutoTakesHugePagesWhenSomeAreFree) {
    HugePageReservation pool(4);
    if (!pool.ok()) GTEST_SKIP() << pool.why();
    ndisshm_runtime* rt = make_runtime(NDISSHM_PAGES_AUTO);
    ASSERT_NE(rt, nullptr);
    const ndisshm_memory_stats m = memory(rt);
    EXPECT_EQ(m.page_mode, static_cast<uint32_t>(NDISSHM_PAGES_HUGE));
    EXPECT_EQ(m.page_bytes, kHuge);
    EXPECT_EQ(m.thp_advised, 0u) << "no THP advice on hugetlb arenas";
    ndisshm_runtime_destroy(rt);
}

}  // namespace

}  // namespace ndisshm::test
