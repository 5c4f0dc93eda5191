// Isolation: no byte written through one adapter is ever readable through another. Blocks are filled
// with a pattern (no byte of it is 0) to their last page-rounded byte, freed, and every block a later
// adapter gets is checked to be all zero, through every path a block can take: never used, reused from
// a per-CPU cache, reused from the page allocator (memset), and reused with its pages released (punch
// hole), on one thread and across threads and CPUs. A block that goes back to the adapter that freed it
// may come as that adapter left it (host.h); where a test lets that happen it checks that such a block
// holds that adapter's own bytes and nothing else. Run with the release threshold at its default, low
// (so that release runs often), and at UINT64_MAX (memset only). memory_owner_test.cpp takes each way a
// block changes hands (adapter destroyed, queue freed, binding detached) one at a time.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "conformance/fixture.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {

namespace {

constexpr uint64_t kPage = 4096;
uint64_t rounded(uint64_t length) { return (length + kPage - 1) / kPage * kPage; }

// Whether [p, p + bytes) holds exactly fill_pattern(p, bytes, tag).
bool has_pattern(const void* p, uint64_t bytes, uint64_t tag) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (uint64_t i = 0; i < bytes; ++i)
        if (b[i] != pattern_byte(tag, i)) return false;
    return true;
}

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
    Held take(ULONG length, ULONG flags = 0) { return take_on(adapter_, length, flags); }
    Held take_on(NDIS_HANDLE adapter, ULONG length, ULONG flags = 0) {
        Alloc a = allocate(adapter, length, 0, NdisSharedMemoryUsageReceive, flags);
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

// Each round is a new adapter's: every block it gets that was used before was another adapter's.
TEST_P(MemoryIsolation, NoByteWrittenThroughOneAdapterIsReadableThroughAnother) {
    std::mt19937_64 rng(GetParam() ^ 0x5eed);
    for (int round = 0; round < 6; ++round) {
        const NDIS_HANDLE adapter = round == 0 ? adapter_ : new_adapter(("round" + std::to_string(round)).c_str());
        std::vector<ULONG> sizes(std::begin(kSizes), std::end(kSizes));
        for (int i = 0; i < 40; ++i) sizes.push_back(1 + static_cast<ULONG>(rng() % (80 * kPage)));
        std::shuffle(sizes.begin(), sizes.end(), rng);
        std::vector<Held> held;
        for (ULONG s : sizes) {
            Held h = take_on(adapter, s);
            if (h.handle == nullptr) continue;
            fill_pattern(h.address, h.bytes, static_cast<uint64_t>(round) * 1000 + held.size());
            held.push_back(h);
        }
        // Free in another order than allocated, so that ranges coalesce and split differently.
        std::shuffle(held.begin(), held.end(), rng);
        for (const Held& h : held) NdisFreeSharedMemory(adapter, h.handle);
    }
    const ndisshm_memory_stats m = memory(rt_);
    EXPECT_GT(m.cache_hits, 0u) << "the cached path was taken";
    EXPECT_EQ(m.owner_reuses, 0u) << "no adapter allocated twice";
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

// A block freed on one thread is the next thread's block, and the next thread works for another
// adapter: handed over on the same CPU (through that CPU's cache) and to a thread on another CPU
// (through the page allocator).
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
        const NDIS_HANDLE writer = new_adapter(("writer" + std::to_string(step)).c_str());
        const NDIS_HANDLE reader = new_adapter(("reader" + std::to_string(step)).c_str());
        on_cpu(step % cpus, [&] {
            std::vector<Held> held;
            for (int i = 0; i < 20; ++i) {
                Held h = take_on(writer, length);
                if (h.handle == nullptr) return;
                fill_pattern(h.address, h.bytes, step * 100 + static_cast<uint64_t>(i));
                held.push_back(h);
            }
            for (const Held& h : held) NdisFreeSharedMemory(writer, h.handle);
        });
        on_cpu((step + step % 2) % cpus, [&] {  // same CPU on even steps, the next one on odd steps
            std::vector<Held> held;
            for (int i = 0; i < 30; ++i) held.push_back(take_on(reader, length));
            for (const Held& h : held)
                if (h.handle != nullptr) NdisFreeSharedMemory(reader, h.handle);
        });
    }
    EXPECT_TRUE(log_.all().empty());
}

// Threads at once, each for an adapter of its own, allocating blocks of random sizes, checking them,
// filling them and freeing them in random order: a block that reaches a thread must be all zero, or be
// one this thread's adapter freed, exactly as it left it; any other thread's byte fails the check.
TEST_P(MemoryIsolation, ThreadsAllocatingAtOnceNeverSeeEachOthersBytes) {
    constexpr int kThreads = 4;
    constexpr int kSteps = 400;
    std::vector<NDIS_HANDLE> adapters;
    for (int t = 0; t < kThreads; ++t) adapters.push_back(new_adapter(("thread" + std::to_string(t)).c_str()));
    std::atomic<uint64_t> zero{0}, own{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            const NDIS_HANDLE adapter = adapters[static_cast<size_t>(t)];
            std::mt19937_64 rng(static_cast<uint64_t>(t) * 7919 + GetParam());
            struct Mine {
                Held held;
                uint64_t tag;
            };
            std::vector<Mine> held;
            std::map<void*, Mine> freed;  // what this thread's adapter freed, by address: its last tag
            for (int step = 0; step < kSteps; ++step) {
                if (held.size() < 8 && (held.empty() || rng() % 3 != 0)) {
                    const ULONG length = rng() % 10 == 0 ? static_cast<ULONG>(64 * 1024 + rng() % (1 << 20))
                                                         : 1 + static_cast<ULONG>(rng() % (64 * 1024));
                    Alloc a = allocate(adapter, length);
                    EXPECT_EQ(a.status, NDIS_STATUS_SUCCESS);
                    if (a.status != NDIS_STATUS_SUCCESS) return;
                    const Held h{a.handle, a.params.VirtualAddress, rounded(length)};
                    if (first_nonzero(h.address, h.bytes) == h.bytes) {
                        ++zero;
                    } else {
                        auto it = freed.find(h.address);
                        const bool as_left = it != freed.end() && it->second.held.bytes == h.bytes &&
                                             has_pattern(h.address, h.bytes, it->second.tag);
                        EXPECT_TRUE(as_left) << "a block of " << length << " bytes arrived holding bytes that are "
                                             << "not this adapter's own last ones: another adapter's data";
                        ++own;
                    }
                    const uint64_t tag = static_cast<uint64_t>(t) << 32 | static_cast<uint64_t>(step);
                    fill_pattern(h.address, h.bytes, tag);
                    held.push_back({h, tag});
                } else {
                    const size_t i = rng() % held.size();
                    NdisFreeSharedMemory(adapter, held[i].held.handle);
                    freed[held[i].held.address] = held[i];
                    held[i] = held.back();
                    held.pop_back();
                }
            }
            for (const Mine& m : held) NdisFreeSharedMemory(adapter, m.held.handle);
        });
    }
    for (auto& t : threads) t.join();
    const ndisshm_memory_stats m = memory(rt_);
    EXPECT_EQ(m.blocks_in_use, 0u);
    EXPECT_GT(zero.load(), 0u);
    EXPECT_LE(own.load(), m.owner_reuses) << "every non-zero block was an owner's reuse, as counted";
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
