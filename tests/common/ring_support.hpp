// Both ends of a queue's shared rings (ipc/ring.hpp), as tests drive them:
// HostRingEnd plays the host for guest-library tests (it produces receive
// entries and reads completions), GuestRingEnd plays a raw guest for hub
// tests and the multiprocess peer (it reads receive entries and produces
// completions, honestly or not). Neither checks anything: tests decide.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "ipc/ring.hpp"
#include "os/fd_checks.hpp"

namespace ndisshm::test {

// The BLOCK_ADDED index the tests' fake hosts give a block: its handle's low
// 16 bits, so a test names blocks by handle and HostRingEnd writes the index.
inline uint16_t test_block_index(uint64_t handle) { return static_cast<uint16_t>(handle); }

// A descriptor as the receive ring carries it, its block named as the fake
// hosts announce it (test_block_index).
inline ipc::RxEntry to_entry(const ipc::PacketDescriptor& d) {
    return {d.offset, d.length, static_cast<uint32_t>(d.cookie), test_block_index(d.handle),
            static_cast<uint16_t>(d.flags)};
}

struct HostRingEnd {
    ipc::ReceiveRing rx;
    ipc::CompletionRing done;
    uint32_t prod = 0;
    uint32_t done_cons = 0;
    os::WakeFd rx_kick, done_kick;

    // Over `block` (already zeroed by the caller or fresh memory).
    static HostRingEnd over(std::byte* block, uint32_t size) {
        HostRingEnd h;
        const auto g = ipc::RingGeometry::for_size(size);
        h.rx = ipc::ReceiveRing(block, size);
        h.done = ipc::CompletionRing(block + g.done_offset, size);
        auto a = os::WakeFd::create();
        auto b = os::WakeFd::create();
        if (a && b) {
            h.rx_kick = std::move(*a);
            h.done_kick = std::move(*b);
        }
        return h;
    }
    // Writes `ds` as they are (chains and cookies the caller's, blocks by
    // test_block_index) and publishes them; kicks the guest if it asked to
    // be woken.
    void send(const std::vector<ipc::PacketDescriptor>& ds) {
        for (const auto& d : ds) rx.store(prod++, to_entry(d));
        rx.publish_producer(prod);
        if ((rx.load_flags() & ipc::kNeedWakeup) != 0) rx_kick.signal();
    }
    // The completions published so far (cookies), taken.
    std::vector<uint32_t> take_completions() {
        std::vector<uint32_t> out;
        const uint32_t p = done.load_producer();
        while (done_cons != p) out.push_back(done.load(done_cons++).cookie);
        done.store_consumer(done_cons);
        return out;
    }
    // Waits until `n` completions have come in all (up to timeout_ms).
    std::vector<uint32_t> await_completions(size_t n, int timeout_ms = 5000) {
        std::vector<uint32_t> out;
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (out.size() < n && std::chrono::steady_clock::now() < until) {
            auto more = take_completions();
            out.insert(out.end(), more.begin(), more.end());
            if (out.size() < n) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return out;
    }
};

struct GuestRingEnd {
    ipc::ReceiveRing rx;
    ipc::CompletionRing done;
    uint32_t cons = 0;
    uint32_t done_prod = 0;

    static GuestRingEnd over(std::byte* block, uint32_t size, uint32_t done_offset) {
        GuestRingEnd g;
        g.rx = ipc::ReceiveRing(block, size);
        g.done = ipc::CompletionRing(block + done_offset, size);
        return g;
    }
    // Every receive entry published so far, taken (the consumer index moves).
    std::vector<ipc::RxEntry> take() {
        std::vector<ipc::RxEntry> out;
        const uint32_t p = rx.load_producer();
        while (cons != p) out.push_back(rx.load(cons++));
        rx.store_consumer(cons);
        return out;
    }
    // Completes `cookies` (whatever they are) and publishes them.
    void complete(const std::vector<uint32_t>& cookies) {
        for (uint32_t c : cookies) done.store(done_prod++, ipc::Completion{c});
        done.store_producer(done_prod);
    }
};

}  // namespace ndisshm::test
