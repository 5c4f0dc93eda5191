// LineRoundTrip: how far apart two CPUs are now, as the time one cache line
// takes to go from one to the other and back.
//
// Why: the rings' figures (the NIC's writes into lines the guest's core read,
// the guest's reads of lines the NIC wrote) are set by that time more than by
// anything of ours, and a VM's two vCPUs can be near or far apart, and move
// while it runs: on the development VM the same build spent 22-30 ns of the
// NIC thread's CPU a 64 B packet with a round trip of 58-82 ns, and 42-60 ns
// with one of 389-503 ns. The paired rings benchmark measures it between its
// slices so that each run says which of the two it was taken in.
//
// A helper thread, pinned to `far_cpu`, sleeps (a futex: it takes nothing from
// whatever else runs there) until measure() hands it a number of rounds, then
// answers each ping of the calling thread by the same line. The caller runs
// measure() on the other CPU, with nothing else busy on `far_cpu` (the guest
// stopped), or it times the scheduler, not the line.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace bench {

class LineRoundTrip {
public:
    explicit LineRoundTrip(int far_cpu) : helper_([this, far_cpu] { serve(far_cpu); }) {}
    ~LineRoundTrip() {
        rounds_.store(kStop, std::memory_order_release);
        work_.fetch_add(1, std::memory_order_release);
        work_.notify_one();
        helper_.join();
    }
    LineRoundTrip(const LineRoundTrip&) = delete;
    LineRoundTrip& operator=(const LineRoundTrip&) = delete;

    // False if the helper could not be pinned to its CPU (then measure() is 0).
    bool pinned() {
        int p;
        while ((p = pinned_.load(std::memory_order_acquire)) == kUnknown) std::this_thread::yield();
        return p == kYes;
    }

    // The mean of `rounds` round trips, in ns; 0 if the helper is not pinned.
    double measure(uint32_t rounds) {
        if (!pinned() || rounds == 0) return 0;
        line_.store(0, std::memory_order_relaxed);
        rounds_.store(rounds, std::memory_order_relaxed);
        const uint32_t ticket = work_.fetch_add(1, std::memory_order_release) + 1;
        work_.notify_one();
        // The helper says it is awake and spinning: its wake-up is not timed.
        while (ready_.load(std::memory_order_acquire) != ticket) std::this_thread::yield();
        const auto t0 = std::chrono::steady_clock::now();
        for (uint32_t i = 0; i < rounds; ++i) {
            line_.store(2 * i + 1, std::memory_order_release);
            while (line_.load(std::memory_order_acquire) != 2 * i + 2) pause();
        }
        const auto t1 = std::chrono::steady_clock::now();
        return std::chrono::duration<double, std::nano>(t1 - t0).count() / rounds;
    }

private:
    static constexpr uint32_t kStop = UINT32_MAX;
    static constexpr int kUnknown = 0, kYes = 1, kNo = 2;

    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }

    void serve(int cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        const bool ok = ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set) == 0;
        pinned_.store(ok ? kYes : kNo, std::memory_order_release);
        uint32_t seen = 0;
        for (;;) {
            work_.wait(seen, std::memory_order_acquire);
            seen = work_.load(std::memory_order_acquire);
            const uint32_t rounds = rounds_.load(std::memory_order_acquire);
            if (rounds == kStop) return;
            ready_.store(seen, std::memory_order_release);
            for (uint32_t i = 0; i < rounds; ++i) {
                while (line_.load(std::memory_order_acquire) != 2 * i + 1) pause();
                line_.store(2 * i + 2, std::memory_order_release);
            }
        }
    }

    alignas(64) std::atomic<uint32_t> line_{0};  // the line that travels, alone on it
    alignas(64) std::atomic<uint32_t> work_{0};  // measure() calls so far (the helper's futex)
    std::atomic<uint32_t> rounds_{0};
    std::atomic<uint32_t> ready_{0};
    std::atomic<int> pinned_{kUnknown};
    std::thread helper_;  // last: it starts once the rest is made
};

}  // namespace bench
