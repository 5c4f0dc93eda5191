// Stress: many threads allocating and freeing shared memory on one adapter.
//
// Two providers behind the same NDIS calls:
//  - a counting provider of our own, registered the NDIS way
//    (NdisSetOptionalHandlers on a provider binding), which remembers every
//    context it ever handed out and counts how often each comes back;
//  - the default (memfd arena) provider, whose blocks are filled whole by
//    their owner and checked whole before they are freed, so two live blocks
//    that overlap, or a block that does not arrive zeroed, cannot go unseen.
//
// Bounded by iteration counts (never by time), small enough for TSan/ASan.
#include <gtest/gtest.h>
#include "stress/stress_support.hpp"

namespace ndisshm::test {

namespace {

TEST(AllocateFreeStress, ManyThreadsAllocateAndFreeOnOneAdapterEveryContextFreedOnce) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    const uint64_t global_before = ndisshm_global_violation_count();
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "stress-nic", &adapter), NDIS_STATUS_SUCCESS);
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
            ASSERT_EQ(ndisshm_queue_create(adapter, q), NDIS_STATUS_SUCCESS);
        }
    }
    ASSERT_EQ(ndisshm_binding_create(adapter, "counting-vswitch", &binding), NDIS_STATUS_SUCCESS);
    TestProvider provider;
    make_stress_provider(provider);
    // Registered with the adapter's own handle: it serves queue 0 and the miniport's queues
    // (the binding, registered for nothing, stays to show it changes nothing).
    ASSERT_EQ(provider.register_on(adapter), NDIS_STATUS_SUCCESS);

    Failures failures;
    std::atomic<uint64_t> successes{0}, refused{0}, frees{0};
    std::atomic<uint64_t> per_usage_allocs[NdisSharedMemoryUsageMax] = {};

    auto worker = [&](int tid) {
        std::mt19937_64 rng(0x5eed0000u + static_cast<unsigned>(tid));
        struct Held {
            NDIS_HANDLE handle;
            NDIS_HANDLE ctx;
            unsigned char* va;
            ULONG length;
            uint64_t stamp;
        };
        std::vector<Held> held;
        size_t target = 1;
        uint64_t serial = 0;
        auto release = [&](size_t i) {
            Held h = held[i];
            held[i] = held.back();
            held.pop_back();
            uint64_t head = 0, tail = 0;
            std::memcpy(&head, h.va, sizeof(head));
            std::memcpy(&tail, h.va + h.length - sizeof(tail), sizeof(tail));
            if (head != h.stamp || tail != ~h.stamp) failures.add("block contents changed while it was live");
            TestProvider::expect_free(h.ctx);
            NdisFreeSharedMemory(adapter, h.handle);
            TestProvider::expect_free(nullptr);
            if (provider.times_freed(h.ctx) != 1)
                failures.add("NdisFreeSharedMemory did not free the block's own context");
            frees.fetch_add(1);
        };
        for (int it = 0; it < kIterations; ++it) {
            if (it % 64 == 0) target = 1 + rng() % 32;  // how many to keep outstanding for a while
            if (held.size() < target || (held.size() == target && rng() % 2 == 0)) {
                const ULONG length = kMinBytes + static_cast<ULONG>(rng() % (kMaxBytes - kMinBytes + 1));
                const auto usage = static_cast<NDIS_SHARED_MEMORY_USAGE>(rng() % NdisSharedMemoryUsageMax);
                const NDIS_RECEIVE_QUEUE_ID queue = kQueues[rng() % std::size(kQueues)];
                const ULONG flags = rng() % 4 == 0 ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
                TestProvider::clear_last_handed_out();
                Allocation a = allocate(adapter, queue, usage, length, flags, MM_ANY_NODE_OK);
                NDIS_HANDLE ctx = TestProvider::last_handed_out();
                TestProvider::Held block;
                const bool live = ctx != nullptr && provider.find_live(ctx, &block);
                if (a.status == NDIS_STATUS_RESOURCES && ctx == nullptr) {
                    refused.fetch_add(1);
                    continue;
                }
                if (a.status != NDIS_STATUS_SUCCESS) {
                    failures.add(std::string("NdisAllocateSharedMemory: ") + ndisshm_status_name(a.status));
                    continue;
                }
                if (!live || a.va != block.memory)
                    failures.add("VirtualAddress is not the provider's");
                else if (block.length != length || block.queue != queue || block.usage != static_cast<uint32_t>(usage) ||
                         block.contiguous != (flags != 0))
                    failures.add("the provider saw other parameters than the caller gave");
                if (a.shared_memory_handle != a.handle)
                    failures.add("SharedMemoryHandle != *pAllocationHandle");
                if (a.first_address != reinterpret_cast<uintptr_t>(a.va)) failures.add("Elements[0].Address");
                if (a.described != length) failures.add("SG list does not describe Length bytes");
                const ULONG want_elements =
                    flags != 0 ? 1
                               : static_cast<ULONG>((length + kSegmentBytes - 1) / kSegmentBytes);
                if (a.elements != want_elements)
                    failures.add("NumberOfElements is not what the provider wrote");
                if (ctx == nullptr) continue;
                const uint64_t stamp = (uint64_t(tid) << 56) | ++serial;
                std::memcpy(a.va, &stamp, sizeof(stamp));
                const uint64_t tail = ~stamp;
                std::memcpy(a.va + length - sizeof(tail), &tail, sizeof(tail));
                held.push_back({a.handle, ctx, a.va, length, stamp});
                successes.fetch_add(1);
                per_usage_allocs[usage].fetch_add(1);
            } else if (!held.empty()) {
                release(rng() % held.size());
            }
        }
        while (!held.empty()) release(held.size() - 1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
    for (auto& t : threads) t.join();

    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    EXPECT_GT(successes.load(), uint64_t{kThreads} * kIterations / 4);
    EXPECT_EQ(refused.load(), provider.injected_failures());
    EXPECT_EQ(frees.load(), successes.load());

    // The provider's view: every context handed out came back exactly once,
    // each to the thread that freed that block, nothing unknown.
    EXPECT_EQ(provider.handed_out(), successes.load());
    EXPECT_EQ(provider.contexts(), successes.load());
    EXPECT_EQ(provider.freed(), successes.load());
    EXPECT_EQ(provider.contexts_not_freed_exactly_once(), 0u);
    EXPECT_EQ(provider.double_frees(), 0u);
    EXPECT_EQ(provider.unknown_frees(), 0u);
    EXPECT_EQ(provider.unexpected_frees(), 0u);
    EXPECT_EQ(provider.wrong_provider_context(), 0u);

    // NDIS's books.
    const ndisshm_adapter_stats stats = expect_books_settled(adapter, successes.load(), refused.load());
    EXPECT_GE(stats.total.peak_blocks, 1u);
    EXPECT_LE(stats.total.peak_blocks, uint64_t{kThreads} * 33);  // a thread holds at most target + 1
    EXPECT_EQ(stats.has_provider, 1);
    for (int u = 0; u < NdisSharedMemoryUsageMax; ++u) {
        EXPECT_EQ(stats.by_usage[u].blocks, 0u) << "usage " << u;
        EXPECT_EQ(stats.by_usage[u].allocations, per_usage_allocs[u].load()) << "usage " << u;
        EXPECT_EQ(stats.by_usage[u].frees, per_usage_allocs[u].load()) << "usage " << u;
    }
    uint64_t queue_allocs = 0;
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        ndisshm_usage_stats qs{};
        ASSERT_EQ(ndisshm_queue_get_stats(adapter, q, &qs), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(qs.blocks, 0u) << "queue " << q;
        EXPECT_EQ(qs.allocations, qs.frees) << "queue " << q;
        queue_allocs += qs.allocations;
    }
    EXPECT_EQ(queue_allocs, successes.load());
    EXPECT_EQ(all_violations(rt), 0u);

    // Tearing down finds nothing left: no leak reports, no further frees.
    ndisshm_binding_destroy(binding);
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
            EXPECT_EQ(ndisshm_queue_free(adapter, q), NDIS_STATUS_SUCCESS);
        }
    }
    ndisshm_adapter_destroy(adapter);
    EXPECT_EQ(all_violations(rt), 0u);
    EXPECT_EQ(provider.freed(), successes.load());
    EXPECT_EQ(ndisshm_global_violation_count(), global_before);
    ndisshm_runtime_destroy(rt);
}

