// Stress: the host objects' life cycles under load.
//
//  - Threads allocate on different adapters of one runtime at once, while one
//    more thread creates and frees receive queues, creates and destroys
//    provider bindings (and whole adapters with a provider of their own), on
//    the same adapters but never on a queue or handle another thread uses.
//  - A provider binding that detaches while the miniport frees a block: once
//    ndisshm_binding_destroy has returned, the filter may tear its provider
//    down, so NDIS must no longer be inside that provider's handlers.
//  - A queue freed with a block outstanding while another thread allocates on
//    it: no block may be left linked to the destroyed queue.
//
// Bounded by iteration counts (never by time), small enough for TSan/ASan.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "ndis/ndis_shm.h"
#include "ndisshm/host.h"
#include "stress/stress_support.hpp"

namespace ndisshm::test {

namespace {

// The tests' provider keeps the ledger: each context it hands out is counted
// when it comes back, so "freed exactly once" can be checked at the end, and
// it knows which memory is its own. Registered the NDIS way.
bool owns(const TestProvider& provider, const void* va) { return provider.owns_memory(va); }
uint64_t foreign_frees(const TestProvider& provider) {
    return provider.unknown_frees() + provider.wrong_provider_context();
}

TEST(LifecycleStress, AdaptersInParallelWhileQueuesAndBindingsComeAndGo) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    const uint64_t global_before = ndisshm_global_violation_count();
    constexpr int kAdapters = 3;
    constexpr NDIS_RECEIVE_QUEUE_ID kSteadyQueues[] = {NDIS_DEFAULT_RECEIVE_QUEUE_ID, 1, 2, 3};
    constexpr int kMinAllocatorIterations = 5000 / kSlowdown;
    constexpr int kMaxAllocatorIterations = 50 * kMinAllocatorIterations;
    constexpr int kChurnRounds = 2000 / kSlowdown;

    NDIS_HANDLE adapters[kAdapters] = {};
    for (int i = 0; i < kAdapters; ++i) {
        ASSERT_EQ(ndisshm_adapter_create(rt, ("nic" + std::to_string(i)).c_str(), &adapters[i]),
                  NDIS_STATUS_SUCCESS);
        for (NDIS_RECEIVE_QUEUE_ID q : kSteadyQueues) {
            if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
                ASSERT_EQ(ndisshm_queue_create(adapters[i], q), NDIS_STATUS_SUCCESS);
            }
        }
    }
    // Adapter 1 is served by a provider of ours for the whole test, registered
    // with the adapter's own handle (queue 0 and its own queues); 0 and 2 by
    // NDIS's own memory.
    TestProvider steady_provider;
    ASSERT_EQ(steady_provider.register_on(adapters[1]), NDIS_STATUS_SUCCESS);

    Failures failures;
    std::atomic<bool> churn_done{false};
    std::atomic<uint64_t> allocations[kAdapters] = {};
    std::atomic<uint64_t> churn_allocations[kAdapters] = {};

