// CpuLock (src/base/cpu_lock.hpp): the lock of per-CPU things. It must exclude like any lock when CPUs do
// meet on it, and a waiter must get it however long the holder keeps it (spinning, yielding, then
// sleeping between tries).
#include "base/cpu_lock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace ndisshm::test {
namespace {

TEST(CpuLock, ThreadsMeetingOnItNeverLoseAnUpdate) {
    CpuLock lock;
    uint64_t counter = 0;  // plain: only the lock keeps the increments apart
    constexpr int kThreads = 4, kEach = 20000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < kEach; ++i) {
                std::lock_guard guard(lock);
                ++counter;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter, uint64_t{kThreads} * kEach);
}

TEST(CpuLock, AWaiterGetsItAfterALongHoldAndNotBefore) {
    CpuLock lock;
    lock.lock();
    std::atomic<bool> released{false}, got{false}, got_before_release{false};
    std::thread waiter([&] {
        lock.lock();  // past the spins and the yields: it sleeps between tries
        got_before_release = !released.load();
        got = true;
        lock.unlock();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(got.load());
    released = true;
    lock.unlock();
    waiter.join();
    EXPECT_TRUE(got.load());
    EXPECT_FALSE(got_before_release.load());
}

TEST(CpuLock, TryLockFailsWhileHeldAndSucceedsAfter) {
    CpuLock lock;
    ASSERT_TRUE(lock.try_lock());
    std::thread other([&] { EXPECT_FALSE(lock.try_lock()); });
    other.join();
    lock.unlock();
    EXPECT_TRUE(lock.try_lock());
    lock.unlock();
}

}  // namespace
}  // namespace ndisshm::test
