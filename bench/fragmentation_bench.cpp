// Fragmentation under a driver-like mix on the default (memfd arena)
// provider: how much arena the allocator needs for the bytes a driver holds.
//
//   fragmentation/driver_mix/iterations:100000/real_time/threads:1
//
// One adapter with 4 receive queues (the default queue and queues 1-3). Each
// queue holds 4 large Receive buffers of 1-4 MiB (uniform) and 256 small
// blocks of 4-64 KiB (log-uniform: more small ones than large, as per-packet
// and descriptor-ring buffers are), Xmit and Receive alternately; lengths are
// multiples of 64 bytes, not of the page. The live set (about 75 MiB) is
// allocated first, untimed; then every iteration frees one live block chosen
// at random (frees in random order) and allocates its replacement: a block of
// the same class on the same queue with a fresh random length, touched once
// per 4 KiB page as everywhere in the suite. Time is per iteration (one free
// plus one allocation); the sequence is drawn from a fixed seed before the
// loop, so every repetition replays the same 100,000 replacements.
//
// Counters, taken at the end from ndisshm_runtime_get_memory_stats and from
// the benchmark's own books:
//   live_peak_bytes    most bytes live at once, each block rounded up to 4 KiB
//   high_water_bytes   the arena's high water mark
//   file_bytes         memfd bytes behind the arenas
//   largest_free_bytes largest block the arena could carve without growing
//   in_use_bytes       bytes_in_use at the end (live blocks, page-rounded)
//   live_end_bytes     the benchmark's own count of the same (a check on in_use_bytes)
//   frag_high_water    high_water_bytes / live_peak_bytes (1.0: no space lost)
//   frag_file          file_bytes / live_peak_bytes
//   cache_hit_rate     cache_hits / (cache_hits + cache_misses), 0 if no cache reported
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "testbed.hpp"

namespace bench {
namespace {

constexpr int kQueues = 4;  // NDIS_DEFAULT_RECEIVE_QUEUE_ID and 1..3
constexpr int kLargePerQueue = 4;
constexpr int kSmallPerQueue = 256;
constexpr int64_t kReplacements = 100000;
constexpr ULONG kLargeMax = 4 * 1024 * 1024;

struct Slot {
    NDIS_HANDLE handle = nullptr;
    ULONG length = 0;
    NDIS_RECEIVE_QUEUE_ID queue = 0;
    NDIS_SHARED_MEMORY_USAGE usage = NdisSharedMemoryUsageReceive;
    bool large = false;
};

uint64_t rounded(ULONG length) { return (static_cast<uint64_t>(length) + 4095) & ~uint64_t{4095}; }

class LengthDraw {
public:
    explicit LengthDraw(uint64_t seed) : rng_(seed) {}

    ULONG operator()(bool large) {
        double bytes;
        if (large) {
            bytes = std::uniform_real_distribution<double>(1.0 * kMiB, 4.0 * kMiB)(rng_);
        } else {
            bytes = std::exp(std::uniform_real_distribution<double>(std::log(4.0 * kKiB), std::log(64.0 * kKiB))(rng_));
        }
        const auto l = static_cast<ULONG>(bytes) & ~ULONG{63};
        return std::clamp<ULONG>(l, 64, kLargeMax);
    }

    std::mt19937_64& rng() { return rng_; }

private:
    std::mt19937_64 rng_;
};

// Parameters with an SG buffer big enough for the largest block.
class MixRequest {
public:
    MixRequest() : template_(kLargeMax) {}