    auto allocator = [&](int idx) {
        NDIS_HANDLE adapter = adapters[idx];
        std::mt19937_64 rng(0xada0000u + static_cast<unsigned>(idx));
        struct Held {
            NDIS_HANDLE handle;
            unsigned char* va;
            ULONG length;
            uint64_t stamp;
        };
        std::vector<Held> held;
        uint64_t serial = 0;
        size_t target = 1;
        auto release = [&](size_t i) {
            Held h = held[i];
            held[i] = held.back();
            held.pop_back();
            uint64_t head = 0, tail = 0;
            std::memcpy(&head, h.va, sizeof(head));
            std::memcpy(&tail, h.va + h.length - sizeof(tail), sizeof(tail));
            if (head != h.stamp || tail != ~h.stamp) failures.add("a live block was overwritten");
            NdisFreeSharedMemory(adapter, h.handle);
        };
        for (int it = 0; it < kMaxAllocatorIterations && (it < kMinAllocatorIterations || !churn_done.load());
             ++it) {
            if (it % 64 == 0) target = 1 + rng() % 16;
            if (held.size() < target || (held.size() == target && rng() % 2 == 0)) {
                const ULONG length = 4096 + static_cast<ULONG>(rng() % (64 * 1024));
                const auto usage = static_cast<NDIS_SHARED_MEMORY_USAGE>(rng() % NdisSharedMemoryUsageMax);
                const NDIS_RECEIVE_QUEUE_ID queue = kSteadyQueues[rng() % std::size(kSteadyQueues)];
                Allocation a = allocate(adapter, queue, usage, length);
                if (a.status != NDIS_STATUS_SUCCESS) {
                    failures.add("nic" + std::to_string(idx) + ": " + ndisshm_status_name(a.status));
                    continue;
                }
                if (idx == 1 && !owns(steady_provider, a.va))
                    failures.add("nic1's block is not its provider's");
                const uint64_t stamp = (uint64_t(idx) << 56) | ++serial;
                std::memcpy(a.va, &stamp, sizeof(stamp));
                const uint64_t tail = ~stamp;
                std::memcpy(a.va + length - sizeof(tail), &tail, sizeof(tail));
                held.push_back({a.handle, a.va, length, stamp});
                allocations[idx].fetch_add(1);
            } else if (!held.empty()) {
                release(rng() % held.size());
            }
        }
        while (!held.empty()) release(held.size() - 1);
    };

