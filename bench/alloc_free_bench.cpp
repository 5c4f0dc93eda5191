// NdisAllocateSharedMemory + NdisFreeSharedMemory pairs through the C
// surface, on the default (memfd arena) provider: what a miniport pays per
// receive buffer. Each block is touched once per 4 KiB page before it is
// freed, as the baselines in baseline_bench.cpp are.
//
//   pair/ndisshm/bytes:B/outstanding:N/real_time/threads:T
//     B bytes per block; N blocks of B bytes allocated before the timed loop
//     and held through it; T threads allocating on the same adapter.
//     N = 1000000 (4 KiB only): the book-keeping at scale. 1M x 4 KiB is 4 GiB
//     of arena, inside the default 16 GiB of address space and 4M records;
//     the outstanding blocks are never touched, so little of it is memory.
//   pair/ndisshm_node0/...
//     the same with PreferredNode = 0 instead of MM_ANY_NODE_OK (a driver
//     that asks for the node of its queue).
//   pair/ndisshm_adapter_per_thread/...   (threads:2 only)
//     one runtime, each thread on an adapter of its own: the adapter's lock
//     and books are private, the default provider's arena is shared.
//   pair/ndisshm_runtime_per_thread/...   (threads:2 only)
//     each thread on a runtime of its own: nothing of ndisshm's is shared, so
//     this is what two threads get from the machine itself.
//   pair/ndisshm_cross_owner/bytes:B/outstanding:N/real_time/threads:1
//     two adapters of one runtime taking turns on one thread (allocate on A,
//     touch, free; then the same on B), so that every block changes hands:
//     each allocation gets the block the other adapter just freed, and must
//     clear it. The N outstanding blocks are A's. Counters from the memory
//     statistics prove it: `owner_reuse` (share of allocations that got their
//     own adapter's block back, must be ~0, else the run is an error),
//     `zeroed_in_call` (share cleared during the call) and `pre_zeroed` (share
//     served by a block the background zeroer had cleared).
//   pair/ndisshm_cross_owner_zero_ahead/...
//     the same with the background zeroer on (NDISSHM_ZERO_AHEAD_ON): it needs
//     a CPU the benchmark's thread leaves idle (2 or more CPUs).
//   pair/ndisshm_cross_owner_paired/bytes:B/outstanding:N/real_time
//     issue 15's two cross-owner ratios measured so that a machine's change of
//     speed cannot fall between the figures: each iteration times kPairedChunk
//     cross-owner pairs (as above), then kPairedChunk memsets of a warm B-byte
//     buffer (zero/memset's work), then kPairedChunk calloc pairs with N callocs
//     held (pair/calloc's work), a few hundred microseconds in all. Counters:
//     `vs_memset` and `vs_calloc`, the medians over the iterations of each
//     iteration's ratio; `ndisshm_ns`, `memset_ns`, `calloc_ns`, the medians
//     of each chunk's time per operation. The time column is one whole
//     iteration (3 x kPairedChunk operations): only the counters compare.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "bench_support.hpp"
#include "testbed.hpp"