    PNDIS_SHARED_MEMORY_PARAMETERS fresh(const Slot& s) {
        PNDIS_SHARED_MEMORY_PARAMETERS p = template_.fresh();
        p->QueueId = s.queue;
        p->Usage = s.usage;
        p->Length = s.length;
        return p;
    }

private:
    DriverRequest template_;
};

void BM_Fragmentation(benchmark::State& state) {
    Testbed bed(TestbedOptions{});
    const NDIS_HANDLE adapter = bed.adapter();
    for (NDIS_RECEIVE_QUEUE_ID q = 1; q < kQueues; ++q) {
        if (ndisshm_queue_create(adapter, q) != NDIS_STATUS_SUCCESS) {
            state.SkipWithError("ndisshm_queue_create failed");
            return;
        }
    }
    LengthDraw draw(0x6e646973);  // fixed: every repetition replays the same mix
    MixRequest req;

    std::vector<Slot> slots;
    for (int q = 0; q < kQueues; ++q) {
        for (int i = 0; i < kLargePerQueue + kSmallPerQueue; ++i) {
            Slot s;
            s.queue = static_cast<NDIS_RECEIVE_QUEUE_ID>(q);
            s.large = i < kLargePerQueue;
            s.usage = s.large || i % 2 == 0 ? NdisSharedMemoryUsageReceive : NdisSharedMemoryUsageXmit;
            slots.push_back(s);
        }
    }
    std::string error;
    uint64_t live = 0;
    uint64_t live_peak = 0;
    auto allocate = [&](Slot& s) {
        s.length = draw(s.large);
        PNDIS_SHARED_MEMORY_PARAMETERS p = req.fresh(s);
        if (NdisAllocateSharedMemory(adapter, p, &s.handle) != NDIS_STATUS_SUCCESS) {
            error = "NdisAllocateSharedMemory failed (" + std::to_string(s.length) + " bytes)";
            s.handle = nullptr;
            return false;
        }
        touch_pages(p->VirtualAddress, s.length);
        live += rounded(s.length);
        live_peak = std::max(live_peak, live);
        return true;
    };
    for (Slot& s : slots) {
        if (!allocate(s)) break;
    }

    // The order of frees, drawn before the loop.
    std::vector<uint32_t> victims(static_cast<size_t>(kReplacements));
    std::uniform_int_distribution<uint32_t> pick(0, static_cast<uint32_t>(slots.size() - 1));
    for (auto& v : victims) v = pick(draw.rng());

    size_t next = 0;
    if (error.empty()) {
        for (auto _ : state) {
            Slot& s = slots[victims[next++ % victims.size()]];
            NdisFreeSharedMemory(adapter, s.handle);
            live -= rounded(s.length);
            if (!allocate(s)) break;
        }
    }

    const uint64_t live_at_stats = live;
    ndisshm_memory_stats m{};
    const bool have_stats = ndisshm_runtime_get_memory_stats(bed.runtime(), &m) == NDIS_STATUS_SUCCESS;
    for (Slot& s : slots) {
        if (s.handle != nullptr) NdisFreeSharedMemory(adapter, s.handle);
    }
    for (NDIS_RECEIVE_QUEUE_ID q = 1; q < kQueues; ++q) ndisshm_queue_free(adapter, q);
    if (!error.empty()) {
        state.SkipWithError(error.c_str());
        return;
    }
    if (!have_stats) {
        state.SkipWithError("ndisshm_runtime_get_memory_stats failed");
        return;
    }
    fail_on_violations(state, bed);
    const auto bytes = [](uint64_t v) { return benchmark::Counter(static_cast<double>(v), benchmark::Counter::kDefaults,
                                                                  benchmark::Counter::kIs1024); };
    const double peak = static_cast<double>(live_peak);
    state.counters["live_peak_bytes"] = bytes(live_peak);
    state.counters["high_water_bytes"] = bytes(m.high_water_bytes);
    state.counters["file_bytes"] = bytes(m.file_bytes);
    state.counters["largest_free_bytes"] = bytes(m.largest_free_bytes);
    state.counters["in_use_bytes"] = bytes(m.bytes_in_use);
    state.counters["live_end_bytes"] = bytes(live_at_stats);
    state.counters["frag_high_water"] = peak > 0 ? static_cast<double>(m.high_water_bytes) / peak : 0;
    state.counters["frag_file"] = peak > 0 ? static_cast<double>(m.file_bytes) / peak : 0;
    const double lookups = static_cast<double>(m.cache_hits + m.cache_misses);
    state.counters["cache_hit_rate"] = lookups > 0 ? static_cast<double>(m.cache_hits) / lookups : 0;
    state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Fragmentation)->Name("fragmentation/driver_mix")->Iterations(kReplacements)->UseRealTime();

}  // namespace
}  // namespace bench
