// A provider detached (its binding destroyed) with blocks outstanding frees them through the provider;
// the next adapter served by that provider gets them zeroed, through the C API as a driver sees it.
#include <gtest/gtest.h>
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <vector>

#include "common/memory_support.hpp"
#include "nic/provider_ops.hpp"
#include "providers/default_provider.hpp"

namespace ndisshm::test {
using namespace ndisshm::providers;  // the layer under test
namespace {

// A provider detached (its binding destroyed) with blocks outstanding frees them through the provider;
// the next adapter served by that provider gets them zeroed. The provider here is a DefaultProvider
// registered through the NDIS ops table, which carries no adapter: such requests have owner 0, and
// every reuse is cleared.
TEST(DefaultProviderOwners, BlocksReclaimedWhenABindingDetachesReachTheNextAdapterZeroed) {
    DefaultProviderConfig pc;
    pc.arena.name = "ndisshm-binding-test";
    pc.arena.capacity_bytes = uint64_t{64} << 20;
    pc.page_mode = PageMode::Base;
    auto provider = DefaultProvider::create(pc);
    ASSERT_TRUE(provider) << provider.error().message();
    const ndisshm_provider_ops ops = nic::provider_ops(**provider);

    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 0;
    ndisshm_runtime* rt = nullptr;
    ASSERT_EQ(ndisshm_runtime_create(&c, &rt, nullptr, 0), NDIS_STATUS_SUCCESS);
    NDIS_HANDLE a = nullptr, b = nullptr, binding_a = nullptr, binding_b = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "a", &a), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_adapter_create(rt, "b", &b), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_create(a, "vswitch-a", &binding_a), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_register_provider(binding_a, &ops), NDIS_STATUS_SUCCESS);
    constexpr NDIS_RECEIVE_QUEUE_ID kQueue = 1;  // a binding's provider serves the queues the binding owns
    ASSERT_EQ(ndisshm_queue_create(binding_a, kQueue), NDIS_STATUS_SUCCESS);

    constexpr ULONG kLength = 4 * PAGE_SIZE;
    auto allocate = [&](NDIS_HANDLE adapter, NDIS_HANDLE* handle) -> unsigned char* {
        std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(4));
        NDIS_SHARED_MEMORY_PARAMETERS p;
        NdisZeroMemory(&p, sizeof(p));
        p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.PreferredNode = MM_ANY_NODE_OK;
        p.Usage = NdisSharedMemoryUsageReceive;
        p.QueueId = kQueue;
        p.Length = kLength;
        p.SGListBufferLength = static_cast<ULONG>(sg.size());
        p.SGListBuffer = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
        EXPECT_EQ(NdisAllocateSharedMemory(adapter, &p, handle), NDIS_STATUS_SUCCESS);
        return static_cast<unsigned char*>(p.VirtualAddress);
    };
    std::vector<unsigned char*> old;
    for (int i = 0; i < 6; ++i) {
        NDIS_HANDLE h = nullptr;
        unsigned char* va = allocate(a, &h);
        ASSERT_NE(va, nullptr);
        ndisshm::test::fill_pattern(va, kLength, static_cast<uint64_t>(i) + 1);
        old.push_back(va);
    }
    ndisshm_binding_destroy(binding_a);  // with six blocks outstanding: reclaimed through the provider
    EXPECT_EQ(ndisshm_runtime_violation_count(rt, NDISSHM_VIOLATION_BINDING_DETACHED_WITH_BLOCKS), 6u);
    ASSERT_EQ(ndisshm_binding_create(b, "vswitch-b", &binding_b), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_register_provider(binding_b, &ops), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(binding_b, kQueue), NDIS_STATUS_SUCCESS);
    int reused = 0;
    for (int i = 0; i < 6; ++i) {
        NDIS_HANDLE h = nullptr;
        unsigned char* va = allocate(b, &h);
        ASSERT_NE(va, nullptr);
        EXPECT_EQ(ndisshm::test::first_nonzero(va, kLength), kLength) << "block " << i;
        reused += std::find(old.begin(), old.end(), va) != old.end();
        NdisFreeSharedMemory(b, h);
    }
    EXPECT_GT(reused, 0) << "no block was handed over: the test proves nothing";
    EXPECT_EQ((*provider)->memory_stats().owner_reuses, 0u);
    ndisshm_runtime_destroy(rt);
}

}  // namespace
}  // namespace ndisshm::test