namespace bench {
namespace {

enum class Layout { SharedAdapter, AdapterPerThread, RuntimePerThread };

struct Beds {
    std::vector<std::unique_ptr<Testbed>> beds;
    std::vector<NDIS_HANDLE> adapter_of_thread;
};

Shared<Beds> g_beds;

// One allocate, touch, free on `adapter`: what every pair here times. False
// (the benchmark marked as an error) if the allocation failed.
[[gnu::always_inline]] inline bool one_pair(benchmark::State& state, NDIS_HANDLE adapter, DriverRequest& req,
                                            ULONG length) {
    NDIS_HANDLE block = nullptr;
    PNDIS_SHARED_MEMORY_PARAMETERS p = req.fresh();
    if (NdisAllocateSharedMemory(adapter, p, &block) != NDIS_STATUS_SUCCESS) {
        state.SkipWithError("NdisAllocateSharedMemory failed");
        return false;
    }
    touch_pages(p->VirtualAddress, length);
    NdisFreeSharedMemory(adapter, block);
    return true;
}

void BM_NdisPair(benchmark::State& state, Layout layout, NODE_REQUIREMENT node) {
    const auto length = static_cast<ULONG>(state.range(0));
    const int64_t outstanding = state.range(1);
    const std::string key =
        key_of(state, "ndisshm", {length, outstanding, node, static_cast<int64_t>(layout)});
    Beds& beds = g_beds.setup(state, key, [&] {
        auto b = std::make_unique<Beds>();
        TestbedOptions o;
        o.outstanding = outstanding;
        o.outstanding_length = length;
        if (layout == Layout::AdapterPerThread) o.adapters = state.threads();
        const int runtimes = layout == Layout::RuntimePerThread ? state.threads() : 1;
        for (int i = 0; i < runtimes; ++i) b->beds.push_back(std::make_unique<Testbed>(o));
        for (int t = 0; t < state.threads(); ++t) {
            switch (layout) {
                case Layout::SharedAdapter:
                    b->adapter_of_thread.push_back(b->beds[0]->adapter());
                    break;
                case Layout::AdapterPerThread:
                    b->adapter_of_thread.push_back(b->beds[0]->adapter(t));
                    break;
                case Layout::RuntimePerThread:
                    b->adapter_of_thread.push_back(b->beds[static_cast<size_t>(t)]->adapter());
                    break;
            }
        }
        return b;
    });
    const NDIS_HANDLE adapter = beds.adapter_of_thread[static_cast<size_t>(state.thread_index())];
    DriverRequest req(length, node);
    for (auto _ : state)
        if (!one_pair(state, adapter, req, length)) break;
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(length));
    for (const auto& bed : beds.beds) fail_on_violations(state, *bed);
    g_beds.teardown(state);
}

constexpr auto kAnyNode = static_cast<NODE_REQUIREMENT>(MM_ANY_NODE_OK);

struct CrossBed {
    explicit CrossBed(const TestbedOptions& o) : bed(o) {}
    Testbed bed;
    uint64_t turn = 0;  // kept across Google Benchmark's calls, so that the turns go on alternating
};
Shared<CrossBed> g_cross;

void BM_NdisCrossOwner(benchmark::State& state, bool zero_ahead) {
    const auto length = static_cast<ULONG>(state.range(0));
    const int64_t outstanding = state.range(1);
    const std::string key = key_of(state, "ndisshm_cross_owner", {length, outstanding, zero_ahead ? 1 : 0});
    CrossBed& cross = g_cross.setup(state, key, [&] {
        TestbedOptions o;
        o.adapters = 2;
        o.outstanding = outstanding;
        o.outstanding_length = length;
        o.zero_ahead = zero_ahead ? NDISSHM_ZERO_AHEAD_ON : NDISSHM_ZERO_AHEAD_OFF;
        return std::make_unique<CrossBed>(o);
    });
    Testbed& bed = cross.bed;
    const NDIS_HANDLE adapters[2] = {bed.adapter(0), bed.adapter(1)};
    DriverRequest req(length);
    const ndisshm_memory_stats before = bed.memory();
    uint64_t& turn = cross.turn;
    for (auto _ : state) {
        if (!one_pair(state, adapters[turn++ & 1], req, length)) break;
    }
    const ndisshm_memory_stats after = bed.memory();
    const auto n = static_cast<double>(state.iterations());
    const double reuses = static_cast<double>(after.owner_reuses - before.owner_reuses);
    const double zeroed =
        static_cast<double>((after.zeroed_by_memset_bytes - before.zeroed_by_memset_bytes) +
                            (after.zeroed_by_release_bytes - before.zeroed_by_release_bytes));
    state.counters["owner_reuse"] = reuses / n;
    state.counters["zeroed_in_call"] = zeroed / (n * length);
    state.counters["pre_zeroed"] =
        static_cast<double>(after.served_pre_zeroed - before.served_pre_zeroed) / n;
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(length));
    if (reuses > 0.01 * n) state.SkipWithError("blocks did not change hands: not a cross-owner figure");
    fail_on_violations(state, bed);
    g_cross.teardown(state);
}

constexpr int kPairedChunk = 200;

struct PairedBed {
    PairedBed(const TestbedOptions& o, size_t bytes, int64_t outstanding)
        : cross(o), floor(bytes, 1), calloc_held(static_cast<size_t>(outstanding), nullptr) {
        for (void*& p : calloc_held)
            if ((p = std::calloc(1, bytes)) == nullptr) die("outstanding calloc failed");
    }
    ~PairedBed() {
        for (void* p : calloc_held) std::free(p);
    }
    PairedBed(const PairedBed&) = delete;
    PairedBed& operator=(const PairedBed&) = delete;
    CrossBed cross;
    std::vector<unsigned char> floor;  // zero/memset's warm buffer
    std::vector<void*> calloc_held;    // pair/calloc's outstanding blocks
};
Shared<PairedBed> g_paired;

