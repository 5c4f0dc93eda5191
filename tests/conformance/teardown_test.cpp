// Teardown with blocks outstanding (spec sections 3-5, host.h): "the driver must free every block it
// allocates". Destroying an adapter or runtime, freeing a queue or destroying a provider binding with
// blocks left is reported once per block (naming adapter, queue, usage, length, provider and allocation
// site), and each such block is still freed through its own provider, exactly once.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

struct Expected {
    NDIS_HANDLE handle;
    ULONG queue;
    NDIS_SHARED_MEMORY_USAGE usage;
    ULONG length;
    std::string provider;
    int line;
};

// Each expected block has exactly one violation of `kind`, saying all there is to say about it.
void expect_reports(const std::vector<Violation>& all, ndisshm_violation_kind kind,
                    const std::vector<Expected>& blocks, NDIS_HANDLE adapter, const char* adapter_name) {
    std::vector<Violation> reports;
    for (const auto& v : all)
        if (v.kind == kind && v.adapter == adapter) reports.push_back(v);
    EXPECT_EQ(reports.size(), blocks.size());
    for (const Expected& e : blocks) {
        SCOPED_TRACE(hex(e.handle));
        const auto it = std::find_if(reports.begin(), reports.end(),
                                     [&](const Violation& v) { return v.handle == e.handle; });
        ASSERT_NE(it, reports.end()) << "no report for this block";
        EXPECT_EQ(std::count_if(reports.begin(), reports.end(),
                                [&](const Violation& v) { return v.handle == e.handle; }),
                  1);
        EXPECT_EQ(it->adapter, adapter);
        EXPECT_EQ(it->alloc_file, __FILE__);
        EXPECT_EQ(it->alloc_line, e.line);
        const std::string& m = it->message;
        EXPECT_THAT(m, testing::HasSubstr(std::string("'") + adapter_name + "'"));
        EXPECT_THAT(m, testing::HasSubstr(hex(e.handle)));
        EXPECT_THAT(m, testing::HasSubstr("queue " + std::to_string(e.queue)));
        EXPECT_THAT(m, testing::HasSubstr(ndisshm_usage_name(e.usage)));
        EXPECT_THAT(m, testing::HasSubstr(std::to_string(e.length)));
        EXPECT_THAT(m, testing::HasSubstr("'" + e.provider + "'"));
        // Appended, not `std::string(__FILE__) + ":" + ...`: GCC 12 at -O2
        // warns -Warray-bounds on that chain of temporaries (a false positive
        // in libstdc++'s inlined concatenation), so Release was not clean.
        std::string site = __FILE__;
        site.append(":").append(std::to_string(e.line));
        EXPECT_THAT(m, testing::HasSubstr(site));
    }
}

class Teardown : public NdisTest {
protected:
    // Allocates here, so that the recorded site is this file at a line the test knows.
    Expected alloc(NDIS_HANDLE adapter, ULONG length, ULONG queue, NDIS_SHARED_MEMORY_USAGE usage,
                   const std::string& provider) {
        Alloc a(length, 1, queue, usage, 0);
        const int line = __LINE__ + 1;
        EXPECT_EQ(NdisAllocateSharedMemory(adapter, &a.params, &a.handle), NDIS_STATUS_SUCCESS);
        return {a.handle, queue, usage, length, provider, line};
    }
};

