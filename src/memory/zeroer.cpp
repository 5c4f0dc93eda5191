#include "memory/zeroer.hpp"

#include <chrono>

#include "memory/arena.hpp"
#include "os/os.hpp"

namespace ndisshm::memory {

Zeroer::Zeroer() : thread_([this] { run(); }) {}

void Zeroer::add(Arena* arena) {
    {
        std::lock_guard lock(mu_);
        arenas_.push_back(arena);
    }
    wake();
}

void Zeroer::wake() {
    std::lock_guard lock(mu_);
    woken_ = true;
    cv_.notify_one();
}

void Zeroer::stop() {
    {
        std::lock_guard lock(mu_);
        if (stop_ && !thread_.joinable()) return;
        stop_ = true;
        cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
}

bool Zeroer::pass() {
    // The list is copied so that add() never waits for a memset; arenas are never removed while running.
    std::vector<Arena*> arenas;
    {
        std::lock_guard lock(mu_);
        if (stop_) return false;
        arenas = arenas_;
    }
    bool worked = false;
    for (Arena* a : arenas) worked = a->zero_ahead_step() != 0 || worked;
    passes_.fetch_add(1, std::memory_order_relaxed);
    return worked;
}

void Zeroer::run() {
    // Refused only where the kernel lacks SCHED_IDLE; the zeroer then runs at its creator's priority,
    // which is still correct, only less polite (idle_priority() says which).
    idle_priority_.store(static_cast<bool>(os::set_idle_priority()), std::memory_order_relaxed);
    for (;;) {
        const uint64_t seen = pokes_.load(std::memory_order_seq_cst);
        while (pass()) {
        }
        // No arena has work. Say so, then look whether anyone poked since the passes began: a poke after
        // this store sees `sleeping_` and wakes us (poke()).
        sleeping_.store(true, std::memory_order_seq_cst);
        if (pokes_.load(std::memory_order_seq_cst) != seen) {
            sleeping_.store(false, std::memory_order_relaxed);
            continue;
        }
        std::unique_lock lock(mu_);
        if (stop_) break;
        cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return woken_ || stop_; });
        woken_ = false;
        sleeping_.store(false, std::memory_order_relaxed);
        if (stop_) break;
    }
    sleeping_.store(false, std::memory_order_relaxed);
}

}  // namespace ndisshm::memory
