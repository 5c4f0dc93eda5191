// The verifier's reports (host.h): one callback per violation, on the thread that made the bad call,
// counted per kind; process-wide for what belongs to no runtime. With the verifier off, misuse still
// gets the right status and corrupts nothing, but nobody is called back.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

using Verifier = NdisTest;

TEST_F(Verifier, AllocationReportNamesKindCallAdapterAndCallSite) {
    Alloc a(0, 1, 0, NdisSharedMemoryUsageReceive, 0);
    const int line = __LINE__ + 1;
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &a.params, &a.handle), NDIS_STATUS_INVALID_LENGTH);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_BAD_LENGTH, "NdisAllocateSharedMemory");
    EXPECT_EQ(v.kind_name, "bad-length");
    EXPECT_EQ(v.adapter, adapter_);
    EXPECT_EQ(v.handle, nullptr);
    EXPECT_EQ(v.alloc_file, __FILE__);
    EXPECT_EQ(v.alloc_line, line);
    EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
    EXPECT_THAT(v.message, testing::HasSubstr(hex(adapter_)));
}

TEST_F(Verifier, EveryKindHasItsOwnName) {
    std::vector<std::string> names;
    // Provoke a few kinds and collect their names; they must be distinct and not "unknown".
    allocate(adapter_, 0);
    allocate(adapter_, PAGE_SIZE, 9);
    int on_stack = 0;
    NdisFreeSharedMemory(adapter_, &on_stack);
    Alloc a = allocate(adapter_, PAGE_SIZE);
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, a.handle);
    for (const auto& v : log_.all()) names.push_back(v.kind_name);
    ASSERT_EQ(names.size(), 4u);
    EXPECT_EQ(names,
              (std::vector<std::string>{"bad-length", "bad-parameters", "garbage-handle", "double-free"}));
}

TEST_F(Verifier, ViolationsAreCountedPerKind) {
    allocate(adapter_, 0);
    allocate(adapter_, 0);
    int on_stack = 0;
    NdisFreeSharedMemory(adapter_, &on_stack);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt_, NDISSHM_VIOLATION_BAD_LENGTH), 2u);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt_, NDISSHM_VIOLATION_GARBAGE_HANDLE), 1u);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt_, NDISSHM_VIOLATION_DOUBLE_FREE), 0u);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt_, NDISSHM_VIOLATION_KIND_COUNT), 0u);
    EXPECT_EQ(ndisshm_runtime_violation_count(nullptr, NDISSHM_VIOLATION_BAD_LENGTH), 0u);
}

TEST_F(Verifier, CallbackRunsOnTheThreadThatMadeTheBadCall) {
    std::thread::id bad_thread;
    std::thread([&] {
        bad_thread = std::this_thread::get_id();
        allocate(adapter_, 0);
    }).join();
    const auto all = log_.all();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].thread, bad_thread);
}

TEST_F(Verifier, ViolationsOfNoRuntimeGoToTheGlobalCallback) {
    const uint64_t before = ndisshm_global_violation_count();
    int on_stack = 0;
    NdisFreeSharedMemory(&on_stack, nullptr);
    EXPECT_EQ(log_.size(), 0u);
    ASSERT_EQ(global_log_.size(), 1u);
    EXPECT_EQ(global_log_.all()[0].kind, NDISSHM_VIOLATION_BAD_HANDLE);
    EXPECT_EQ(ndisshm_global_violation_count(), before + 1);
}

TEST_F(Verifier, ReplacingTheCallbackRedirectsReports) {
    ViolationLog other;
    ndisshm_runtime_set_violation_callback(rt_, &ViolationLog::callback, &other);
    allocate(adapter_, 0);
    EXPECT_EQ(log_.size(), 0u);
    EXPECT_EQ(other.size(), 1u);
    ndisshm_runtime_set_violation_callback(rt_, nullptr, nullptr);
    allocate(adapter_, 0);
    EXPECT_EQ(other.size(), 1u);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt_, NDISSHM_VIOLATION_BAD_LENGTH), 2u) << "still counted";
}

class VerifierOff : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override { c.verifier = 0; }
    void SetUp() override {
        NdisTest::SetUp();
        provider_ = &provide(adapter_, "vswitch");
        keep_ = allocate(adapter_, PAGE_SIZE);
        ASSERT_TRUE(keep_.ok());
    }
    TestProvider* provider_ = nullptr;
    Alloc keep_{1, 1, 0, NdisSharedMemoryUsageReceive, 0};
};

