// A provider that says NDIS_STATUS_SUCCESS but whose outputs break the contract (ndis_shm.h on
// ALLOCATE_SHARED_MEMORY_HANDLER): the caller gets NDIS_STATUS_FAILURE, the verifier reports it naming
// provider and adapter, nothing is recorded, and a block the provider did make is freed back to it,
// exactly once.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

class MisbehavingProvider : public NdisTest {
protected:
    void SetUp() override {
        NdisTest::SetUp();
        provider_ = &provide(adapter_, "badswitch");
        good_ = allocate(adapter_, PAGE_SIZE);  // made while it behaved; must survive all that follows
        ASSERT_TRUE(good_.ok());
        before_ = stats(adapter_);
    }

    // The call failed with FAILURE and a `kind` report; the books and the good block are untouched; the
    // provider got back (once) the context it returned, if it returned one.
    void expect_failed_and_returned(const Alloc& a, ndisshm_violation_kind kind,
                                    NDIS_STATUS status = NDIS_STATUS_FAILURE) {
        EXPECT_EQ(a.status, status) << ndisshm_status_name(a.status);
        const Violation v = only_violation(log_, kind, "NdisAllocateSharedMemory");
        EXPECT_THAT(v.message, testing::HasSubstr("'miniport'"));
        EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
        const auto now = stats(adapter_);
        EXPECT_EQ(now.total.blocks, before_.total.blocks);
        EXPECT_EQ(now.total.allocations, before_.total.allocations);
        EXPECT_EQ(now.total.failures, before_.total.failures + 1);
        EXPECT_TRUE(is_live(adapter_, good_.handle));
        const auto calls = provider_->alloc_calls();
        ASSERT_EQ(calls.size(), 2u);
        if (calls[1].context != nullptr) {
            EXPECT_EQ(provider_->times_freed(calls[1].context), 1) << "its block must go back to it once";
            EXPECT_EQ(provider_->live(), 1u);
        }
        EXPECT_EQ(provider_->times_freed(provider_->context_of(0)), 0);
        EXPECT_EQ(provider_->bad_frees(), 0);
    }

    TestProvider* provider_ = nullptr;
    Alloc good_{1, 1, 0, NdisSharedMemoryUsageReceive, 0};
    ndisshm_adapter_stats before_{};
};

TEST_F(MisbehavingProvider, SuccessWithoutAContextIsFailure) {
    provider_->omit_context = true;
    Alloc a = allocate(adapter_, PAGE_SIZE);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_NO_CONTEXT);
    EXPECT_EQ(provider_->free_calls().size(), 0u) << "there is no context to free it with";
}

TEST_F(MisbehavingProvider, SuccessDescribingTooFewBytesIsFailureAndTheBlockGoesBack) {
    provider_->short_bytes = 1;
    Alloc a = allocate(adapter_, 2 * PAGE_SIZE);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT);

    provider_->elements = 3;
    provider_->short_bytes = PAGE_SIZE;  // three elements describing two of the three pages
    log_.clear();
    Alloc b = allocate(adapter_, 3 * PAGE_SIZE);
    EXPECT_EQ(b.status, NDIS_STATUS_FAILURE);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_PROVIDER_BAD_RESULT).size(), 1u);
    EXPECT_EQ(provider_->live(), 1u) << "both bad blocks went back";
}

// ndis.sys frees such a block through the provider and says RESOURCES (spec section 7).
TEST_F(MisbehavingProvider, ContiguousRequestDescribedByTwoElementsIsResourcesAndTheBlockGoesBack) {
    provider_->elements = 2;
    Alloc a = allocate(adapter_, 2 * PAGE_SIZE, 0, NdisSharedMemoryUsageReceive,
                       NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT, NDIS_STATUS_RESOURCES);

    // Without CONTIGUOUS the same two elements are fine.
    log_.clear();
    Alloc b = allocate(adapter_, 2 * PAGE_SIZE);
    EXPECT_TRUE(b.ok());
    EXPECT_EQ(b.sg.list()->NumberOfElements, 2u);
}

