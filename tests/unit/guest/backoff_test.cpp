// The guest's reconnection delays: bounded, growing, jittered, restartable.
#include "guest/backoff.hpp"

#include <gtest/gtest.h>

#include <set>

namespace ndisshm::guest {
namespace {

TEST(Backoff, EachDelayLiesBetweenHalfAndAllOfADoublingCeilingCappedAtTwoSeconds) {
    Backoff b(42);
    uint32_t ceiling = Backoff::kFirstMs;
    for (int i = 0; i < 20; ++i) {
        const uint32_t d = b.next_ms();
        EXPECT_GE(d, ceiling / 2) << "delay " << i;
        EXPECT_LE(d, ceiling) << "delay " << i;
        ceiling = std::min(ceiling * 2, Backoff::kCapMs);
    }
}

TEST(Backoff, ResetStartsAgainFromTheShortestDelay) {
    Backoff b(7);
    for (int i = 0; i < 10; ++i) (void)b.next_ms();
    EXPECT_GE(b.next_ms(), Backoff::kCapMs / 2);
    b.reset();
    EXPECT_LE(b.next_ms(), Backoff::kFirstMs);
}

TEST(Backoff, GuestsWithDifferentSeedsSpreadOut) {
    // Ten guests that lost the same host at once: at the cap their delays
    // must not all be equal, or they would arrive at the new host together.
    std::set<uint32_t> delays;
    for (uint64_t seed = 1; seed <= 10; ++seed) {
        Backoff b(seed * 0x9E3779B97F4A7C15ull);
        for (int i = 0; i < 8; ++i) (void)b.next_ms();
        delays.insert(b.next_ms());
    }
    EXPECT_GE(delays.size(), 5u);
}

}  // namespace
}  // namespace ndisshm::guest
