// Which provider answers (spec sections 1, 3, 5 and 7): for a queue a binding allocated, that binding's
// provider; for queue 0 and the queues no providing binding owns, the provider registered with the
// miniport adapter's own handle; else NDIS's own memory ("default"). Each block's free goes back to the
// provider that made it, whatever is registered by then.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

using Routing = NdisTest;

TEST_F(Routing, AdapterProviderReceivesEveryAllocationOfTheQueuesNoBindingOwns) {
    TestProvider& provider = provide(adapter_);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 1), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 2), NDIS_STATUS_SUCCESS);
    std::vector<Alloc> blocks;
    for (ULONG q : {0u, 1u, 2u}) {
        for (auto usage : {NdisSharedMemoryUsageReceive, NdisSharedMemoryUsageReceiveLookahead,
                           NdisSharedMemoryUsageOther}) {
            blocks.push_back(allocate(adapter_, PAGE_SIZE * (q + 1), q, usage));
            ASSERT_TRUE(blocks.back().ok());
            EXPECT_EQ(provider_of(adapter_, blocks.back().handle), "miniport");
        }
    }
    const auto calls = provider.alloc_calls();
    ASSERT_EQ(calls.size(), blocks.size());
    for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_EQ(calls[i].params.QueueId, blocks[i].params.QueueId);
        EXPECT_EQ(calls[i].params.Usage, blocks[i].params.Usage);
        EXPECT_EQ(calls[i].params.Length, blocks[i].params.Length);
    }
    EXPECT_EQ(stats(adapter_).has_provider, 1);
    for (auto& b : blocks) NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(provider.free_calls().size(), blocks.size());
    EXPECT_EQ(provider.live(), 0u);
    EXPECT_EQ(provider.bad_frees(), 0);
}

TEST_F(Routing, UnregisteredAdapterUsesDefaultProvider) {
    NDIS_HANDLE idle_binding = new_binding(adapter_, "filter-without-provider");
    (void)idle_binding;  // a binding that never registers changes nothing
    Alloc a = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(provider_of(adapter_, a.handle), "default");
    const auto s = stats(adapter_);
    EXPECT_EQ(s.has_provider, 0);
    EXPECT_EQ(s.bindings, 1u);
}

TEST_F(Routing, ProviderOnOneAdapterNeverSeesAnotherAdaptersAllocations) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    NDIS_HANDLE eth2 = new_adapter("eth2");  // no provider
    TestProvider& p0 = provide(adapter_, "vswitch0");
    TestProvider& p1 = provide(eth1, "vswitch1");
    std::vector<std::pair<NDIS_HANDLE, Alloc>> blocks;
    for (int round = 0; round < 3; ++round) {
        blocks.emplace_back(adapter_, allocate(adapter_, 1 * PAGE_SIZE));
        blocks.emplace_back(eth1, allocate(eth1, 2 * PAGE_SIZE));
        blocks.emplace_back(eth2, allocate(eth2, 3 * PAGE_SIZE));
    }
    for (auto& [adapter, b] : blocks) ASSERT_TRUE(b.ok());
    ASSERT_EQ(p0.alloc_calls().size(), 3u);
    ASSERT_EQ(p1.alloc_calls().size(), 3u);
    for (const auto& c : p0.alloc_calls()) EXPECT_EQ(c.params.Length, 1u * PAGE_SIZE);
    for (const auto& c : p1.alloc_calls()) EXPECT_EQ(c.params.Length, 2u * PAGE_SIZE);
    for (auto& [adapter, b] : blocks) {
        if (adapter == eth2) {
            EXPECT_EQ(provider_of(eth2, b.handle), "default");
        }
    }
    for (auto& [adapter, b] : blocks) NdisFreeSharedMemory(adapter, b.handle);
    EXPECT_EQ(p0.free_calls().size(), 3u);
    EXPECT_EQ(p1.free_calls().size(), 3u);
    EXPECT_EQ(p0.bad_frees() + p1.bad_frees(), 0);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Routing, BlocksAllocatedBeforeRegistrationAreFreedByTheDefaultProvider) {
    Alloc before = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(before.ok());
    TestProvider& provider = provide(adapter_);
    Alloc after = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(provider_of(adapter_, before.handle), "default");
    EXPECT_EQ(provider_of(adapter_, after.handle), "miniport");

    NdisFreeSharedMemory(adapter_, before.handle);
    EXPECT_TRUE(provider.free_calls().empty()) << "a default block was freed through the new provider";
    EXPECT_FALSE(is_live(adapter_, before.handle));
    NdisFreeSharedMemory(adapter_, after.handle);
    EXPECT_EQ(provider.free_calls().size(), 1u);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Routing, AfterItsBindingGoesItsQueuesUseTheAdapterProviderOrNdisMemory) {
    NDIS_HANDLE binding = nullptr;
    TestProvider& provider = provide(adapter_, "vswitch", &binding);
    ASSERT_EQ(ndisshm_queue_create(binding, 3), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, 3);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(provider_of(adapter_, a.handle), "vswitch");
    NdisFreeSharedMemory(adapter_, a.handle);
    ndisshm_binding_destroy(binding);
    EXPECT_EQ(log_.size(), 0u) << "a binding with no blocks detaches cleanly";
    EXPECT_EQ(stats(adapter_).has_provider, 0);
    EXPECT_EQ(stats(adapter_).bindings, 0u);

    // Its queue stays, the miniport's now: NDIS's own memory serves it.
    Alloc b = allocate(adapter_, PAGE_SIZE, 3);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(provider_of(adapter_, b.handle), "default");
    EXPECT_EQ(provider.alloc_calls().size(), 1u);
    NdisFreeSharedMemory(adapter_, b.handle);

    // A provider registered with the adapter's handle serves it from then on.
    TestProvider& next = provide(adapter_);
    Alloc c = allocate(adapter_, PAGE_SIZE, 3);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(provider_of(adapter_, c.handle), "miniport");
    EXPECT_EQ(next.alloc_calls().size(), 1u);
}

