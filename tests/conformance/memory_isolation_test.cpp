// Isolation: no byte written by one user of a block is ever readable by the next. Blocks are filled
// with a pattern (no byte of it is 0) to their last page-rounded byte, freed, and every later block is
// checked to be all zero, through every path a block can take: never used, reused from a per-CPU cache,
// reused from the page allocator (memset), and reused with its pages released (punch hole), on one
// thread and across threads and CPUs. Run with the release threshold at its default, low (so that
// release runs often), and at UINT64_MAX (memset only).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include "conformance/fixture.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t rounded(uint64_t length) { return (length + kPage - 1) / kPage * kPage; }

class MemoryIsolation : public NdisTest, public ::testing::WithParamInterface<uint64_t> {
protected:
    void configure(ndisshm_runtime_config& c) override {
        c.page_mode = NDISSHM_PAGES_BASE;  // the release path exists only for 4 KiB pages
        c.zero_by_release_bytes = GetParam();
    }
    // Allocates, checks the whole page-rounded block is zero, and returns it (handle, address, bytes).
    struct Held {
        NDIS_HANDLE handle;
        void* address;
        uint64_t bytes;
    };
    Held take(ULONG length, ULONG flags = 0) {
        Alloc a = allocate(adapter_, length, 0, NdisSharedMemoryUsageReceive, flags);
        EXPECT_EQ(a.status, NDIS_STATUS_SUCCESS) << length;
        if (a.status != NDIS_STATUS_SUCCESS) return {nullptr, nullptr, 0};
        const uint64_t bytes = rounded(length);
        const uint64_t at = first_nonzero(a.params.VirtualAddress, bytes);
        EXPECT_EQ(at, bytes) << "a block of " << length << " bytes arrived with byte " << at << " = "
                             << int(static_cast<unsigned char*>(a.params.VirtualAddress)[at])
                             << ": data left by a previous user";
        return {a.handle, a.params.VirtualAddress, bytes};
    }
    static ndisshm_memory_stats memory(ndisshm_runtime* rt) {
        ndisshm_memory_stats m{};
        EXPECT_EQ(ndisshm_runtime_get_memory_stats(rt, &m), NDIS_STATUS_SUCCESS);
        return m;
    }
};

// Sizes on both sides of every boundary that changes the path: the cache's largest size (64 KiB), the
// low release threshold (64 KiB), the default one (16 MiB).
const ULONG kSizes[] = {1,         100,        4095,      4096,          4097,          12288,     65535,
                        65536,     65537,      200000,    1 << 20,       (3 << 20) + 5, 16u << 20,
                        (16u << 20) + 4096};

TEST_P(MemoryIsolation, NoByteWrittenByOneUserIsReadableByTheNext) {
    std::mt19937_64 rng(GetParam() ^ 0x5eed);
    for (int round = 0; round < 6; ++round) {
        std::vector<ULONG> sizes(std::begin(kSizes), std::end(kSizes));
        for (int i = 0; i < 40; ++i) sizes.push_back(1 + static_cast<ULONG>(rng() % (80 * kPage)));
        std::shuffle(sizes.begin(), sizes.end(), rng);
        std::vector<Held> held;
        for (ULONG s : sizes) {
            Held h = take(s);
            if (h.handle == nullptr) continue;
            fill_pattern(h.address, h.bytes, static_cast<uint64_t>(round) * 1000 + held.size());
            held.push_back(h);
        }
        // Free in another order than allocated, so that ranges coalesce and split differently.
        std::shuffle(held.begin(), held.end(), rng);
        for (const Held& h : held) NdisFreeSharedMemory(adapter_, h.handle);
    }
    const ndisshm_memory_stats m = memory(rt_);
    EXPECT_GT(m.cache_hits, 0u) << "the cached path was taken";
    EXPECT_GT(m.zeroed_by_memset_bytes, 0u);
    if (GetParam() == 64 * 1024) {
        EXPECT_GT(m.zeroed_by_release_bytes, 0u) << "the release path was taken";
    }
    if (GetParam() == UINT64_MAX) {
        EXPECT_EQ(m.zeroed_by_release_bytes, 0u);
    }
    EXPECT_EQ(m.blocks_in_use, 0u);
    EXPECT_TRUE(log_.all().empty());
}

// A block freed on one thread is the next thread's block: handed over on the same CPU (through that
// CPU's cache) and to a thread on another CPU (through the page allocator).
TEST_P(MemoryIsolation, BlocksHandedFromThreadToThreadArriveZeroed) {
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    auto on_cpu = [](unsigned cpu, auto f) {
        std::thread t([&] {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort: may be refused
            f();
        });
        t.join();
    };
    for (unsigned step = 0; step < 8; ++step) {
        const ULONG length = kSizes[step % std::size(kSizes)] + static_cast<ULONG>(step * kPage);
        on_cpu(step % cpus, [&] {
            std::vector<Held> held;
            for (int i = 0; i < 20; ++i) {
                Held h = take(length);
                if (h.handle == nullptr) return;
                fill_pattern(h.address, h.bytes, step * 100 + static_cast<uint64_t>(i));
                held.push_back(h);
            }
            for (const Held& h : held) NdisFreeSharedMemory(adapter_, h.handle);
        });
        on_cpu((step + step % 2) % cpus, [&] {  // same CPU on even steps, the next one on odd steps
            std::vector<Held> held;
            for (int i = 0; i < 30; ++i) held.push_back(take(length));
            for (const Held& h : held)
                if (h.handle != nullptr) NdisFreeSharedMemory(adapter_, h.handle);
        });
    }
    EXPECT_TRUE(log_.all().empty());
}

// Threads at once, each allocating blocks of random sizes, checking them, filling them and freeing them
// in random order: any block that reaches a thread with another's bytes in it fails the check.
TEST_P(MemoryIsolation, ThreadsAllocatingAtOnceNeverSeeEachOthersBytes) {
    constexpr int kThreads = 4;
    constexpr int kSteps = 400;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<uint64_t>(t) * 7919 + GetParam());
            std::vector<Held> held;
            for (int step = 0; step < kSteps; ++step) {
                if (held.size() < 8 && (held.empty() || rng() % 3 != 0)) {
                    const ULONG length = rng() % 10 == 0 ? static_cast<ULONG>(64 * 1024 + rng() % (1 << 20))
                                                         : 1 + static_cast<ULONG>(rng() % (64 * 1024));
                    Held h = take(length);
                    if (h.handle == nullptr) return;
                    fill_pattern(h.address, h.bytes, static_cast<uint64_t>(t) << 32 | static_cast<uint64_t>(step));
                    held.push_back(h);
                } else {
                    const size_t i = rng() % held.size();
                    NdisFreeSharedMemory(adapter_, held[i].handle);
                    held[i] = held.back();
                    held.pop_back();
                }
            }
            for (const Held& h : held) NdisFreeSharedMemory(adapter_, h.handle);
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(memory(rt_).blocks_in_use, 0u);
    EXPECT_TRUE(log_.all().empty());
}

INSTANTIATE_TEST_SUITE_P(ReleaseThreshold, MemoryIsolation,
                         ::testing::Values(uint64_t{0}, uint64_t{64} * 1024, UINT64_MAX),
                         [](const ::testing::TestParamInfo<uint64_t>& i) {
                             return i.param == 0 ? std::string("Default")
                                                 : i.param == UINT64_MAX ? std::string("AlwaysMemset")
                                                                         : std::string("Release64KiB");
                         });

}  // namespace

}  // namespace ndisshm::test
