// support/pool_provider: the tree's one pool provider, called directly as
// NDIS calls a provider, and registered on a real runtime through
// NdisSetOptionalHandlers and through the host's ops table.
#include "pool_provider.hpp"

#include <gtest/gtest.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "driver_request.hpp"

namespace ndisshm::test {
namespace {

using support::DriverRequest;
using support::PoolProvider;

constexpr size_t kSlotBytes = 3 * PAGE_SIZE;

// One provider call as NDIS makes it: a fresh request for `length` bytes on `queue`.
NDIS_STATUS call_allocate(PoolProvider& pool, DriverRequest& r, NDIS_RECEIVE_QUEUE_ID queue, ULONG length,
                          NDIS_HANDLE& context) {
    r.shape().QueueId = queue;
    r.shape().Length = length;
    return pool.allocate(*r.fresh(), context);
}

TEST(PoolProvider, HandsOutZeroedPageAlignedSlotsThatNeverOverlap) {
    PoolProvider pool("pool", 4, 2 * PAGE_SIZE + 1);  // rounded up to three pages
    EXPECT_EQ(pool.slot_bytes(), kSlotBytes);
    DriverRequest r(kSlotBytes);
    std::set<uintptr_t> starts;
    std::vector<NDIS_HANDLE> contexts;
    for (int i = 0; i < 4; ++i) {
        NDIS_HANDLE context = nullptr;
        ASSERT_EQ(call_allocate(pool, r, 1, static_cast<ULONG>(kSlotBytes), context), NDIS_STATUS_SUCCESS);
        ASSERT_NE(context, nullptr);
        const auto& p = r.last();
        const auto va = reinterpret_cast<uintptr_t>(p.VirtualAddress);
        EXPECT_EQ(va % PAGE_SIZE, 0u);
        ASSERT_EQ(p.SGListBuffer->NumberOfElements, 1u);
        EXPECT_EQ(static_cast<uintptr_t>(p.SGListBuffer->Elements[0].Address.QuadPart), va);
        EXPECT_EQ(p.SGListBuffer->Elements[0].Length, kSlotBytes);
        const auto* bytes = static_cast<const unsigned char*>(p.VirtualAddress);
        EXPECT_TRUE(std::all_of(bytes, bytes + kSlotBytes, [](unsigned char c) { return c == 0; }));
        for (uintptr_t s : starts) EXPECT_TRUE(va + kSlotBytes <= s || s + kSlotBytes <= va);
        starts.insert(va);
        std::memset(p.VirtualAddress, 0xA5, kSlotBytes);  // the next user of this slot must not see it
        contexts.push_back(context);
    }
    pool.free(contexts[2]);
    NDIS_HANDLE again = nullptr;
    ASSERT_EQ(call_allocate(pool, r, 2, 100, again), NDIS_STATUS_SUCCESS);
    const auto* bytes = static_cast<const unsigned char*>(r.last().VirtualAddress);
    EXPECT_TRUE(std::all_of(bytes, bytes + kSlotBytes, [](unsigned char c) { return c == 0; }))
        << "a reused slot still holds its last user's bytes";
}

TEST(PoolProvider, RefusesWithResourcesWhenEmptyOrTheBlockIsLargerThanASlot) {
    PoolProvider pool("pool", 1, kSlotBytes);
    DriverRequest r(2 * kSlotBytes);
    NDIS_HANDLE context = nullptr;
    EXPECT_EQ(call_allocate(pool, r, 3, static_cast<ULONG>(kSlotBytes + 1), context), NDIS_STATUS_RESOURCES);
    ASSERT_EQ(call_allocate(pool, r, 3, PAGE_SIZE, context), NDIS_STATUS_SUCCESS);
    NDIS_HANDLE none = nullptr;
    EXPECT_EQ(call_allocate(pool, r, 3, PAGE_SIZE, none), NDIS_STATUS_RESOURCES);
    EXPECT_EQ(none, nullptr);
    const auto q = pool.queues().at(3);
    EXPECT_EQ(q.allocations, 1u);
    EXPECT_EQ(q.refusals, 2u);
    EXPECT_EQ(q.live, 1u);
    pool.free(context);
    EXPECT_EQ(pool.live(), 0u);
}

TEST(PoolProvider, AsksForOneElementWhenTheSgBufferHoldsNone) {
    PoolProvider pool("pool", 1, kSlotBytes);
    DriverRequest r(PAGE_SIZE);
    NDIS_SHARED_MEMORY_PARAMETERS& p = *r.fresh();
    p.SGListBufferLength = NDISSHM_SG_LIST_HEADER_BYTES;
    NDIS_HANDLE context = nullptr;
    EXPECT_EQ(pool.allocate(p, context), NDIS_STATUS_BUFFER_TOO_SHORT);
    EXPECT_EQ(p.SGListBuffer->NumberOfElements, 1u);
    EXPECT_EQ(pool.live(), 0u);
    EXPECT_TRUE(pool.queues().empty()) << "a call to be made again is no refusal";
}

TEST(PoolProvider, CountsAFreeOfAContextItNeverGaveOrTookBackAlready) {
    PoolProvider pool("pool", 2, kSlotBytes);
    DriverRequest r(PAGE_SIZE);
    NDIS_HANDLE context = nullptr;
    ASSERT_EQ(call_allocate(pool, r, 1, PAGE_SIZE, context), NDIS_STATUS_SUCCESS);
    int foreign = 0;
    pool.free(&foreign);
    pool.free(static_cast<char*>(context) + 1);  // inside the pool's books, not a slot's start
    EXPECT_EQ(pool.bad_frees(), 2u);
    EXPECT_EQ(pool.live(), 1u) << "a bad free took a slot back";
    pool.free(context);
    pool.free(context);
    EXPECT_EQ(pool.bad_frees(), 3u);
    EXPECT_EQ(pool.live(), 0u);
    EXPECT_EQ(pool.queues().at(1).frees, 1u);
    EXPECT_NE(pool.describe().find("3 BAD FREES"), std::string::npos) << pool.describe();
}

// Through a real runtime, as a filter registers it: every block NDIS asks for on the binding's queues
// comes from the pool, and NDIS gives every context back exactly once: half by the driver's frees, the
// rest when the binding goes with them still out (a violation, freed through the provider).
TEST(PoolProvider, FreesEveryBlockItGaveExactlyOnce) {
    PoolProvider pool("vswitch", 8, kSlotBytes);
    {
        ndisshm::RuntimeOptions o;
        o.report_to_stderr = false;
        ndisshm::Runtime rt(o);
        ndisshm::Adapter nic(rt, "nic0");
        ndisshm::ProviderBinding binding(nic, "vswitch");
        ASSERT_EQ(support::register_through_ndis(binding, pool), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_queue_create(binding.handle(), 1), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_queue_create(binding.handle(), 2), NDIS_STATUS_SUCCESS);
        DriverRequest r(kSlotBytes);
        std::vector<NDIS_HANDLE> blocks;
        for (int i = 0; i < 8; ++i) {
            r.shape().QueueId = 1 + i % 2;
            NDIS_HANDLE h = nullptr;
            ASSERT_EQ(NdisAllocateSharedMemory(nic.handle(), r.fresh(), &h), NDIS_STATUS_SUCCESS);
            blocks.push_back(h);
        }
        NDIS_HANDLE over = nullptr;
        EXPECT_EQ(NdisAllocateSharedMemory(nic.handle(), r.fresh(), &over), NDIS_STATUS_RESOURCES);
        EXPECT_EQ(pool.live(), 8u);
        for (size_t i = 0; i < 4; ++i) NdisFreeSharedMemory(nic.handle(), blocks[i]);
        EXPECT_EQ(pool.live(), 4u);
        // The other four go with the binding.
    }
    EXPECT_EQ(pool.live(), 0u);
    EXPECT_EQ(pool.bad_frees(), 0u);
    const auto queues = pool.queues();
    ASSERT_EQ(queues.size(), 2u);
    for (const auto& [id, q] : queues) {
        SCOPED_TRACE(id);
        EXPECT_EQ(q.allocations, 4u);
        EXPECT_EQ(q.frees, 4u);
        EXPECT_EQ(q.live, 0u);
    }
    EXPECT_EQ(queues.at(1).refusals + queues.at(2).refusals, 1u);
}

}  // namespace
}  // namespace ndisshm::test
