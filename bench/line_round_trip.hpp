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
// A helper thread pinned to `far_cpu` (pinned_helper.hpp: asleep between
// measurements) answers each ping of the calling thread by the same line.
// The caller runs measure() on the other CPU, with nothing else busy on
// `far_cpu` (the guest stopped), or it times the scheduler, not the line.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "pinned_helper.hpp"

namespace bench {

class LineRoundTrip {
public:
    explicit LineRoundTrip(int far_cpu) : helper_(far_cpu) {}

    // False if the helper could not be pinned to its CPU (then measure() is 0).
    bool pinned() { return helper_.pinned(); }

    // The mean of `rounds` round trips, in ns; 0 if the helper is not pinned.
    double measure(uint32_t rounds) {
        if (!pinned() || rounds == 0) return 0;
        line_.store(0, std::memory_order_relaxed);
        helper_.start([this, rounds] {
            for (uint32_t i = 0; i < rounds; ++i) {
                while (line_.load(std::memory_order_acquire) != 2 * i + 1) PinnedHelper::pause();
                line_.store(2 * i + 2, std::memory_order_release);
            }
        });
        const auto t0 = std::chrono::steady_clock::now();
        for (uint32_t i = 0; i < rounds; ++i) {
            line_.store(2 * i + 1, std::memory_order_release);
            while (line_.load(std::memory_order_acquire) != 2 * i + 2) PinnedHelper::pause();
        }
        const auto t1 = std::chrono::steady_clock::now();
        helper_.finish();
        return std::chrono::duration<double, std::nano>(t1 - t0).count() / rounds;
    }

private:
    // First: its thread waits for a job, and the line below is touched only by jobs.
    PinnedHelper helper_;
    alignas(64) std::atomic<uint32_t> line_{
        0};  // the line that travels, alone on it (the object ends with it)
};

}  // namespace bench