TEST_F(Teardown, AdapterDestroyReportsEachOutstandingBlockAsALeak) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 3), NDIS_STATUS_SUCCESS);
    std::vector<Expected> blocks;
    blocks.push_back(alloc(adapter_, 3 * PAGE_SIZE, 0, NdisSharedMemoryUsageOther, "default"));
    TestProvider& provider = provide(adapter_);
    blocks.push_back(alloc(adapter_, 2 * PAGE_SIZE, 3, NdisSharedMemoryUsageReceive, "miniport"));
    blocks.push_back(alloc(adapter_, 100, 0, NdisSharedMemoryUsageReceiveLookahead, "miniport"));
    Alloc freed = allocate(adapter_, PAGE_SIZE);
    NdisFreeSharedMemory(adapter_, freed.handle);  // freed properly: no report
    ASSERT_EQ(log_.size(), 0u);

    ndisshm_adapter_destroy(adapter_);
    expect_reports(log_.all(), NDISSHM_VIOLATION_LEAK, blocks, adapter_, "eth0");
    EXPECT_EQ(log_.size(), blocks.size());
    for (const auto& v : log_.all()) EXPECT_EQ(v.call, "ndisshm_adapter_destroy");
    EXPECT_EQ(provider.times_freed(provider.context_of(0)), 1);
    EXPECT_EQ(provider.times_freed(provider.context_of(1)), 1);
    EXPECT_EQ(provider.times_freed(provider.context_of(2)), 1);
    EXPECT_EQ(provider.live(), 0u);
    EXPECT_EQ(provider.bad_frees(), 0);

    // The handle is dead now.
    global_log_.clear();
    NdisFreeSharedMemory(adapter_, blocks[1].handle);
    EXPECT_EQ(global_log_.of(NDISSHM_VIOLATION_BAD_HANDLE).size(), 1u);
    EXPECT_EQ(provider.free_calls().size(), 3u);
    adapter_ = nullptr;
}

TEST_F(Teardown, RuntimeDestroyReportsTheLeaksOfEveryAdapter) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    TestProvider& provider = provide(adapter_);
    std::vector<Expected> on_eth0{alloc(adapter_, PAGE_SIZE, 0, NdisSharedMemoryUsageReceive, "miniport"),
                                  alloc(adapter_, 5 * PAGE_SIZE, 0, NdisSharedMemoryUsageXmit, "miniport")};
    std::vector<Expected> on_eth1{alloc(eth1, 7, 0, NdisSharedMemoryUsageReceiveData, "default")};

    destroy_runtime();
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_LEAK).size(), 3u);
    for (const auto& v : log_.all())
        EXPECT_THAT(v.call, testing::AnyOf("ndisshm_runtime_destroy", "ndisshm_adapter_destroy"));
    expect_reports(log_.all(), NDISSHM_VIOLATION_LEAK, on_eth0, adapter_, "eth0");
    expect_reports(log_.all(), NDISSHM_VIOLATION_LEAK, on_eth1, eth1, "eth1");
    EXPECT_EQ(provider.free_calls().size(), 2u);
    EXPECT_EQ(provider.live(), 0u);
    EXPECT_EQ(provider.bad_frees(), 0);
}

TEST_F(Teardown, OrderlyTeardownReportsNothing) {
    NDIS_HANDLE binding = nullptr;
    TestProvider& provider = provide(adapter_, "vswitch", &binding);
    ASSERT_EQ(ndisshm_queue_create(binding, 1), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(binding, 2), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, 1);
    Alloc b = allocate(adapter_, PAGE_SIZE, 2);
    ASSERT_TRUE(a.ok() && b.ok());
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(ndisshm_queue_free(adapter_, 1), NDIS_STATUS_SUCCESS);
    NdisFreeSharedMemory(adapter_, b.handle);
    ndisshm_binding_destroy(binding);
    ndisshm_adapter_destroy(adapter_);
    adapter_ = nullptr;
    destroy_runtime();
    EXPECT_EQ(log_.size(), 0u);
    EXPECT_EQ(global_log_.size(), 0u);
    EXPECT_EQ(provider.free_calls().size(), 2u);
}

