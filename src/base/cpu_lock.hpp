// CpuLock: the lock of something that belongs to one CPU (an adapter's book,
// core/books.hpp; an arena's per-CPU cache slot, memory/cpu_cache.hpp).
//
// Such a lock is nearly always taken by whatever runs on that CPU and by
// nobody else, so what matters is what it costs when free: one atomic exchange
// to take it and a plain release store to give it back, both inline.
// std::mutex costs two calls into libc and two locked instructions, and a
// locked instruction costs about 9 ns on the development machine: measured,
// the three book sections of a pair spent a fifth of its time in std::mutex.
//
// When it is held (a control call holding every book, a free of a block
// another CPU's book made, a thread that moved CPUs), a waiter spins briefly,
// then yields its CPU: the holder may be a thread descheduled on this very
// CPU, which spinning would only keep off it. A waiter that has yielded a few
// times and still finds it held sleeps between tries: a real-time thread
// (SCHED_FIFO) that only yielded would never let a lower-priority holder on
// its CPU run again, and would spin there for ever.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

namespace ndisshm {

class CpuLock {
public:
    void lock() {
        if (!held_.exchange(true, std::memory_order_acquire)) return;
        lock_contended();
    }
    bool try_lock() {
        return !held_.load(std::memory_order_relaxed) && !held_.exchange(true, std::memory_order_acquire);
    }
    void unlock() { held_.store(false, std::memory_order_release); }

private:
    static constexpr unsigned kSpins = 32, kYields = 16;

    void lock_contended() {
        unsigned tries = 0;
        do {
            while (held_.load(std::memory_order_relaxed)) {
                if (tries < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
                    __builtin_ia32_pause();
#endif
                } else if (tries < kSpins + kYields) {
                    std::this_thread::yield();
                } else {
                    std::this_thread::sleep_for(std::chrono::microseconds(50));
                }
                ++tries;
            }
        } while (held_.exchange(true, std::memory_order_acquire));
    }

    std::atomic<bool> held_{false};
};

}  // namespace ndisshm
