// The books of one adapter are kept per CPU (src/core/books.hpp): a call writes
// the book of the CPU it runs on, and a block stays in the book that made it.
// These tests pin each step to a CPU, so blocks are made and freed in
// different books, and check that every figure the C surface reports stays
// exact: counts, peaks, caps, reclaim, record reuse.
//
// They need two CPUs this process may run on, and skip saying so otherwise.
#include <pthread.h>
#include <sched.h>

#include <thread>
#include <utility>
#include <vector>

#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

// The first two CPUs this process may use, or {-1, -1}.
std::pair<int, int> two_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return {-1, -1};
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (!CPU_ISSET(c, &set)) continue;
        if (first < 0) {
            first = c;
        } else {
            return {first, c};
        }
    }
    return {-1, -1};
}

class Books : public NdisTest {
protected:
    void SetUp() override {
        NdisTest::SetUp();
        std::tie(cpu_a_, cpu_b_) = two_cpus();
        if (cpu_b_ < 0) GTEST_SKIP() << "needs two CPUs this process may run on, to put blocks in two books";
    }

    // Runs f on a thread pinned to `cpu`, to the end.
    template <class F>
    void on_cpu(int cpu, F&& f) {
        bool pinned = false;
        std::thread t([&] {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            pinned = pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0 && sched_getcpu() == cpu;
            if (pinned) f();
        });
        t.join();
        ASSERT_TRUE(pinned) << "could not run on CPU " << cpu;
    }

    // Allocates n blocks of `length` on `cpu`, into held.
    void take(int cpu, int n, ULONG length, std::vector<Alloc>& held, ULONG queue = 0) {
        on_cpu(cpu, [&] {
            for (int i = 0; i < n; ++i) {
                held.push_back(allocate(adapter_, length, queue));
                ASSERT_TRUE(held.back().ok());
            }
        });
    }
    // Frees the last n of held on `cpu`.
    void give(int cpu, int n, std::vector<Alloc>& held) {
        on_cpu(cpu, [&] {
            for (int i = 0; i < n; ++i) {
                NdisFreeSharedMemory(adapter_, held.back().handle);
                held.pop_back();
            }
        });
    }
    void expect_figures(uint64_t blocks, uint64_t peak_blocks, ULONG length, const char* step) {
        const auto s = stats(adapter_);
        for (const ndisshm_usage_stats& u : {s.total, s.by_usage[NdisSharedMemoryUsageReceive],
                                             queue_stats(adapter_, NDIS_DEFAULT_RECEIVE_QUEUE_ID)}) {
            EXPECT_EQ(u.blocks, blocks) << step;
            EXPECT_EQ(u.bytes, blocks * length) << step;
            EXPECT_EQ(u.peak_blocks, peak_blocks) << step;
            EXPECT_EQ(u.peak_bytes, peak_blocks * length) << step;
        }
    }

    int cpu_a_ = -1, cpu_b_ = -1;
};

TEST_F(Books, PeaksAreExactWhileTwoCpusBooksGrowAndShrink) {
    constexpr ULONG kLen = 3000;
    std::vector<Alloc> on_a, on_b;
    take(cpu_a_, 3, kLen, on_a);
    expect_figures(3, 3, kLen, "3 on A");
    take(cpu_b_, 2, kLen, on_b);
    expect_figures(5, 5, kLen, "3 on A, 2 on B: both books at once make the peak");
    give(cpu_a_, 3, on_a);
    expect_figures(2, 5, kLen, "A freed its 3");
    take(cpu_b_, 3, kLen, on_b);
    expect_figures(5, 5, kLen, "B took the room A left: 5 at once again, not a new peak");
    take(cpu_b_, 1, kLen, on_b);
    expect_figures(6, 6, kLen, "one more than ever");
    take(cpu_a_, 1, kLen, on_a);
    expect_figures(7, 7, kLen, "and one more on A");
    give(cpu_b_, 6, on_b);
    give(cpu_a_, 1, on_a);
    expect_figures(0, 7, kLen, "all freed");
    EXPECT_EQ(stats(adapter_).total.allocations, 10u);
    EXPECT_EQ(stats(adapter_).total.frees, 10u);
    EXPECT_TRUE(log_.all().empty());
}

