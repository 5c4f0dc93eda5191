// NdisAllocateSharedMemory (spec section 3): what a successful call sets, that the provider is called
// synchronously in the caller's context, that provider failures come back unchanged, and what the
// default (host memory) provider gives: zeroed, disjoint blocks with IOVA-as-VA SG addresses.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

using Allocate = NdisTest;

TEST_F(Allocate, SuccessSetsSharedMemoryHandleVirtualAddressSgListAndAllocationHandle) {
    Alloc a(3 * PAGE_SIZE + 10, 4, 0, NdisSharedMemoryUsageReceive, 0);
    a.params.SharedMemoryHandle = reinterpret_cast<NDIS_HANDLE>(0xDEAD);
    a.params.VirtualAddress = reinterpret_cast<PVOID>(0xBEEF);
    a.handle = reinterpret_cast<NDIS_HANDLE>(0x1);
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &a.params, &a.handle), NDIS_STATUS_SUCCESS);

    // NDIS's own memory (no provider): SharedMemoryHandle is set, to NULL (spec section 7).
    EXPECT_EQ(a.params.SharedMemoryHandle, nullptr);
    EXPECT_NE(a.handle, nullptr);
    EXPECT_NE(a.handle, reinterpret_cast<NDIS_HANDLE>(0x1));
    ASSERT_NE(a.params.VirtualAddress, nullptr);
    ASSERT_NE(a.params.VirtualAddress, reinterpret_cast<PVOID>(0xBEEF));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.params.VirtualAddress) % PAGE_SIZE, 0u);
    ASSERT_EQ(a.sg.list()->NumberOfElements, 1u);
    EXPECT_EQ(a.element(0).Length, 3u * PAGE_SIZE + 10);
    std::memset(a.params.VirtualAddress, 0x77, a.params.Length);  // the whole block is ours to write

    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, a.handle, &info), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(info.adapter, adapter_);
    EXPECT_EQ(info.queue_id, 0u);
    EXPECT_EQ(info.usage, NdisSharedMemoryUsageReceive);
    EXPECT_EQ(info.length, 3u * PAGE_SIZE + 10);
    EXPECT_EQ(info.virtual_address, a.params.VirtualAddress);
    EXPECT_STREQ(info.provider, "default");
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_FALSE(is_live(adapter_, a.handle));
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Allocate, AllocateCallsProviderSynchronouslyInCallersContext) {
    TestProvider& provider = provide(adapter_);
    Alloc a = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok());
    // By the time the call returns the provider has run, once, on this thread, at PASSIVE_LEVEL, with
    // its own ProviderContext, and what it wrote is what the caller sees.
    const auto calls = provider.alloc_calls();
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].thread, std::this_thread::get_id());
    EXPECT_EQ(calls[0].irql, PASSIVE_LEVEL);
    EXPECT_EQ(calls[0].provider_context, &provider);
    EXPECT_EQ(calls[0].params.Length, PAGE_SIZE);
    EXPECT_NE(calls[0].context, nullptr);
    EXPECT_EQ(provider.live(), 1u);
    EXPECT_EQ(static_cast<uintptr_t>(a.element(0).Address.QuadPart),
              reinterpret_cast<uintptr_t>(a.params.VirtualAddress));
    EXPECT_EQ(provider_of(adapter_, a.handle), "miniport");
    NdisFreeSharedMemory(adapter_, a.handle);
}

TEST_F(Allocate, ProviderStatusComesBackUnchanged) {
    TestProvider& provider = provide(adapter_);
    uint64_t failures = 0;
    for (NDIS_STATUS s : {NDIS_STATUS_RESOURCES, NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_FAILURE}) {
        SCOPED_TRACE(ndisshm_status_name(s));
        provider.fail_with = s;
        Alloc a = allocate(adapter_, PAGE_SIZE);
        EXPECT_EQ(a.status, s);
        const auto st = stats(adapter_);
        EXPECT_EQ(st.total.blocks, 0u);
        EXPECT_EQ(st.total.allocations, 0u);
        EXPECT_EQ(st.total.failures, ++failures);
    }
    EXPECT_EQ(provider.alloc_calls().size(), 3u);
    EXPECT_TRUE(provider.free_calls().empty());
    provider.fail_with = NDIS_STATUS_SUCCESS;
    EXPECT_TRUE(allocate(adapter_, PAGE_SIZE).ok()) << "a failed call leaves the provider registered";
}

