// One guest's session inside the hub: private to guest_hub.cpp and
// guest_session.cpp (the handshake, the rings and teardown).
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "ipc/channel.hpp"
#include "hub/guest_hub.hpp"
#include "hub/guest_rings.hpp"

namespace ndisshm::ipc {

using Clock = std::chrono::steady_clock;

// protocol.hpp's name, or "unknown": never nullptr, for building log lines.
const char* printable_type_name(MessageType t);
std::string to_hex(uint64_t v);

struct GuestHub::Session {
    enum class State { AwaitHello, AwaitMemory, Running, Closed };
    Session(os::UniqueFd fd, uint32_t id, Clock::time_point deadline)
        : channel(std::move(fd)), guest_id(id), deadline(deadline) {}

    Channel channel;  // received on by the hub thread only; sent on under mu
    const uint32_t guest_id;
    const Clock::time_point deadline;  // for the handshake
    int peer_pid = 0;                  // SO_PEERCRED's: whose handshake this is (0: unknown)

    // The hub thread's alone.
    State state = State::AwaitHello;
    std::shared_ptr<providers::GuestMemory> memory;
    bool guest_added = false, queue_allocated = false, queue_started = false;
    NDIS_HANDLE ring_block = nullptr;  // the queue's rings (Usage Other), while allocated
    int done_kick_fd = -1;             // the rings' completion kick, polled by the hub thread
    GuestInfo info;  // written under the hub's lock, read by guests()
    uint32_t queue_id() const { return info.queue_id; }

    // Under mu: the data path and every send.
    std::mutex mu;
    bool accepting = false;     // deliver may write into the queue and its rings
    // The BLOCK_ADDED index of each block the guest was told of: what the
    // rings' entries name blocks by. Before `rings`, which refers to it.
    BlockIndex blocks;
    std::unique_ptr<GuestRings> rings;  // set once RINGS_ATTACHED went out; gone before the ring block is
    // The hub's miniport's queue, with the rings (Cookies::Miniport): found
    // once, not once a batch. Gone with the rings, before the queue stops.
    nic::VmqMiniport::QueueRef miniport_queue;
    std::vector<nic::RxDescriptor> held;  // deliver_batch's descriptors: grown, never shrunk
    bool channel_ok = true;     // sends may be tried
    bool tell_blocks = true;    // BLOCK_ADDED / BLOCK_REMOVED go out (not to a guest being dropped)
    std::string send_error;     // why channel_ok went false
    std::string violation;      // why the guest broke its rings' rules: the session is refused with an ERROR
    bool send_refused = false;  // ... and whether that is the host's decision
    std::atomic<bool> broken{false};  // a send failed off the hub thread: close at its next turn
    // The guest holds packets the hub has not seen come back: the hub thread
    // reaps the completion ring soon (kReapIdleMs) even if no delivery does.
    std::atomic<bool> unreaped{false};

    template <class T>
    bool send(MessageType t, const T& payload) {
        std::lock_guard lock(mu);
        return send_locked(t, &payload, sizeof(T));
    }
    bool send_locked(MessageType t, const void* payload, uint32_t bytes, std::span<const int> fds = {}) {
        if (!channel_ok) return false;
        auto s = channel.send(t, payload, bytes, fds);
        if (s) return true;
        const bool full = s.error().err == EAGAIN || s.error().err == EWOULDBLOCK;
        fail_locked(std::string("sending ") + printable_type_name(t) + ": " +
                        (full ? "the guest is not reading its socket" : s.error().message()),
                    full);
        return false;
    }
    // `refuse`: the host ends the session (a guest that does not read);
    // otherwise the guest is gone (EPIPE and the like).
    void fail_locked(std::string why, bool refuse) {
        channel_ok = false;
        send_error = std::move(why);
        send_refused = refuse;
        broken = true;
    }
    bool healthy() {
        std::lock_guard lock(mu);
        return channel_ok;
    }
    std::string failure() {
        std::lock_guard lock(mu);
        return send_error;
    }
    bool failure_refused() {
        std::lock_guard lock(mu);
        return send_refused;
    }
    std::string violation_reason() {
        std::lock_guard lock(mu);
        return violation;
    }
};

}  // namespace ndisshm::ipc
