// The delays between a guest's attempts to get its host back.
//
// Exponential from kFirstMs, doubling to kCapMs, each delay "equal jitter"
// (uniform in [d/2, d]): bounded above, so a host that is back is found
// within kCapMs; never below half, so a crowd of guests whose host died at
// the same instant spreads out instead of arriving together at the new one
// (which takes at most a few pending handshakes per process anyway). Pure:
// the caller keeps the clock and the deadline, the tests the seed.
#pragma once

#include <cstdint>

namespace ndisshm::guest {

class Backoff {
public:
    static constexpr uint32_t kFirstMs = 50;
    static constexpr uint32_t kCapMs = 2000;

    explicit Backoff(uint64_t seed) : state_(seed | 1) {}

    // The delay before the next attempt, in ms: in [d/2, d] where d is
    // kFirstMs doubled once per earlier delay, at most kCapMs.
    uint32_t next_ms() {
        const uint32_t d = ceiling_;
        if (ceiling_ < kCapMs) ceiling_ = ceiling_ * 2 > kCapMs ? kCapMs : ceiling_ * 2;
        return d / 2 + static_cast<uint32_t>(random() % (d - d / 2 + 1));
    }
    // A new loss starts again from kFirstMs.
    void reset() { ceiling_ = kFirstMs; }

private:
    // xorshift64*: enough to spread guests apart, and no system call.
    uint64_t random() {
        state_ ^= state_ >> 12;
        state_ ^= state_ << 25;
        state_ ^= state_ >> 27;
        return state_ * 0x2545F4914F6CDD1Dull;
    }

    uint64_t state_;
    uint32_t ceiling_ = kFirstMs;
};

}  // namespace ndisshm::guest