    // Queues and bindings come and go on the same adapters (never a queue or
    // binding the allocators use), and whole adapters with their own provider.
    auto churn = [&] {
        std::mt19937_64 rng(0xc4u);
        for (int k = 0; k < kChurnRounds; ++k) {
            const int j = k % kAdapters;
            NDIS_HANDLE adapter = adapters[j];
            const NDIS_RECEIVE_QUEUE_ID qid = 100 + static_cast<NDIS_RECEIVE_QUEUE_ID>(k);
            if (ndisshm_queue_create(adapter, qid) != NDIS_STATUS_SUCCESS) {
                failures.add("ndisshm_queue_create failed");
                continue;
            }
            // As a VMQ miniport does once the queue is allocated: Receive, or
            // lookahead + post-lookahead blocks.
            std::vector<NDIS_HANDLE> blocks;
            const bool split = rng() % 2 == 0;
            const NDIS_SHARED_MEMORY_USAGE usages[] = {
                split ? NdisSharedMemoryUsageReceiveLookahead : NdisSharedMemoryUsageReceive,
                split ? NdisSharedMemoryUsageReceivePostLookahead : NdisSharedMemoryUsageReceive};
            for (auto usage : usages) {
                Allocation a = allocate(adapter, qid, usage, 4096 * (1 + static_cast<ULONG>(rng() % 8)));
                if (a.status != NDIS_STATUS_SUCCESS) {
                    failures.add(std::string("allocation on a new queue: ") + ndisshm_status_name(a.status));
                    continue;
                }
                if (j == 1 && !owns(steady_provider, a.va))
                    failures.add("new queue of nic1 not served by its provider");
                a.va[0] = 0x5a;
                blocks.push_back(a.handle);
                churn_allocations[j].fetch_add(1);
            }
            ndisshm_usage_stats qs{};
            if (ndisshm_queue_get_stats(adapter, qid, &qs) != NDIS_STATUS_SUCCESS ||
                qs.blocks != blocks.size())
                failures.add("queue stats do not count the new queue's blocks");
            for (NDIS_HANDLE h : blocks) NdisFreeSharedMemory(adapter, h);
            if (ndisshm_queue_get_stats(adapter, qid, &qs) != NDIS_STATUS_SUCCESS || qs.blocks != 0 ||
                qs.frees != blocks.size())
                failures.add("queue stats after its blocks were freed");
            if (ndisshm_queue_free(adapter, qid) != NDIS_STATUS_SUCCESS)
                failures.add("ndisshm_queue_free failed");
            if (ndisshm_queue_get_stats(adapter, qid, &qs) != NDIS_STATUS_INVALID_PARAMETER)
                failures.add("a freed queue still has stats");

            // A filter that binds and unbinds without providing memory.
            NDIS_HANDLE lwf = nullptr;
            if (ndisshm_binding_create(adapter, "lwf", &lwf) != NDIS_STATUS_SUCCESS) {
                failures.add("ndisshm_binding_create failed");
            } else {
                ndisshm_binding_destroy(lwf);
            }

            if (k % 4 != 0) continue;
            // An adapter of its own, with a provider that comes and goes.
            NDIS_HANDLE nic = nullptr, vswitch = nullptr;
            // The switch's binding allocates queue 1: its provider serves it.
            if (ndisshm_adapter_create(rt, "churn-nic", &nic) != NDIS_STATUS_SUCCESS ||
                ndisshm_binding_create(nic, "churn-vswitch", &vswitch) != NDIS_STATUS_SUCCESS ||
                ndisshm_queue_create(vswitch, 1) != NDIS_STATUS_SUCCESS) {
                failures.add("setting up a churn adapter failed");
                if (nic != nullptr) ndisshm_adapter_destroy(nic);
                continue;
            }
            TestProvider provider;
            if (provider.register_on(vswitch) != NDIS_STATUS_SUCCESS)
                failures.add("NdisSetOptionalHandlers failed");
            std::vector<NDIS_HANDLE> mine;
            for (int b = 0; b < 3; ++b) {
                Allocation a = allocate(nic, 1, b % 2 == 0 ? NdisSharedMemoryUsageReceive : NdisSharedMemoryUsageOther,
                                        8192);
                if (a.status != NDIS_STATUS_SUCCESS || !owns(provider, a.va)) {
                    failures.add("churn adapter's block not from its provider");
                    if (a.status == NDIS_STATUS_SUCCESS) NdisFreeSharedMemory(nic, a.handle);
                    continue;
                }
                mine.push_back(a.handle);
            }
            for (NDIS_HANDLE h : mine) NdisFreeSharedMemory(nic, h);
            ndisshm_binding_destroy(vswitch);
            if (provider.handed_out() != mine.size() || provider.contexts_not_freed_exactly_once() != 0 ||
                foreign_frees(provider) != 0)
                failures.add("churn provider: a context not freed exactly once");
            // Without a provider the adapter is served by the default one.
            ndisshm_adapter_stats st{};
            if (ndisshm_adapter_get_stats(nic, &st) != NDIS_STATUS_SUCCESS || st.has_provider != 0 ||
                st.bindings != 0)
                failures.add("churn adapter still has its binding after ndisshm_binding_destroy");
            Allocation a = allocate(nic, 1, NdisSharedMemoryUsageReceive, 4096);
            if (a.status != NDIS_STATUS_SUCCESS || owns(provider, a.va)) {
                failures.add("churn adapter without a provider");
            } else {
                NdisFreeSharedMemory(nic, a.handle);
            }
            if (ndisshm_queue_free(nic, 1) != NDIS_STATUS_SUCCESS) failures.add("churn queue free");
            ndisshm_adapter_destroy(nic);
        }
        churn_done.store(true);
    };

    std::vector<std::thread> threads;
    for (int i = 0; i < kAdapters; ++i) threads.emplace_back(allocator, i);
    threads.emplace_back(churn);
    for (auto& t : threads) t.join();

    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    for (int i = 0; i < kAdapters; ++i) {
        ndisshm_adapter_stats st{};
        ASSERT_EQ(ndisshm_adapter_get_stats(adapters[i], &st), NDIS_STATUS_SUCCESS);
        const uint64_t expected = allocations[i].load() + churn_allocations[i].load();
        EXPECT_GE(allocations[i].load(), uint64_t{kMinAllocatorIterations} / 4) << "nic" << i;
        EXPECT_EQ(st.total.blocks, 0u) << "nic" << i;
        EXPECT_EQ(st.total.bytes, 0u) << "nic" << i;
        EXPECT_EQ(st.total.allocations, expected) << "nic" << i;
        EXPECT_EQ(st.total.frees, expected) << "nic" << i;
        EXPECT_EQ(st.total.failures, 0u) << "nic" << i;
        EXPECT_EQ(st.queues, std::size(kSteadyQueues)) << "nic" << i;
        EXPECT_EQ(st.bindings, 0u) << "nic" << i;
        EXPECT_EQ(st.has_provider, i == 1 ? 1 : 0) << "nic" << i;
    }
    EXPECT_EQ(steady_provider.handed_out(), allocations[1].load() + churn_allocations[1].load());
    EXPECT_EQ(steady_provider.contexts_not_freed_exactly_once(), 0u);
    EXPECT_EQ(foreign_frees(steady_provider), 0u);
    EXPECT_EQ(all_violations(rt), 0u);

