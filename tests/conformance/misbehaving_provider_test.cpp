// A provider that says NDIS_STATUS_SUCCESS but whose outputs break the contract (ndis_shm.h on
// ALLOCATE_SHARED_MEMORY_HANDLER): the caller gets NDIS_STATUS_FAILURE, the verifier reports it naming
// provider and adapter, nothing is recorded, and a block the provider did make is freed back to it,
// exactly once.
#include "conformance/fixture.hpp"

namespace ndisshm_test {
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
    void expect_failed_and_returned(const Alloc& a, ndisshm_violation_kind kind) {
        EXPECT_EQ(a.status, NDIS_STATUS_FAILURE) << ndisshm_status_name(a.status);
        const Violation v = only_violation(log_, kind, "NdisAllocateSharedMemory");
        EXPECT_THAT(v.message, testing::HasSubstr("'badswitch'"));
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

TEST_F(MisbehavingProvider, ContiguousRequestDescribedByTwoElementsIsFailureAndTheBlockGoesBack) {
    provider_->elements = 2;
    Alloc a = allocate(adapter_, 2 * PAGE_SIZE, 0, NdisSharedMemoryUsageReceive,
                       NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS);
    expect_failed_and_returned(a, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT);

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

}  // namespace
}  // namespace ndisshm_test