TEST_F(Routing, CharacteristicsAreCopiedAtRegistration) {
    NDIS_HANDLE binding = new_binding(adapter_, "vswitch");
    ASSERT_EQ(ndisshm_queue_create(binding, 3), NDIS_STATUS_SUCCESS);
    TestProvider& provider = new_provider();
    {
        auto c = provider.characteristics();
        ASSERT_EQ(NdisSetOptionalHandlers(binding, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(&c)),
                  NDIS_STATUS_SUCCESS);
        std::memset(&c, 0xCD, sizeof(c));  // the caller's struct is its own again
    }
    Alloc a = allocate(adapter_, PAGE_SIZE, 3);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(provider.alloc_calls().size(), 1u);
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(provider.free_calls().size(), 1u);
}

TEST_F(Routing, HostOpsProviderIsToldOfTheQueuesItServes) {
    NDIS_HANDLE binding = new_binding(adapter_, "xdp");
    ASSERT_EQ(ndisshm_queue_create(binding, 4), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 8), NDIS_STATUS_SUCCESS);  // the miniport's: not this provider's
    TestProvider& provider = new_provider();
    const ndisshm_provider_ops ops = provider.ops();
    ASSERT_EQ(ndisshm_binding_register_provider(binding, &ops), NDIS_STATUS_SUCCESS);
    using Events = std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, bool>>;
    EXPECT_EQ(provider.queue_events(), (Events{{4, true}})) << "its existing queues only, never queue 0";

    ASSERT_EQ(ndisshm_queue_create(binding, 5), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, 5);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(provider.alloc_calls().size(), 1u);
    NdisFreeSharedMemory(adapter_, a.handle);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 5), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(provider.queue_events(), (Events{{4, true}, {5, true}, {5, false}}));
    EXPECT_EQ(log_.size(), 0u);
}

// host.h: ndisshm_adapter_destroy "frees every queue", and a provider's detach_queue is called when "a
// queue of the adapter ... goes (after its blocks are freed)".
TEST_F(Routing, HostOpsProviderIsToldWhenTheQueuesGoWithTheirAdapter) {
    NDIS_HANDLE binding = new_binding(adapter_, "xdp");
    ASSERT_EQ(ndisshm_queue_create(binding, 4), NDIS_STATUS_SUCCESS);
    TestProvider& provider = new_provider();
    const ndisshm_provider_ops ops = provider.ops();
    ASSERT_EQ(ndisshm_binding_register_provider(binding, &ops), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(binding, 6), NDIS_STATUS_SUCCESS);
    ndisshm_adapter_destroy(adapter_);
    adapter_ = nullptr;
    const auto events = provider.queue_events();
    EXPECT_EQ(std::count(events.begin(), events.end(), std::make_pair(NDIS_RECEIVE_QUEUE_ID{4}, false)), 1);
    EXPECT_EQ(std::count(events.begin(), events.end(), std::make_pair(NDIS_RECEIVE_QUEUE_ID{6}, false)), 1);
}

