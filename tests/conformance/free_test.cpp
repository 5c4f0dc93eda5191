// NdisFreeSharedMemory (spec section 3): frees exactly one block of this adapter, by calling the
// provider's free handler once with the very context it returned. Any other handle is reported, naming
// the adapter, the handle and (for blocks) where the block was allocated, and frees nothing.
#include <sys/wait.h>

#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

class Free : public NdisTest {
protected:
    void SetUp() override {
        NdisTest::SetUp();
        provider_ = &provide(adapter_, "vswitch");
    }
    // Everything a misused free must leave as it was.
    struct State {
        ndisshm_adapter_stats stats;
        size_t provider_frees;
    };
    State state() { return {stats(adapter_), provider_->free_calls().size()}; }
    void expect_unchanged(const State& before) {
        const State now = state();
        EXPECT_EQ(now.stats.total, before.stats.total);
        EXPECT_EQ(now.provider_frees, before.provider_frees) << "the provider was asked to free something";
        EXPECT_EQ(provider_->bad_frees(), 0);
    }

    TestProvider* provider_ = nullptr;
};

TEST_F(Free, FreeRoutesProviderContextExactlyOnce) {
    Alloc a = allocate(adapter_, PAGE_SIZE);
    Alloc b = allocate(adapter_, 2 * PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok());
    const NDIS_HANDLE ctx_a = provider_->context_of(0), ctx_b = provider_->context_of(1);
    ASSERT_NE(ctx_a, ctx_b);

    NdisFreeSharedMemory(adapter_, b.handle);
    auto frees = provider_->free_calls();
    ASSERT_EQ(frees.size(), 1u);
    EXPECT_EQ(frees[0].context, ctx_b);
    EXPECT_EQ(frees[0].provider_context, provider_);
    EXPECT_EQ(frees[0].thread, std::this_thread::get_id()) << "freed synchronously, in the caller's context";

    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(provider_->times_freed(ctx_a), 1);
    EXPECT_EQ(provider_->times_freed(ctx_b), 1);
    EXPECT_EQ(provider_->live(), 0u);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Free, FreeReleasesOnlyThatBlock) {
    Alloc keep = allocate(adapter_, PAGE_SIZE);
    Alloc drop = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(keep.ok() && drop.ok());
    std::memset(keep.bytes(), 0x42, PAGE_SIZE);
    NdisFreeSharedMemory(adapter_, drop.handle);
    EXPECT_TRUE(is_live(adapter_, keep.handle));
    EXPECT_FALSE(is_live(adapter_, drop.handle));
    for (size_t i = 0; i < PAGE_SIZE; ++i) ASSERT_EQ(keep.bytes()[i], 0x42);
    EXPECT_EQ(stats(adapter_).total.blocks, 1u);
}

TEST_F(Free, DoubleFreeIsReportedAndFreesNothing) {
    Alloc other = allocate(adapter_, PAGE_SIZE);
    Alloc a(PAGE_SIZE, 1, 0, NdisSharedMemoryUsageReceive, 0);
    const int line = __LINE__ + 1;
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &a.params, &a.handle), NDIS_STATUS_SUCCESS);
    NdisFreeSharedMemory(adapter_, a.handle);
    const State before = state();

    NdisFreeSharedMemory(adapter_, a.handle);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_DOUBLE_FREE, "NdisFreeSharedMemory");
    EXPECT_EQ(v.kind_name, "double-free");
    EXPECT_EQ(v.adapter, adapter_);
    EXPECT_EQ(v.handle, a.handle);
    EXPECT_EQ(v.alloc_file, __FILE__);
    EXPECT_EQ(v.alloc_line, line);
    EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
    EXPECT_THAT(v.message, testing::HasSubstr(hex(a.handle)));
    EXPECT_THAT(v.message, testing::HasSubstr(std::string(__FILE__) + ":" + std::to_string(line)));
    expect_unchanged(before);
    EXPECT_TRUE(is_live(adapter_, other.handle));
    NdisFreeSharedMemory(adapter_, other.handle);
    EXPECT_EQ(provider_->times_freed(provider_->context_of(0)), 1);
    EXPECT_EQ(provider_->times_freed(provider_->context_of(1)), 1);
}

TEST_F(Free, FreeOfAnotherAdaptersHandleIsReportedAndFreesNothing) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    TestProvider& theirs = provide(eth1, "vswitch1");
    Alloc mine = allocate(adapter_, PAGE_SIZE);
    Alloc their = allocate(eth1, PAGE_SIZE);
    ASSERT_TRUE(mine.ok() && their.ok());
    const State before = state();
    const auto their_stats = stats(eth1);

    NdisFreeSharedMemory(adapter_, their.handle);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_WRONG_ADAPTER, "NdisFreeSharedMemory");
    EXPECT_EQ(v.adapter, adapter_);
    EXPECT_EQ(v.handle, their.handle);
    EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
    EXPECT_THAT(v.message, testing::HasSubstr("'eth1'"));
    expect_unchanged(before);
    EXPECT_EQ(stats(eth1).total, their_stats.total);
    EXPECT_TRUE(theirs.free_calls().empty());
    EXPECT_TRUE(is_live(eth1, their.handle));
    EXPECT_TRUE(is_live(adapter_, mine.handle));

    NdisFreeSharedMemory(eth1, their.handle);  // its own adapter frees it
    EXPECT_EQ(theirs.free_calls().size(), 1u);
}

