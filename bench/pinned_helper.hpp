// PinnedHelper: a thread pinned to one CPU that sleeps until it is handed a
// job, runs it there, and sleeps again: the far side of line_round_trip.hpp's
// and bare_ring.hpp's measurements.
//
// Why a futex sleep and not a spin: between measurements the guest process
// runs on that CPU, and a spinning helper would take its time (and spoil the
// benchmark it sits beside). start() returns once the helper has picked the
// job up, so the caller times nothing of its wake-up.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <utility>

namespace bench {

class PinnedHelper {
public:
    explicit PinnedHelper(int cpu) : thread_([this, cpu] { serve(cpu); }) {}
    ~PinnedHelper() {
        post(nullptr);  // no job: stop
        thread_.join();
    }
    PinnedHelper(const PinnedHelper&) = delete;
    PinnedHelper& operator=(const PinnedHelper&) = delete;

    // False if the thread could not be pinned to its CPU: then start nothing.
    bool pinned() {
        int p;
        while ((p = pinned_.load(std::memory_order_acquire)) == kUnknown) std::this_thread::yield();
        return p == kYes;
    }

    // Hands `job` to the helper and returns once it runs there; the caller
    // works alongside, then finish() waits for the job's end. One at a time.
    void start(std::function<void()> job) {
        post(std::move(job));
        while (started_.load(std::memory_order_acquire) != posted_) std::this_thread::yield();
    }
    void finish() {
        while (finished_.load(std::memory_order_acquire) != posted_) std::this_thread::yield();
    }

    // What a side spinning on a line the other side writes does between looks.
    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }

private:
    static constexpr int kUnknown = 0, kYes = 1, kNo = 2;

    // The job is written before work_'s release, read after its acquire.
    void post(std::function<void()> job) {
        job_ = std::move(job);
        posted_ = work_.fetch_add(1, std::memory_order_release) + 1;
        work_.notify_one();
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
            if (!job_) return;
            started_.store(seen, std::memory_order_release);
            job_();
            finished_.store(seen, std::memory_order_release);
        }
    }

    std::function<void()> job_;
    uint32_t posted_ = 0;                        // the caller's: the last job's number
    alignas(64) std::atomic<uint32_t> work_{0};  // jobs posted so far (the helper's futex)
    std::atomic<uint32_t> started_{0};
    std::atomic<uint32_t> finished_{0};
    std::atomic<int> pinned_{kUnknown};
    std::thread thread_;  // last: it starts once the rest is made
};

}  // namespace bench