    for (NDIS_HANDLE a : adapters) ndisshm_adapter_destroy(a);
    EXPECT_EQ(all_violations(rt), 0u);
    EXPECT_EQ(ndisshm_global_violation_count(), global_before);
    ndisshm_runtime_destroy(rt);
}

// ---------------------------------------------------------------------------
// A filter detaches (ndisshm_binding_destroy) while the miniport, on another
// thread, frees the last block the filter's provider gave it. The free is
// legitimate and the binding handle is used by nobody else, so no API rule is
// broken. Once ndisshm_binding_destroy returns the filter may free its
// provider context, so NDIS must not be inside FreeSharedMemoryHandler any
// more: destroy has to wait for a free that is already in the provider.
//
// The provider's free handler holds the call open (up to kHold) and looks,
// before returning, whether destroy has already returned.
// The tests' provider, whose free handler holds the call open (up to kHold)
// and looks, before returning, whether destroy has already returned.
struct HoldingProvider : TestProvider {
    static constexpr auto kHold = std::chrono::milliseconds(300);

    HoldingProvider() {
        on_free = [this](NDIS_HANDLE) {
            in_free.store(true);
            const auto until = std::chrono::steady_clock::now() + kHold;
            while (!destroy_returned.load() && std::chrono::steady_clock::now() < until)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            // Still inside NDIS's call into us: destroy must not have returned.
            if (destroy_returned.load()) called_after_detach.store(true);
        };
    }

    std::atomic<bool> in_free{false}, destroy_returned{false}, called_after_detach{false};
};

TEST(LifecycleStressProviderDetach, BindingDestroyDoesNotReturnWhileItsFreeHandlerIsStillRunning) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "nic", &adapter), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_create(adapter, "vswitch", &binding), NDIS_STATUS_SUCCESS);
    auto provider = std::make_unique<HoldingProvider>();
    ASSERT_EQ(provider->register_on(binding), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(binding, 1), NDIS_STATUS_SUCCESS);  // the binding's queue: its provider's
    Allocation a = allocate(adapter, 1, NdisSharedMemoryUsageReceive, PAGE_SIZE);
    ASSERT_EQ(a.status, NDIS_STATUS_SUCCESS);

    // The miniport frees its block; the filter detaches while that free is
    // inside the provider.
    std::thread miniport([&] { NdisFreeSharedMemory(adapter, a.handle); });
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!provider->in_free.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    ASSERT_TRUE(provider->in_free.load());
    ndisshm_binding_destroy(binding);
    provider->destroy_returned.store(true);
    miniport.join();

    EXPECT_FALSE(provider->called_after_detach.load())
        << "ndisshm_binding_destroy returned while NDIS was still inside the provider's "
           "FreeSharedMemoryHandler "
           "(a free that NdisFreeSharedMemory had already unlinked); a filter that frees its provider "
           "context "
           "after detaching would be used after free";
    EXPECT_EQ(provider->times_freed(provider->context_of(0)), 1);
    EXPECT_EQ(provider->bad_frees(), 0);
    // The block was being freed, not left outstanding: no violation.
    EXPECT_EQ(all_violations(rt), 0u);
    ndisshm_adapter_stats st{};
    ASSERT_EQ(ndisshm_adapter_get_stats(adapter, &st), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(st.total.blocks, 0u);
    EXPECT_EQ(st.total.frees, 1u);
    ndisshm_adapter_destroy(adapter);
    ndisshm_runtime_destroy(rt);
}

