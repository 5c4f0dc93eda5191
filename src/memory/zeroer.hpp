// Zeroer: one background thread that clears freed blocks before anyone asks for them, as Windows' zero
// page thread does, so that an allocation that needs a clean block (one that changes hands) usually
// finds one and does not pay for the memset itself.
//
// It runs at SCHED_IDLE (os::set_idle_priority): only when its CPU has nothing else to do, so it never
// takes time from the threads it serves; on a machine with no idle CPU it simply falls behind, and
// allocations zero for themselves as they would without it. It serves any number of arenas: each pass
// asks each arena to zero one block (Arena::zero_ahead_step, which holds the arena's lock only for that
// block's bookkeeping, never during the memset), until none has work; then it sleeps until an arena
// pokes it (a spill of dirty blocks into its depot) or 100 ms pass.
//
// Life cycle: started by the constructor, stopped (and joined) by stop() or the destructor, which must
// come before any arena it serves goes (the default provider stops it first).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ndisshm::memory {

class Arena;

class Zeroer {
public:
    Zeroer();
    ~Zeroer() { stop(); }
    Zeroer(const Zeroer&) = delete;
    Zeroer& operator=(const Zeroer&) = delete;

    void add(Arena* arena);  // serve this arena too, from now until stop()
    // There may be work: wakes the thread if it sleeps. Cheap when it does not (one locked add, one load);
    // called on a cache's spill and when an allocation had to clear a block itself, not per allocation.
    void poke() {
        // Counted, then the look at `sleeping_`; run() sets `sleeping_`, then looks at the count: with
        // both sequentially consistent, one of the two sees the other, so no poke is lost.
        pokes_.fetch_add(1, std::memory_order_seq_cst);
        if (sleeping_.load(std::memory_order_seq_cst)) wake();
    }
    void stop();  // idempotent; after it returns the thread touches no arena
    bool idle_priority() const { return idle_priority_.load(std::memory_order_relaxed); }
    uint64_t passes() const { return passes_.load(std::memory_order_relaxed); }

private:
    void run();
    void wake();
    bool pass();  // one round over the arenas: whether any had work

    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;           // under mu_
    bool woken_ = false;          // under mu_
    std::vector<Arena*> arenas_;  // under mu_
    std::atomic<bool> sleeping_{false};
    std::atomic<uint64_t> pokes_{0};
    std::atomic<bool> idle_priority_{false};
    std::atomic<uint64_t> passes_{0};
    std::thread thread_;  // last: starts once everything above is built
};

}  // namespace ndisshm::memory