TEST_F(VerifierOff, MisuseStillGetsTheRightStatusButNoCallback) {
    const auto before = stats(adapter_);
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(PAGE_SIZE, sg);
    NDIS_HANDLE h = nullptr;
    p = make_params(PAGE_SIZE, sg, 12);
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_INVALID_PARAMETER);
    p = make_params(0, sg);
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_INVALID_LENGTH);
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, nullptr, &h), NDIS_STATUS_INVALID_PARAMETER);
    p = make_params(PAGE_SIZE, sg);
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &p, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    p.SGListBufferLength = NDISSHM_SG_LIST_HEADER_BYTES;
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_BUFFER_TOO_SHORT);
    EXPECT_TRUE(provider_->alloc_calls().size() == 1u) << "misuse reached the provider";
    // What Windows accepts (a lenient finding with the verifier on) goes through, with no callback.
    p = make_params(PAGE_SIZE, sg);
    p.Header.Type = 0x81;
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
    NdisFreeSharedMemory(adapter_, h);

    provider_->omit_context = true;
    EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_FAILURE);
    provider_->omit_context = false;
    provider_->elements = 2;
    EXPECT_EQ(
        allocate(adapter_, PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS)
            .status,
        NDIS_STATUS_RESOURCES);
    EXPECT_EQ(provider_->times_freed(provider_->context_of(2)), 1)
        << "the bad block went back to the provider";

    EXPECT_EQ(log_.size(), 0u);
    EXPECT_EQ(stats(adapter_).total.blocks, before.total.blocks);
    EXPECT_EQ(stats(adapter_).total.failures, before.total.failures + 7);
    EXPECT_TRUE(is_live(adapter_, keep_.handle));
}

TEST_F(VerifierOff, BadFreesStillFreeNothingButNoCallback) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    Alloc theirs = allocate(eth1, PAGE_SIZE);
    Alloc once = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(theirs.ok() && once.ok());
    NdisFreeSharedMemory(adapter_, once.handle);
    const auto before = stats(adapter_);
    const size_t frees = provider_->free_calls().size();

    NdisFreeSharedMemory(adapter_, once.handle);    // double free
    NdisFreeSharedMemory(adapter_, theirs.handle);  // another adapter's
    int on_stack = 0;
    NdisFreeSharedMemory(adapter_, &on_stack);  // garbage
    NdisFreeSharedMemory(adapter_, reinterpret_cast<NDIS_HANDLE>(0x1234));
    NdisFreeSharedMemory(adapter_, nullptr);

    EXPECT_EQ(log_.size(), 0u);
    EXPECT_EQ(provider_->free_calls().size(), frees);
    EXPECT_EQ(provider_->bad_frees(), 0);
    EXPECT_EQ(stats(adapter_).total, before.total);
    EXPECT_TRUE(is_live(eth1, theirs.handle));
    EXPECT_TRUE(is_live(adapter_, keep_.handle));
}

TEST_F(VerifierOff, TeardownStillFreesEveryBlockOnceButNoCallback) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 1), NDIS_STATUS_SUCCESS);
    Alloc q = allocate(adapter_, PAGE_SIZE, 1);
    ASSERT_TRUE(q.ok());
    ASSERT_EQ(ndisshm_queue_free(adapter_, 1), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(provider_->times_freed(provider_->context_of(1)), 1);
    ndisshm_adapter_destroy(adapter_);
    adapter_ = nullptr;
    EXPECT_EQ(provider_->times_freed(provider_->context_of(0)), 1);
    EXPECT_EQ(provider_->live(), 0u);
    EXPECT_EQ(provider_->bad_frees(), 0);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(VerifierOff, RegistrationMisuseStillRefusedButNoCallback) {
    NDIS_HANDLE other = new_binding(adapter_, "second");
    TestProvider& second = new_provider();
    // Re-registering with the adapter's block outstanding (keep_) is refused.
    EXPECT_EQ(second.register_on(adapter_), NDIS_STATUS_FAILURE);
    auto c = second.characteristics();
    c.FreeSharedMemoryHandler = nullptr;
    EXPECT_EQ(NdisSetOptionalHandlers(other, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(&c)),
              NDIS_STATUS_INVALID_PARAMETER);
    int garbage = 0;
    EXPECT_EQ(second.register_on(&garbage), NDIS_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(log_.size(), 0u);
    EXPECT_EQ(provider_of(adapter_, keep_.handle), "miniport");
}

}  // namespace
}  // namespace ndisshm::test