// ---------------------------------------------------------------------------
// A queue freed with a block still outstanding (a miniport bug the verifier
// reports, then cleans up) while another thread allocates on that queue. The
// runtime's allocation path re-checks the queue when it links the block ("or
// queue was freed during the call"), so it means to survive this. But
// ndisshm_queue_free collects and reclaims the queue's blocks, calling the
// provider's free handler, before it erases the queue in a separate critical
// section: an allocation that links its block in between is left pointing at
// a queue that is then destroyed, and its later free (or the adapter's
// teardown) unlinks it from freed memory.
//
// The provider's free handler, called by the reclaim, lets the other thread's
// allocation run to completion before it returns, which puts that allocation
// in the window deterministically.
struct ReclaimGateProvider : TestProvider {
    ReclaimGateProvider() {
        on_free = [this](NDIS_HANDLE context) {
            if (context == context_of(0) && gate_.load()) {
                // Reclaiming the first block: the other thread allocates now.
                go_.store(true);
                const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
                while (!allocated_.load() && std::chrono::steady_clock::now() < until)
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        };
    }

    std::atomic<bool> gate_{false}, go_{false}, allocated_{false};
};

TEST(LifecycleStressQueueFree, AllocationRacingAQueueFreeNeverLeavesABlockOnTheFreedQueue) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "nic", &adapter), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_create(adapter, "vswitch", &binding), NDIS_STATUS_SUCCESS);
    auto provider = std::make_unique<ReclaimGateProvider>();
    ASSERT_EQ(provider->register_on(binding), NDIS_STATUS_SUCCESS);
    constexpr NDIS_RECEIVE_QUEUE_ID kQueue = 5;
    ASSERT_EQ(ndisshm_queue_create(binding, kQueue), NDIS_STATUS_SUCCESS);

    // The block the miniport forgets to free before it frees the queue.
    Allocation forgotten = allocate(adapter, kQueue, NdisSharedMemoryUsageReceive, PAGE_SIZE);
    ASSERT_EQ(forgotten.status, NDIS_STATUS_SUCCESS);

    Allocation racing;
    std::thread other([&] {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!provider->go_.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
        racing = allocate(adapter, kQueue, NdisSharedMemoryUsageReceive, PAGE_SIZE);
        provider->allocated_.store(true);
    });
    provider->gate_.store(true);
    EXPECT_EQ(ndisshm_queue_free(adapter, kQueue), NDIS_STATUS_SUCCESS);
    other.join();
    ASSERT_TRUE(provider->go_.load()) << "the queue's block was not reclaimed through the provider";
    EXPECT_EQ(provider->times_freed(provider->context_of(0)), 1);
    EXPECT_GE(ndisshm_runtime_violation_count(rt, NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS), 1u);

    ndisshm_usage_stats qs{};
    EXPECT_EQ(ndisshm_queue_get_stats(adapter, kQueue, &qs), NDIS_STATUS_INVALID_PARAMETER)
        << "queue still exists";
    ndisshm_block_info info{};
    const bool dangling = racing.status == NDIS_STATUS_SUCCESS &&
                          ndisshm_block_get_info(adapter, racing.handle, &info) == NDIS_STATUS_SUCCESS;
    EXPECT_FALSE(dangling)
        << "NdisAllocateSharedMemory on queue " << kQueue
        << " succeeded while ndisshm_queue_free was reclaiming that queue, and its block is "
           "still live (queue_id "
        << info.queue_id
        << ") after the queue was destroyed: the block's queue pointer "
           "dangles";
    if (dangling) {
        // Freeing the block (or destroying the adapter, which reclaims it)
        // would unlink it from the destroyed queue: use after free. Leave the
        // runtime as it is rather than corrupt the heap (kept reachable, so
        // LeakSanitizer does not add noise to the failure).
        static ReclaimGateProvider* kept_provider = provider.release();
        static ndisshm_runtime* kept_runtime = rt;
        (void)kept_provider;
        (void)kept_runtime;
        return;
    }
    if (racing.status == NDIS_STATUS_SUCCESS)
        NdisFreeSharedMemory(adapter, racing.handle);  // reclaimed: a double free
    ndisshm_adapter_destroy(adapter);
    ndisshm_runtime_destroy(rt);
}

}  // namespace

}  // namespace ndisshm::test
