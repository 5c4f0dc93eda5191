// Stress: the per-CPU books of one adapter (src/core/books.hpp) while its caps
// are set and removed and its statistics read, all at once.
//
// Threads allocate and free on two queues; a controller thread meanwhile
// turns the adapter's and a queue's caps on and off and reads the books, then,
// halfway through the threads' work, sets both caps for good. Each reading
// must be consistent in itself (a statistics call locks every book), and once
// the threads are done the caps must still know exactly what is outstanding,
// without being set again (which would count afresh): a cap's worth fits, one
// page more does not. A charge that drifted (a free not taken off, an
// allocation in flight while its cap came or went counted twice or never)
// fails one or the other.
//
// Bounded by iteration counts (never by time), small enough for TSan/ASan.
#include <gtest/gtest.h>

#include <random>

#include "stress/stress_support.hpp"

namespace ndisshm::test {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kAdapterCap = 64 * kPage;
constexpr uint64_t kQueueCap = 24 * kPage;
constexpr NDIS_RECEIVE_QUEUE_ID kCappedQueue = 1;

TEST(BooksStress, CapsComingAndGoingUnderLoadLeaveEveryChargeAndPeakExact) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    NDIS_HANDLE adapter = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "books-nic", &adapter), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(adapter, kCappedQueue), NDIS_STATUS_SUCCESS);

    Failures failures;
    std::atomic<int> running{kThreads};
    std::atomic<uint64_t> successes{0}, refused{0}, done{0};
    auto worker = [&](int tid) {
        std::mt19937_64 rng(0xb00c0000u + static_cast<unsigned>(tid));
        std::vector<NDIS_HANDLE> held;
        for (int i = 0; i < kIterations / 2; ++i) {
            if (held.size() < 8 && (held.empty() || rng() % 2 == 0)) {
                const NDIS_RECEIVE_QUEUE_ID q = rng() % 2 == 0 ? NDIS_DEFAULT_RECEIVE_QUEUE_ID : kCappedQueue;
                const auto length = static_cast<ULONG>(kPage * (1 + rng() % 8));
                Allocation a = allocate(adapter, q, NdisSharedMemoryUsageReceive, length);
                if (a.status == NDIS_STATUS_SUCCESS) {
                    held.push_back(a.handle);
                    successes.fetch_add(1);
                } else if (a.status == NDIS_STATUS_RESOURCES) {
                    refused.fetch_add(1);
                } else {
                    failures.add("allocation failed with " + std::to_string(a.status));
                }
            } else {
                const size_t k = rng() % held.size();
                NdisFreeSharedMemory(adapter, held[k]);
                held[k] = held.back();
                held.pop_back();
            }
            done.fetch_add(1);
        }
        for (NDIS_HANDLE h : held) NdisFreeSharedMemory(adapter, h);
        running.fetch_sub(1);
    };
    auto controller = [&] {
        std::mt19937_64 rng(0xc0117011u);
        uint64_t readings = 0;
        bool fixed = false;
        while (running.load() > 0 || readings < 10) {
            ++readings;
            if (!fixed && done.load() >= uint64_t{kThreads} * (kIterations / 2) / 2) {
                // From here on the caps stay: what they charge must come out exact at the end.
                ndisshm_adapter_set_limit(adapter, kAdapterCap);
                ndisshm_queue_set_limit(adapter, kCappedQueue, kQueueCap);
                fixed = true;
            } else if (!fixed) {
                ndisshm_adapter_set_limit(adapter, rng() % 3 == 0 ? 0 : kAdapterCap);
                ndisshm_queue_set_limit(adapter, kCappedQueue, rng() % 3 == 0 ? 0 : kQueueCap);
            }
            ndisshm_adapter_stats s{};
            if (ndisshm_adapter_get_stats(adapter, &s) != NDIS_STATUS_SUCCESS)
                failures.add("adapter stats refused");
            const ndisshm_usage_stats& t = s.total;
            const ndisshm_usage_stats& r = s.by_usage[NdisSharedMemoryUsageReceive];
            if (t.blocks != r.blocks || t.bytes != r.bytes || t.allocations != r.allocations)
                failures.add("the total and the one usage in use disagree in one reading");
            if (t.allocations - t.frees != t.blocks)
                failures.add("allocations - frees != blocks outstanding");
            if (t.peak_blocks < t.blocks || t.peak_bytes < t.bytes)
                failures.add("a peak below what is outstanding");
            ndisshm_usage_stats q{};
            if (ndisshm_queue_get_stats(adapter, kCappedQueue, &q) != NDIS_STATUS_SUCCESS)
                failures.add("queue stats refused");
            if (q.peak_blocks < q.blocks || q.peak_bytes < q.bytes)
                failures.add("a queue's peak below its blocks");
            std::this_thread::yield();
        }
    };

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
    threads.emplace_back(controller);
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.count.load(), 0u) << failures.first;
    EXPECT_GT(successes.load(), 0u);

    const ndisshm_adapter_stats s = expect_books_settled(adapter, successes.load(), refused.load());
    EXPECT_LE(s.total.peak_bytes, uint64_t{kThreads} * 8 * 8 * kPage)
        << "no peak above what the threads can hold";

    // Nothing is outstanding: each cap's worth must fit exactly, and a page more must not. The caps
    // are the ones set halfway, charged ever since: not set again (that would count afresh).
    auto fill = [&](NDIS_RECEIVE_QUEUE_ID queue, uint64_t cap) {
        std::vector<NDIS_HANDLE> held;
        for (uint64_t used = 0; used < cap; used += 4 * kPage) {
            Allocation a =
                allocate(adapter, queue, NdisSharedMemoryUsageReceive, static_cast<ULONG>(4 * kPage));
            EXPECT_EQ(a.status, NDIS_STATUS_SUCCESS) << "queue " << queue << ": " << used << " of " << cap;
            if (a.status == NDIS_STATUS_SUCCESS) held.push_back(a.handle);
        }
        EXPECT_EQ(allocate(adapter, queue, NdisSharedMemoryUsageReceive, static_cast<ULONG>(kPage)).status,
                  NDIS_STATUS_RESOURCES)
            << "queue " << queue << ": one page over the cap";
        for (NDIS_HANDLE h : held) NdisFreeSharedMemory(adapter, h);
    };
    EXPECT_EQ(s.limit_bytes, kAdapterCap);
    fill(kCappedQueue, kQueueCap);
    fill(NDIS_DEFAULT_RECEIVE_QUEUE_ID, kAdapterCap);

    EXPECT_EQ(all_violations(rt), 0u);
    ndisshm_runtime_destroy(rt);
}

}  // namespace

}  // namespace ndisshm::test