// ---------------------------------------------------------------------------
// The default provider under the same load. Every live block is recorded in a
// range map (an overlap with another live block fails at once), arrives
// zeroed, and is filled whole with its owner's (thread, serial) stamp and
// checked whole before it is freed.

// True when all `bytes` at p are zero. memcmp against itself shifted by one
// (a single intercepted range access under the sanitizers, not a loop).

struct ViolationTally {
    std::atomic<uint64_t> by_kind[NDISSHM_VIOLATION_KIND_COUNT] = {};
    static void callback(void* context, const ndisshm_violation* v) {
        auto* self = static_cast<ViolationTally*>(context);
        if (v->kind > 0 && v->kind < NDISSHM_VIOLATION_KIND_COUNT) self->by_kind[v->kind].fetch_add(1);
    }
};

TEST(AllocateFreeStress, ConcurrentFreesOfTheSameHandlesReachTheProviderExactlyOnce) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    ViolationTally tally;
    ndisshm_runtime_set_violation_callback(rt, &ViolationTally::callback, &tally);
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "double-free-nic", &adapter), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_create(adapter, "counting-vswitch", &binding), NDIS_STATUS_SUCCESS);
    TestProvider provider;
    make_stress_provider(provider);
    // Registered with the adapter's own handle: it serves queue 0 and the miniport's queues
    // (the binding, registered for nothing, stays to show it changes nothing).
    ASSERT_EQ(provider.register_on(adapter), NDIS_STATUS_SUCCESS);

    constexpr int kRounds = 240 / kSlowdown;
    constexpr int kPerRound = 8;
    struct Published {
        NDIS_HANDLE handle;
        NDIS_HANDLE ctx;
    };
    std::vector<Published> round(kPerRound);
    std::barrier sync(kThreads + 1);
    Failures failures;
    uint64_t allocated = 0;

    auto freer = [&](int tid) {
        std::mt19937_64 rng(0xd0b1e000u + static_cast<unsigned>(tid));
        std::vector<int> order(kPerRound);
        for (int r = 0; r < kRounds; ++r) {
            sync.arrive_and_wait();  // the round's blocks are published
            for (int i = 0; i < kPerRound; ++i) order[i] = i;
            std::shuffle(order.begin(), order.end(), rng);
            for (int i : order) {
                TestProvider::expect_free(round[i].ctx);
                NdisFreeSharedMemory(adapter, round[i].handle);
                TestProvider::expect_free(nullptr);
            }
            sync.arrive_and_wait();  // every thread has freed every block
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(freer, t);
    for (int r = 0; r < kRounds; ++r) {
        for (int i = 0; i < kPerRound; ++i) {
            Allocation a;
            do {  // the provider refuses every 61st call on purpose
                TestProvider::clear_last_handed_out();
                a = allocate(adapter, NDIS_DEFAULT_RECEIVE_QUEUE_ID, NdisSharedMemoryUsageReceive,
                             2 * PAGE_SIZE, 0, MM_ANY_NODE_OK);
            } while (a.status == NDIS_STATUS_RESOURCES);
            if (a.status != NDIS_STATUS_SUCCESS || TestProvider::last_handed_out() == nullptr) {
                failures.add(std::string("allocation: ") + ndisshm_status_name(a.status));
                round[i] = {nullptr,
                            nullptr};  // the test has failed; the NULL frees add garbage-handle reports
                continue;
            }
            round[i] = {a.handle, TestProvider::last_handed_out()};
            ++allocated;
        }
        sync.arrive_and_wait();
        sync.arrive_and_wait();
        for (int i = 0; i < kPerRound; ++i)
            if (round[i].ctx != nullptr && provider.times_freed(round[i].ctx) != 1)
                failures.add(
                    "a block freed by several threads at once did not reach the provider exactly once");
    }
    for (auto& t : threads) t.join();

    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    EXPECT_EQ(allocated, uint64_t{kRounds} * kPerRound);
    EXPECT_EQ(provider.freed(), allocated);
    EXPECT_EQ(provider.contexts_not_freed_exactly_once(), 0u);
    EXPECT_EQ(provider.double_frees(), 0u);
    EXPECT_EQ(provider.unknown_frees(), 0u);
    EXPECT_EQ(provider.unexpected_frees(), 0u);
    const uint64_t losers = allocated * (kThreads - 1);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt, NDISSHM_VIOLATION_DOUBLE_FREE), losers);
    EXPECT_EQ(tally.by_kind[NDISSHM_VIOLATION_DOUBLE_FREE].load(), losers);
    EXPECT_EQ(all_violations(rt), losers) << "only double frees were expected";
    ndisshm_adapter_stats stats{};
    ASSERT_EQ(ndisshm_adapter_get_stats(adapter, &stats), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats.total.blocks, 0u);
    EXPECT_EQ(stats.total.allocations, allocated);
    EXPECT_EQ(stats.total.frees, allocated);
    ndisshm_binding_destroy(binding);
    ndisshm_adapter_destroy(adapter);
    EXPECT_EQ(all_violations(rt), losers) << "teardown found something left";
    ndisshm_runtime_destroy(rt);
}

}  // namespace

}  // namespace ndisshm::test