// The allocation is synchronous: a provider that answers PENDING misbehaves, and the caller must not be
// told anything that reads as "not failed" (NT_SUCCESS(NDIS_STATUS_PENDING) is true).
// ndis.sys takes any success-class status (NT_SUCCESS) of the provider as success (spec section 7): the
// block is the caller's and goes back through the provider's free exactly once; the verifier says so.
TEST_F(Allocate, PendingFromProviderIsSuccess) {
    TestProvider& provider = provide(adapter_);
    provider.succeed_with = NDIS_STATUS_PENDING;
    Alloc a = allocate(adapter_, PAGE_SIZE);
    ASSERT_EQ(a.status, NDIS_STATUS_SUCCESS) << ndisshm_status_name(a.status);
    EXPECT_NE(a.params.VirtualAddress, nullptr);
    EXPECT_EQ(stats(adapter_).total.blocks, 1u);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_LENIENT, "NdisAllocateSharedMemory");
    EXPECT_THAT(v.message, testing::HasSubstr("NDIS_STATUS_PENDING"));
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(provider.times_freed(provider.context_of(0)), 1) << "no leak: the block went back once";
    EXPECT_EQ(provider.live(), 0u);
}

// A success-class status with no block behind it (no context) is still a provider's bug: FAILURE.
TEST_F(Allocate, PendingWithoutABlockIsAFailure) {
    TestProvider& provider = provide(adapter_);
    provider.fail_with = NDIS_STATUS_PENDING;
    Alloc a = allocate(adapter_, PAGE_SIZE);
    EXPECT_EQ(a.status, NDIS_STATUS_FAILURE) << ndisshm_status_name(a.status);
    EXPECT_EQ(stats(adapter_).total.blocks, 0u);
}