TEST_F(MisbehavingProvider, SuccessWithNullVirtualAddressIsFailureAndTheBlockGoesBack) {
    provider_->null_virtual_address = true;
    Alloc a = allocate(adapter_, PAGE_SIZE);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT);
}

TEST_F(MisbehavingProvider, SuccessWithAnEmptySgListIsFailureAndTheBlockGoesBack) {
    provider_->zero_elements = true;
    Alloc a = allocate(adapter_, PAGE_SIZE);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT);
}

TEST_F(MisbehavingProvider, SuccessClaimingMoreElementsThanTheBufferHoldsIsFailureAndTheBlockGoesBack) {
    provider_->overclaim_elements = true;
    Alloc a = allocate(adapter_, PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, 0, 2);
    EXPECT_NE(a.status, NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats(adapter_).total.blocks, before_.total.blocks);
    const auto calls = provider_->alloc_calls();
    ASSERT_EQ(calls.size(), 2u);
    ASSERT_NE(calls[1].context, nullptr);
    EXPECT_EQ(provider_->times_freed(calls[1].context), 1);
    EXPECT_EQ(log_.size(), 1u);
}

// Length is an input. A provider that overwrites it with a smaller value and describes only that must
// not pass off a smaller block than the caller asked for: the caller would write past its end.
TEST_F(MisbehavingProvider, ProviderShrinkingLengthCannotPassOffASmallerBlock) {
    provider_->rewrite_length = PAGE_SIZE;
    Alloc a = allocate(adapter_, 16 * PAGE_SIZE);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT);
}

TEST_F(MisbehavingProvider, FailureStatusesAreNotReportedAsViolations) {
    // An honest refusal is the provider's right, not a bug.
    for (NDIS_STATUS s : {NDIS_STATUS_RESOURCES, NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_FAILURE}) {
        provider_->fail_with = s;
        Alloc a = allocate(adapter_, PAGE_SIZE);
        EXPECT_EQ(a.status, s);
    }
    EXPECT_EQ(log_.size(), 0u);
    EXPECT_TRUE(provider_->free_calls().empty());
}

// Contexts are the provider's, opaque to NDIS: any non-NULL value, however odd, is kept as it is and
// handed back to the free handler exactly once, with its own block.
TEST_F(MisbehavingProvider, GarbageContextsAreOpaqueAndEachComesBackOnceWithItsBlock) {
    const uintptr_t odd[] = {1, UINTPTR_MAX, 0xDEADBEEF, 0x7, uintptr_t{1} << 63};
    provider_->context_for = [&](uintptr_t n) { return odd[(n - 2) % 5]; };  // n = 1 was good_
    std::vector<Alloc> blocks;
    for (int i = 0; i < 5; ++i) {
        blocks.push_back(allocate(adapter_, PAGE_SIZE));
        ASSERT_TRUE(blocks.back().ok()) << ndisshm_status_name(blocks.back().status);
    }
    for (int i = 4; i >= 0; --i) {
        NdisFreeSharedMemory(adapter_, blocks[i].handle);
        EXPECT_EQ(provider_->times_freed(reinterpret_cast<NDIS_HANDLE>(odd[i])), 1) << i;
        EXPECT_EQ(provider_->free_calls().back().context, reinterpret_cast<NDIS_HANDLE>(odd[i]));
    }
    EXPECT_EQ(stats(adapter_).total.blocks, 1u);
    EXPECT_EQ(provider_->bad_frees(), 0);
    EXPECT_EQ(log_.size(), 0u);
    provider_->context_for = nullptr;  // it sees this test's locals
}

