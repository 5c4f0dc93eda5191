// What every benchmark here shares: driver-style allocation parameters, the
// one-byte-per-page touch, and state that thread 0 sets up for all threads of
// a run.
#pragma once

#include <benchmark/benchmark.h>
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "driver_request.hpp"

namespace bench {

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;
constexpr size_t kTouchStride = 4096;

// Writes one byte in every 4 KiB page of [p, p + bytes), so every variant
// pays for the page faults (or the lack of them) its memory brings.
inline void touch_pages(void* p, size_t bytes) {
    auto* bytes_p = static_cast<unsigned char*>(p);
    for (size_t off = 0; off < bytes; off += kTouchStride) bytes_p[off] = 1;
    benchmark::DoNotOptimize(bytes_p);
    benchmark::ClobberMemory();
}

// The median of v (the upper of the two middle values when there are an even
// number); 0 for none.
inline double median_of(std::vector<double> v) {
    if (v.empty()) return 0;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

[[noreturn]] inline void die(const std::string& what) {
    std::fprintf(stderr, "ndisshm_bench: %s\n", what.c_str());
    std::abort();
}

// NDIS_SHARED_MEMORY_PARAMETERS as a miniport fills them for a receive
// buffer, with an SG buffer sized BYTES_TO_PAGES(Length) elements, allocated
// once and reused for every call; fresh() hands out a clean copy per call
// (support/driver_request.hpp, the driver's side every caller shares).
using ndisshm::support::DriverRequest;

inline uint64_t violations(const ndisshm_runtime* rt) {
    uint64_t n = 0;
    for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
        n += ndisshm_runtime_violation_count(rt, static_cast<ndisshm_violation_kind>(k));
    return n;
}

// main() calls every registered function once the run is over (drop_shared_state): the Shared<> beds'
// first, then the others (the DPDK EAL, the guest rigs) in the order they were registered.
void register_drop(std::function<void()> drop);
void register_bed_drop(std::function<void()> drop);
void drop_shared_state();
// Drops every Shared<> bed now (each is made again by its next benchmark): for a benchmark that needs
// what the beds hold, such as the huge page pool, whichever benchmarks ran before it in the random order.
void drop_shared_beds();

// State one benchmark's threads share. Google Benchmark calls the function
// several times per benchmark (to size the iteration count), on every thread;
// thread 0 makes the state the first time and reuses it while the key stays
// the same, so the timed run starts warm. The other threads wait until thread
// 0 has published it (Google Benchmark's own start barrier comes only at the
// loop, after they have read it). Publish with setup() before the loop and
// retract with teardown() after it, on every thread.
template <class T>
class Shared {
public:
    Shared() {
        register_bed_drop([this] { drop(); });
    }

    template <class Make>
    T& setup(benchmark::State& state, const std::string& key, Make make) {
        if (state.thread_index() == 0) {
            if (!value_ || key != key_) {
                value_.reset();  // the previous benchmark's, before the next one is made
                value_ = make();
                key_ = key;
            }
            ready_.store(value_.get(), std::memory_order_release);
            return *value_;
        }
        T* v;
        while ((v = ready_.load(std::memory_order_acquire)) == nullptr) std::this_thread::yield();
        return *v;
    }

    // Every thread has left the loop by the time thread 0 gets here.
    void teardown(benchmark::State& state) {
        if (state.thread_index() == 0) ready_.store(nullptr, std::memory_order_release);
    }

    void drop() {
        value_.reset();
        key_.clear();
    }

private:
    std::unique_ptr<T> value_;
    std::string key_;
    std::atomic<T*> ready_{nullptr};
};

// "what/a/b/threads:n": one key per benchmark instance.
inline std::string key_of(const benchmark::State& state, const char* what,
                          std::initializer_list<int64_t> args) {
    std::string k = what;
    for (int64_t a : args) {
        k += '/';
        k += std::to_string(a);
    }
    k += "/threads:";
    k += std::to_string(state.threads());
    return k;
}

}  // namespace bench