TEST_F(Teardown, QueueFreedWithBlocksIsReportedAndItsBlocksAreFreed) {
    NDIS_HANDLE binding = nullptr;
    TestProvider& provider = provide(adapter_, "vswitch", &binding);
    ASSERT_EQ(ndisshm_queue_create(binding, 3), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(binding, 4), NDIS_STATUS_SUCCESS);
    std::vector<Expected> q3{
        alloc(adapter_, PAGE_SIZE, 3, NdisSharedMemoryUsageReceiveLookahead, "vswitch"),
        alloc(adapter_, 2 * PAGE_SIZE, 3, NdisSharedMemoryUsageReceivePostLookahead, "vswitch")};
    Alloc keep = allocate(adapter_, PAGE_SIZE, 4);
    ASSERT_TRUE(keep.ok());

    EXPECT_EQ(ndisshm_queue_free(adapter_, 3), NDIS_STATUS_SUCCESS);
    expect_reports(log_.all(), NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS, q3, adapter_, "eth0");
    EXPECT_EQ(log_.size(), 2u);
    for (const auto& v : log_.all()) EXPECT_EQ(v.call, "ndisshm_queue_free");
    EXPECT_EQ(provider.times_freed(provider.context_of(0)), 1);
    EXPECT_EQ(provider.times_freed(provider.context_of(1)), 1);
    EXPECT_EQ(provider.times_freed(provider.context_of(2)), 0);
    EXPECT_TRUE(is_live(adapter_, keep.handle));
    EXPECT_FALSE(is_live(adapter_, q3[0].handle));
    const auto s = stats(adapter_);
    EXPECT_EQ(s.total.blocks, 1u);
    EXPECT_EQ(s.total.bytes, PAGE_SIZE);
    EXPECT_EQ(s.queues, 2u) << "queue 0 and queue 4";
    ndisshm_usage_stats gone{};
    EXPECT_EQ(ndisshm_queue_get_stats(adapter_, 3, &gone), NDIS_STATUS_INVALID_PARAMETER);

    // The driver's late free of a reclaimed block is a misuse that frees nothing.
    log_.clear();
    NdisFreeSharedMemory(adapter_, q3[0].handle);
    EXPECT_EQ(log_.size(), 1u);
    EXPECT_EQ(provider.free_calls().size(), 2u);
    EXPECT_EQ(provider.bad_frees(), 0);
}

TEST_F(Teardown, BindingDestroyedWithBlocksIsReportedAndLaterAllocationsUseTheDefault) {
    Alloc older = allocate(adapter_, PAGE_SIZE);  // queue 0: NDIS's own memory, not the binding's
    NDIS_HANDLE binding = nullptr;
    TestProvider& provider = provide(adapter_, "vswitch", &binding);
    ASSERT_EQ(ndisshm_queue_create(binding, 5), NDIS_STATUS_SUCCESS);
    std::vector<Expected> its{alloc(adapter_, PAGE_SIZE, 5, NdisSharedMemoryUsageReceive, "vswitch"),
                              alloc(adapter_, 9000, 5, NdisSharedMemoryUsageOther, "vswitch")};

    ndisshm_binding_destroy(binding);
    expect_reports(log_.all(), NDISSHM_VIOLATION_BINDING_DETACHED_WITH_BLOCKS, its, adapter_, "eth0");
    EXPECT_EQ(log_.size(), 2u);
    for (const auto& v : log_.all()) EXPECT_EQ(v.call, "ndisshm_binding_destroy");
    EXPECT_EQ(provider.free_calls().size(), 2u);
    EXPECT_EQ(provider.live(), 0u);
    EXPECT_TRUE(is_live(adapter_, older.handle));

    const auto s = stats(adapter_);
    EXPECT_EQ(s.has_provider, 0);
    EXPECT_EQ(s.bindings, 0u);
    EXPECT_EQ(s.total.blocks, 1u);
    Alloc after = allocate(adapter_, PAGE_SIZE, 5);
    ASSERT_TRUE(after.ok()) << "its queue stays, the miniport's now";
    EXPECT_EQ(provider_of(adapter_, after.handle), "default");
    EXPECT_EQ(provider.alloc_calls().size(), 2u);
}

TEST_F(Teardown, AdapterDestroyDetachesItsBindingsAndQueues) {
    NDIS_HANDLE binding = nullptr;
    TestProvider& provider = provide(adapter_, "vswitch", &binding);
    ASSERT_EQ(ndisshm_queue_create(binding, 2), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, 2);
    ASSERT_TRUE(a.ok());
    ndisshm_adapter_destroy(adapter_);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_LEAK).size(), 1u);
    EXPECT_EQ(provider.free_calls().size(), 1u);
    // The binding went with its adapter.
    global_log_.clear();
    EXPECT_EQ(new_provider().register_on(binding), NDIS_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(global_log_.of(NDISSHM_VIOLATION_BAD_HANDLE).size(), 1u);
    adapter_ = nullptr;
}

}  // namespace
}  // namespace ndisshm::test