void BM_NdisCrossOwnerPaired(benchmark::State& state) {
    using Clock = std::chrono::steady_clock;
    const auto length = static_cast<ULONG>(state.range(0));
    const int64_t outstanding = state.range(1);
    PairedBed& bed =
        g_paired.setup(state, key_of(state, "ndisshm_cross_owner_paired", {length, outstanding}), [&] {
            TestbedOptions o;
            o.adapters = 2;
            o.outstanding = outstanding;
            o.outstanding_length = length;
            o.zero_ahead = NDISSHM_ZERO_AHEAD_OFF;
            return std::make_unique<PairedBed>(o, length, outstanding);
        });
    Testbed& tb = bed.cross.bed;
    const NDIS_HANDLE adapters[2] = {tb.adapter(0), tb.adapter(1)};
    DriverRequest req(length);
    const ndisshm_memory_stats before = tb.memory();
    std::vector<double> ours, memsets, callocs, vs_memset, vs_calloc;
    auto per_op = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::nano>(b - a).count() / kPairedChunk;
    };
    bool ok = true;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        for (int i = 0; i < kPairedChunk && ok; ++i)
            ok = one_pair(state, adapters[bed.cross.turn++ & 1], req, length);
        if (!ok) break;
        const auto t1 = Clock::now();
        for (int i = 0; i < kPairedChunk; ++i) {
            std::memset(bed.floor.data(), 0, length);
            benchmark::DoNotOptimize(bed.floor.data());
            benchmark::ClobberMemory();
        }
        const auto t2 = Clock::now();
        for (int i = 0; i < kPairedChunk; ++i) {
            void* p = std::calloc(1, length);
            if (p == nullptr) {
                state.SkipWithError("calloc failed");
                ok = false;
                break;
            }
            touch_pages(p, length);
            std::free(p);
        }
        if (!ok) break;
        const auto t3 = Clock::now();
        ours.push_back(per_op(t0, t1));
        memsets.push_back(per_op(t1, t2));
        callocs.push_back(per_op(t2, t3));
        vs_memset.push_back(ours.back() / memsets.back());
        vs_calloc.push_back(ours.back() / callocs.back());
    }
    const ndisshm_memory_stats after = tb.memory();
    const auto pairs = static_cast<double>(state.iterations()) * kPairedChunk;
    const double reuses = static_cast<double>(after.owner_reuses - before.owner_reuses);
    state.counters["owner_reuse"] = reuses / pairs;
    state.counters["ndisshm_ns"] = median_of(ours);
    state.counters["memset_ns"] = median_of(memsets);
    state.counters["calloc_ns"] = median_of(callocs);
    state.counters["vs_memset"] = median_of(vs_memset);
    state.counters["vs_calloc"] = median_of(vs_calloc);
    if (reuses > 0.01 * pairs) state.SkipWithError("blocks did not change hands: not a cross-owner figure");
    fail_on_violations(state, tb);
    g_paired.teardown(state);
}

BENCHMARK_CAPTURE(BM_NdisPair, shared_adapter, Layout::SharedAdapter, kAnyNode)
    ->Name("pair/ndisshm")
    ->ArgNames({"bytes", "outstanding"})
    ->ArgsProduct({{4 * kKiB, 64 * kKiB, 2 * kMiB}, {0, 1000}})
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_NdisPair, shared_adapter_1m, Layout::SharedAdapter, kAnyNode)
    ->Name("pair/ndisshm")
    ->ArgNames({"bytes", "outstanding"})
    ->Args({4 * kKiB, 1000000})
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_NdisPair, node0, Layout::SharedAdapter, NODE_REQUIREMENT{0})
    ->Name("pair/ndisshm_node0")
    ->ArgNames({"bytes", "outstanding"})
    ->Args({4 * kKiB, 0})
    ->Threads(1)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_NdisPair, adapter_per_thread, Layout::AdapterPerThread, kAnyNode)
    ->Name("pair/ndisshm_adapter_per_thread")
    ->ArgNames({"bytes", "outstanding"})
    ->ArgsProduct({{4 * kKiB, 64 * kKiB, 2 * kMiB}, {0}})
    ->Threads(2)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_NdisCrossOwner, plain, false)
    ->Name("pair/ndisshm_cross_owner")
    ->ArgNames({"bytes", "outstanding"})
    ->ArgsProduct({{4 * kKiB, 64 * kKiB}, {1000}})
    ->Threads(1)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_NdisCrossOwner, zero_ahead, true)
    ->Name("pair/ndisshm_cross_owner_zero_ahead")
    ->ArgNames({"bytes", "outstanding"})
    ->ArgsProduct({{4 * kKiB, 64 * kKiB}, {1000}})
    ->Threads(1)
    ->UseRealTime();

BENCHMARK(BM_NdisCrossOwnerPaired)
    ->Name("pair/ndisshm_cross_owner_paired")
    ->ArgNames({"bytes", "outstanding"})
    ->Args({64 * kKiB, 1000})
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_NdisPair, runtime_per_thread, Layout::RuntimePerThread, kAnyNode)
    ->Name("pair/ndisshm_runtime_per_thread")
    ->ArgNames({"bytes", "outstanding"})
    ->ArgsProduct({{4 * kKiB, 64 * kKiB, 2 * kMiB}, {0}})
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace bench