// A provider that gives two blocks one context gets that context back twice, once per block, and NDIS
// keeps the blocks apart: freeing one leaves the other live, and teardown frees what is left.
TEST_F(MisbehavingProvider, OneContextForTwoBlocksComesBackOncePerBlock) {
    provider_->context_for = [](uintptr_t) { return uintptr_t{0xC0FFEE0}; };
    Alloc a = allocate(adapter_, PAGE_SIZE), b = allocate(adapter_, 2 * PAGE_SIZE), c = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_TRUE(is_live(adapter_, b.handle) && is_live(adapter_, c.handle));
    EXPECT_EQ(provider_->times_freed(reinterpret_cast<NDIS_HANDLE>(0xC0FFEE0)), 1);
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(provider_->times_freed(reinterpret_cast<NDIS_HANDLE>(0xC0FFEE0)), 2);
    EXPECT_TRUE(is_live(adapter_, c.handle));
    destroy_runtime();  // c and good_ go as leaks, each through the provider once
    EXPECT_EQ(provider_->times_freed(reinterpret_cast<NDIS_HANDLE>(0xC0FFEE0)), 3);
    EXPECT_EQ(provider_->times_freed(provider_->context_of(0)), 1);
    EXPECT_EQ(provider_->bad_frees(), 0);
    EXPECT_EQ(provider_->live(), 0u);
}

// A free handler that calls NdisFreeSharedMemory on the block being freed (a provider freeing twice)
// is a double free, reported and refused: the handler runs once per block, nothing recurses or
// deadlocks, whether the driver's free or teardown's reclaim called it.
TEST_F(MisbehavingProvider, FreeHandlerFreeingItsBlockAgainIsADoubleFree) {
    std::map<NDIS_HANDLE, NDIS_HANDLE> handle_of;  // context -> block handle
    int depth = 0;
    provider_->on_free = [&](NDIS_HANDLE context) {
        if (depth++ == 0 && handle_of.count(context) != 0) NdisFreeSharedMemory(adapter_, handle_of[context]);
        --depth;
    };
    Alloc a = allocate(adapter_, PAGE_SIZE, 0);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 3), NDIS_STATUS_SUCCESS);
    Alloc q = allocate(adapter_, PAGE_SIZE, 3);
    ASSERT_TRUE(a.ok() && q.ok());
    const auto calls = provider_->alloc_calls();
    handle_of[calls[1].context] = a.handle;
    handle_of[calls[2].context] = q.handle;
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(provider_->times_freed(calls[1].context), 1);
    ASSERT_EQ(log_.of(NDISSHM_VIOLATION_DOUBLE_FREE).size(), 1u);
    EXPECT_EQ(ndisshm_queue_free(adapter_, 3), NDIS_STATUS_SUCCESS);  // q reclaimed, its handler frees it again
    EXPECT_EQ(provider_->times_freed(calls[2].context), 1);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_DOUBLE_FREE).size(), 2u);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS).size(), 1u);
    EXPECT_EQ(stats(adapter_).total.blocks, 1u);
    EXPECT_EQ(provider_->bad_frees(), 0);
    provider_->on_free = nullptr;  // it sees this test's locals; teardown frees good_ after they are gone
}

// A free handler may free another of its blocks (NDIS holds no lock across the call): both go, once.
TEST_F(MisbehavingProvider, FreeHandlerFreeingAnotherBlockFreesBoth) {
    Alloc a = allocate(adapter_, PAGE_SIZE), b = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok());
    const NDIS_HANDLE a_context = provider_->alloc_calls()[1].context;
    provider_->on_free = [&](NDIS_HANDLE context) {
        if (context == a_context) NdisFreeSharedMemory(adapter_, b.handle);
    };
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_FALSE(is_live(adapter_, a.handle));
    EXPECT_FALSE(is_live(adapter_, b.handle));
    EXPECT_EQ(provider_->times_freed(a_context), 1);
    EXPECT_EQ(provider_->times_freed(provider_->alloc_calls()[2].context), 1);
    EXPECT_EQ(stats(adapter_).total.blocks, 1u);
    EXPECT_EQ(log_.size(), 0u);
    provider_->on_free = nullptr;  // it sees this test's locals
}

}  // namespace
}  // namespace ndisshm::test