TEST_F(Books, ABlockFreedOnAnotherCpuIsCountedOnceAndAFreeAgainIsStillADoubleFree) {
    std::vector<Alloc> held;
    take(cpu_a_, 2, PAGE_SIZE, held);
    const NDIS_HANDLE first = held.front().handle;
    give(cpu_b_, 2, held);
    const auto s = stats(adapter_);
    EXPECT_EQ(s.total.blocks, 0u);
    EXPECT_EQ(s.total.bytes, 0u);
    EXPECT_EQ(s.total.frees, 2u);
    EXPECT_EQ(s.total.peak_blocks, 2u);
    on_cpu(cpu_b_, [&] { NdisFreeSharedMemory(adapter_, first); });
    only_violation(log_, NDISSHM_VIOLATION_DOUBLE_FREE, "NdisFreeSharedMemory");
    EXPECT_EQ(stats(adapter_).total.frees, 2u) << "the double free freed nothing";
}

TEST_F(Books, ACapSetWhileBothCpusHoldBlocksCountsThemAll) {
    std::vector<Alloc> on_a, on_b;
    take(cpu_a_, 3, PAGE_SIZE, on_a);
    take(cpu_b_, 2, PAGE_SIZE, on_b);
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 6 * PAGE_SIZE), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_set_limit(adapter_, NDIS_DEFAULT_RECEIVE_QUEUE_ID, 7 * PAGE_SIZE),
              NDIS_STATUS_SUCCESS);
    take(cpu_a_, 1, PAGE_SIZE, on_a);
    on_cpu(cpu_b_, [&] { EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_RESOURCES); });
    on_cpu(cpu_a_, [&] { EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_RESOURCES); });
    give(cpu_a_, 1, on_b);  // a block of B's book, freed on A
    take(cpu_b_, 1, PAGE_SIZE, on_b);
    // The adapter's cap gone, the queue's (7 pages) is the one that holds.
    ASSERT_EQ(ndisshm_adapter_set_limit(adapter_, 0), NDIS_STATUS_SUCCESS);
    take(cpu_b_, 1, PAGE_SIZE, on_b);
    on_cpu(cpu_a_, [&] { EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_RESOURCES); });
    const auto s = stats(adapter_);
    EXPECT_EQ(s.total.blocks, 7u);
    EXPECT_EQ(s.total.failures, 3u);
    EXPECT_EQ(s.total.peak_bytes, 7u * PAGE_SIZE);
    give(cpu_a_, static_cast<int>(on_a.size()), on_a);
    give(cpu_b_, static_cast<int>(on_b.size()), on_b);
}

TEST_F(Books, AQueueFreedWithBlocksInTwoBooksReclaimsEachOnce) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 1), NDIS_STATUS_SUCCESS);
    TestProvider& provider = provide(adapter_, "vswitch");
    std::vector<Alloc> on_a, on_b;
    take(cpu_a_, 2, PAGE_SIZE, on_a, 1);
    take(cpu_b_, 3, PAGE_SIZE, on_b, 1);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 1), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS).size(), 5u);
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(provider.times_freed(provider.context_of(i)), 1) << i;
    EXPECT_EQ(stats(adapter_).total.blocks, 0u);
    EXPECT_EQ(stats(adapter_).total.frees, 5u);
}

TEST_F(Books, AnAdapterTornDownWithBlocksInTwoBooksReportsEachLeakOnce) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    std::vector<Alloc> held;
    on_cpu(cpu_a_, [&] { held.push_back(allocate(eth1, PAGE_SIZE)); });
    on_cpu(cpu_b_, [&] { held.push_back(allocate(eth1, 2 * PAGE_SIZE)); });
    ASSERT_TRUE(held[0].ok() && held[1].ok());
    ndisshm_adapter_destroy(eth1);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_LEAK).size(), 2u);
    ndisshm_memory_stats m{};
    ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(m.blocks_in_use, 0u) << "both went back to the default provider";
}

class BooksWithFewRecords : public Books {
protected:
    void configure(ndisshm_runtime_config& c) override { c.max_blocks = 8; }
};

TEST_F(BooksWithFewRecords, RecordsAnotherCpuFreedServeThisOneWhenTheTableIsFull) {
    std::vector<Alloc> held;
    take(cpu_a_, 8, PAGE_SIZE, held);
    on_cpu(cpu_a_, [&] { EXPECT_EQ(allocate(adapter_, PAGE_SIZE).status, NDIS_STATUS_RESOURCES); });
    give(cpu_a_, 8, held);
    take(cpu_b_, 8, PAGE_SIZE, held);  // every record now waits in A's book
    EXPECT_EQ(stats(adapter_).total.blocks, 8u);
    give(cpu_b_, 8, held);
}

}  // namespace
}  // namespace ndisshm::test