// The report for a block freed on the wrong adapter names the handle and where the block was allocated,
// as every report about a block does (host.h: "names adapter, handle, site").
TEST_F(Free, WrongAdapterReportNamesTheHandleAndItsAllocationSite) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    Alloc their(PAGE_SIZE, 1, 0, NdisSharedMemoryUsageReceive, 0);
    const int line = __LINE__ + 1;
    ASSERT_EQ(NdisAllocateSharedMemory(eth1, &their.params, &their.handle), NDIS_STATUS_SUCCESS);
    NdisFreeSharedMemory(adapter_, their.handle);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_WRONG_ADAPTER, "NdisFreeSharedMemory");
    EXPECT_THAT(v.message, testing::HasSubstr(hex(their.handle)));
    EXPECT_EQ(v.alloc_file, __FILE__);
    EXPECT_EQ(v.alloc_line, line);
    EXPECT_THAT(v.message, testing::HasSubstr(std::string(__FILE__) + ":" + std::to_string(line)));
}

TEST_F(Free, GarbageHandlesAreReportedAndFreeNothing) {
    Alloc live = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(live.ok());
    int on_stack = 0;
    const NDIS_HANDLE garbage[] = {
        &on_stack,
        reinterpret_cast<NDIS_HANDLE>(0x1234),
        static_cast<char*>(live.handle) + 8,  // inside a block's record
        static_cast<char*>(live.handle) - 1,
        live.params.VirtualAddress,  // the block's memory is not its handle
        provider_->context_of(0),    // nor is the provider's context
    };
    for (NDIS_HANDLE g : garbage) {
        SCOPED_TRACE(hex(g));
        log_.clear();
        const State before = state();
        NdisFreeSharedMemory(adapter_, g);
        const Violation v = only_violation(log_, NDISSHM_VIOLATION_GARBAGE_HANDLE, "NdisFreeSharedMemory");
        EXPECT_EQ(v.handle, g);
        EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
        EXPECT_THAT(v.message, testing::HasSubstr(hex(g)));
        expect_unchanged(before);
    }
    EXPECT_TRUE(is_live(adapter_, live.handle));
    NdisFreeSharedMemory(adapter_, live.handle);
    EXPECT_EQ(provider_->free_calls().size(), 1u);
}

// ndis.sys returns at once for a NULL AllocationHandle (spec section 7): nothing to report, nothing freed.
TEST_F(Free, NullAllocationHandleIsASilentNoOp) {
    Alloc live = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(live.ok());
    const State before = state();
    NdisFreeSharedMemory(adapter_, nullptr);
    EXPECT_EQ(log_.size(), 0u);
    EXPECT_EQ(global_log_.size(), 0u);
    expect_unchanged(before);
    EXPECT_TRUE(is_live(adapter_, live.handle));
    NdisFreeSharedMemory(adapter_, live.handle);
}

TEST_F(Free, FreeThroughANonAdapterHandleIsReportedAndFreesNothing) {
    Alloc live = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(live.ok());
    NDIS_HANDLE binding = new_binding(adapter_, "filter");
    NDIS_HANDLE gone = new_adapter("gone");
    ndisshm_adapter_destroy(gone);
    for (NDIS_HANDLE bad : {NDIS_HANDLE{nullptr}, binding, gone, live.handle}) {
        SCOPED_TRACE(hex(bad));
        global_log_.clear();
        const State before = state();
        NdisFreeSharedMemory(bad, live.handle);
        const Violation v = only_violation(global_log_, NDISSHM_VIOLATION_BAD_HANDLE, "NdisFreeSharedMemory");
        EXPECT_THAT(v.message, testing::HasSubstr(hex(bad)));
        expect_unchanged(before);
    }
    EXPECT_TRUE(is_live(adapter_, live.handle));
}

// A double free after the provider's binding is gone must still be reported sanely: the report names
// the provider the block came from and reads nothing that went away with the binding. Run in a child
// process, so that a crash fails this test only.
TEST_F(Free, DoubleFreeAfterItsBindingIsGoneIsReportedSafely) {
    const auto scenario = [this] {
        static const char kName[] = "vswitch-binding-long-name";  // too long for a string's inline buffer
        NDIS_HANDLE eth1 = new_adapter("eth1");
        NDIS_HANDLE binding = nullptr;
        provide(eth1, kName, &binding);
        if (ndisshm_queue_create(binding, 2) != NDIS_STATUS_SUCCESS) std::_Exit(5);
        Alloc a = allocate(eth1, PAGE_SIZE, 2);
        if (!a.ok()) std::_Exit(2);
        NdisFreeSharedMemory(eth1, a.handle);
        ndisshm_binding_destroy(binding);
        log_.clear();
        NdisFreeSharedMemory(eth1, a.handle);
        const auto all = log_.all();
        if (all.size() != 1 || all[0].kind != NDISSHM_VIOLATION_DOUBLE_FREE) std::_Exit(3);
        if (all[0].message.find(kName) == std::string::npos) {
            std::fprintf(stderr, "message: %s\n", all[0].message.c_str());
            std::_Exit(4);
        }
        std::_Exit(0);
    };
    EXPECT_EXIT(scenario(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace ndisshm::test