// The second block goes to another adapter (a block may come back to the adapter that freed it as it
// was: memory_owner_test.cpp).
TEST_F(Allocate, BlockIsZeroedBeforeHandOut) {
    const NDIS_HANDLE other = new_adapter("eth1");
    for (ULONG length : {PAGE_SIZE, 5 * PAGE_SIZE + 123}) {
        SCOPED_TRACE(testing::Message() << "Length " << length);
        Alloc first = allocate(adapter_, length);
        ASSERT_TRUE(first.ok());
        const size_t rounded = (length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        std::memset(first.bytes(), 0xEE, rounded);
        NdisFreeSharedMemory(adapter_, first.handle);

        Alloc again = allocate(other, length);
        ASSERT_TRUE(again.ok());
        // Reused memory is preferred, so the new block lies (at least partly) on the dirtied pages.
        const auto f0 = reinterpret_cast<uintptr_t>(first.bytes()),
                   a0 = reinterpret_cast<uintptr_t>(again.bytes());
        EXPECT_TRUE(a0 < f0 + rounded && f0 < a0 + rounded) << "no reuse: the test proves nothing";
        for (size_t i = 0; i < rounded; ++i) ASSERT_EQ(again.bytes()[i], 0) << "byte " << i;
        NdisFreeSharedMemory(other, again.handle);
    }
}

TEST_F(Allocate, OutstandingBlocksNeverOverlap) {
    std::vector<Alloc> blocks;
    const ULONG lengths[] = {1, PAGE_SIZE, 3 * PAGE_SIZE, 100, 7 * PAGE_SIZE + 1, 2 * PAGE_SIZE};
    for (size_t i = 0; i < std::size(lengths); ++i) {
        blocks.push_back(allocate(adapter_, lengths[i]));
        ASSERT_TRUE(blocks.back().ok());
        std::memset(blocks.back().bytes(), static_cast<int>(i + 1), lengths[i]);
    }
    for (size_t i = 0; i < blocks.size(); ++i) {
        for (ULONG b = 0; b < lengths[i]; ++b) ASSERT_EQ(blocks[i].bytes()[b], i + 1) << "block " << i;
        for (size_t j = i + 1; j < blocks.size(); ++j) {
            const auto a0 = reinterpret_cast<uintptr_t>(blocks[i].bytes()),
                       b0 = reinterpret_cast<uintptr_t>(blocks[j].bytes());
            EXPECT_TRUE(a0 + lengths[i] <= b0 || b0 + lengths[j] <= a0) << i << " overlaps " << j;
        }
        EXPECT_NE(blocks[i].handle, nullptr);
    }
    for (auto& b : blocks) NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Allocate, DefaultProviderSgAddressIsIovaAsVa) {
    Alloc a = allocate(adapter_, PAGE_SIZE);
    Alloc b = allocate(adapter_, 2 * PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(static_cast<uintptr_t>(a.element(0).Address.QuadPart),
              reinterpret_cast<uintptr_t>(a.params.VirtualAddress));
    EXPECT_EQ(static_cast<uintptr_t>(b.element(0).Address.QuadPart),
              reinterpret_cast<uintptr_t>(b.params.VirtualAddress));
}

class AllocateWithIovaBase : public NdisTest {
protected:
    static constexpr uint64_t kIovaBase = uint64_t{0x40} << 32;
    static constexpr uint64_t kArena = uint64_t{64} << 20;
    void configure(ndisshm_runtime_config& c) override {
        c.iova_base = kIovaBase;
        c.arena_capacity_bytes = kArena;
        c.max_block_bytes = 1u << 20;
        // One arena, so one IOVA window: a huge page pool another test reserves
        // meanwhile must not make Auto split these blocks across two.
        c.page_mode = NDISSHM_PAGES_BASE;
    }
};

TEST_F(AllocateWithIovaBase, DefaultProviderSgAddressIsIovaBasePlusArenaOffset) {
    std::vector<Alloc> blocks;
    for (ULONG length : {ULONG{PAGE_SIZE}, ULONG{3 * PAGE_SIZE}, 10u}) {
        blocks.push_back(allocate(adapter_, length));
        ASSERT_TRUE(blocks.back().ok());
    }
    // Address = iova_base + offset, VA = arena base + offset: one arena base for all blocks, page aligned,
    // and every offset inside the arena.
    const uintptr_t arena_base = reinterpret_cast<uintptr_t>(blocks[0].params.VirtualAddress) -
                                 static_cast<uintptr_t>(blocks[0].element(0).Address.QuadPart - kIovaBase);
    EXPECT_EQ(arena_base % PAGE_SIZE, 0u);
    for (auto& b : blocks) {
        const uint64_t iova = static_cast<uint64_t>(b.element(0).Address.QuadPart);
        ASSERT_GE(iova, kIovaBase);
        const uint64_t offset = iova - kIovaBase;
        EXPECT_LT(offset, kArena);
        EXPECT_EQ(offset % PAGE_SIZE, 0u);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(b.params.VirtualAddress), arena_base + offset);
        EXPECT_NE(static_cast<uintptr_t>(iova), reinterpret_cast<uintptr_t>(b.params.VirtualAddress));
    }
}

class AllocateFromASmallArena : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override {
        c.arena_capacity_bytes = 64 * PAGE_SIZE;
        c.max_block_bytes = 64 * PAGE_SIZE;
        // One arena of exactly 64 pages. In Auto, a huge page pool that another
        // test reserves meanwhile (they run in parallel) would add a huge page
        // arena beside the 4 KiB one, and the "full" arena would not be full.
        c.page_mode = NDISSHM_PAGES_BASE;
    }
};

TEST_F(AllocateFromASmallArena, DefaultProviderOutOfMemoryIsResourcesAndChangesNothing) {
    Alloc all = allocate(adapter_, 64 * PAGE_SIZE);
    ASSERT_TRUE(all.ok()) << ndisshm_status_name(all.status);
    Alloc more = allocate(adapter_, 1);
    EXPECT_EQ(more.status, NDIS_STATUS_RESOURCES);
    auto s = stats(adapter_);
    EXPECT_EQ(s.total.blocks, 1u);
    EXPECT_EQ(s.total.failures, 1u);
    EXPECT_TRUE(is_live(adapter_, all.handle));
    NdisFreeSharedMemory(adapter_, all.handle);
    Alloc retry = allocate(adapter_, 1);
    EXPECT_TRUE(retry.ok()) << "space comes back when the block is freed";
}

}  // namespace
}  // namespace ndisshm::test