// host.h: a queue goes from a provider "after its blocks are freed", also when another provider takes
// the queue over. Set-up of both tests below: the adapter's provider ("miniport") serves queue 4 of a
// binding that has no provider yet and holds a block of it (`held`), when the binding registers its own
// ("vswitch"): the new one serves the queue at once (spec section 7).
class TakeOver : public NdisTest {
protected:
    using Events = std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, bool>>;
    void SetUp() override {
        NdisTest::SetUp();
        miniport_ = &new_provider();
        vswitch_ = &new_provider();
        const ndisshm_provider_ops miniport_ops = miniport_->ops();
        ASSERT_EQ(ndisshm_binding_register_provider(adapter_, &miniport_ops), NDIS_STATUS_SUCCESS);
        binding_ = new_binding(adapter_, "vswitch");
        ASSERT_EQ(ndisshm_queue_create(binding_, 4), NDIS_STATUS_SUCCESS);
        held_ = allocate(adapter_, PAGE_SIZE, 4);
        ASSERT_TRUE(held_.ok());
        ASSERT_EQ(miniport_->live(), 1u);
        const ndisshm_provider_ops vswitch_ops = vswitch_->ops();
        ASSERT_EQ(ndisshm_binding_register_provider(binding_, &vswitch_ops), NDIS_STATUS_SUCCESS);
    }
    TestProvider* miniport_ = nullptr;
    TestProvider* vswitch_ = nullptr;
    NDIS_HANDLE binding_ = nullptr;
    Alloc held_ = Alloc(PAGE_SIZE, 4, 4, NdisSharedMemoryUsageReceive, 0);
};

// The old provider hears detach_queue only when the queue goes, and its block still frees through it.
TEST_F(TakeOver, ATakenOverProviderHearsOfItsQueueOnlyAfterItsBlocksGo) {
    EXPECT_EQ(vswitch_->queue_events(), (Events{{4, true}}));
    EXPECT_EQ(miniport_->queue_events(), (Events{{4, true}})) << "told while its block of the queue is live";
    Alloc fresh = allocate(adapter_, PAGE_SIZE, 4);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(vswitch_->live(), 1u) << "the queue's new allocations go to the provider that serves it now";

    NdisFreeSharedMemory(adapter_, held_.handle);
    NdisFreeSharedMemory(adapter_, fresh.handle);
    EXPECT_EQ(miniport_->free_calls().size(), 1u) << "a block frees through the provider that made it";
    EXPECT_EQ(vswitch_->free_calls().size(), 1u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 4), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(miniport_->queue_events(), (Events{{4, true}, {4, false}}));
    EXPECT_EQ(vswitch_->queue_events(), (Events{{4, true}, {4, false}}));
    EXPECT_EQ(miniport_->detached_with_live_blocks(), 0u);
    EXPECT_EQ(vswitch_->detached_with_live_blocks(), 0u);
    EXPECT_EQ(log_.size(), 0u);
}

// The take-over undone: the binding goes while the miniport's provider still holds its block of the
// queue, so the queue comes back to a provider that was never told it had left: it hears nothing either way
// until the queue goes.
TEST_F(TakeOver, AProviderThatGetsItsQueueBackBeforeItsBlocksGoHearsNothing) {
    ndisshm_binding_destroy(binding_);  // it has no block: no report
    EXPECT_EQ(vswitch_->queue_events(), (Events{{4, true}, {4, false}}));
    EXPECT_EQ(miniport_->queue_events(), (Events{{4, true}}));
    Alloc again = allocate(adapter_, PAGE_SIZE, 4);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(miniport_->live(), 2u) << "the queue is the miniport's again, and so its provider's";

    NdisFreeSharedMemory(adapter_, held_.handle);
    NdisFreeSharedMemory(adapter_, again.handle);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 4), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(miniport_->queue_events(), (Events{{4, true}, {4, false}}));
    EXPECT_EQ(miniport_->detached_with_live_blocks(), 0u);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Routing, FreeUsesTheProviderThatMadeTheBlockAcrossAdapters) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    TestProvider& p0 = provide(adapter_, "vswitch0");
    TestProvider& p1 = provide(eth1, "vswitch1");
    Alloc a0 = allocate(adapter_, PAGE_SIZE);
    Alloc a1 = allocate(eth1, PAGE_SIZE);
    ASSERT_TRUE(a0.ok() && a1.ok());
    NdisFreeSharedMemory(eth1, a1.handle);
    ASSERT_EQ(p1.free_calls().size(), 1u);
    EXPECT_EQ(p1.free_calls()[0].context, p1.context_of(0));
    EXPECT_TRUE(p0.free_calls().empty());
    NdisFreeSharedMemory(adapter_, a0.handle);
    ASSERT_EQ(p0.free_calls().size(), 1u);
    EXPECT_EQ(p0.free_calls()[0].context, p0.context_of(0));
}

}  // namespace
}  // namespace ndisshm::test
