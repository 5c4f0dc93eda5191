// The guest's side of one host/guest session (include/ndisshm/guest.h is the
// C surface over it, src/api/guest.cpp the mapping).
//
// It owns the guest's memory (a memfd sealed against shrinking, mapped
// read/write) and the channel to the host, keeps the blocks the host has
// carved out of that memory (handle -> where and how long), and reads each
// queue's receive ring (ipc/ring.hpp) in place, giving packets back through
// its completion ring. Nothing the host sends is trusted: a block must lie
// inside our memory, the rings inside their block, a descriptor inside its
// block, before a byte is read; a ring index that claims the impossible ends
// the session (PROTOCOL).
//
// Packets handed out by rx_burst stay the caller's until rx_return, each
// with a token (ndisshm_guest_packet.token: slot and generation in the
// guest's own table), so a return is checked against what was handed out.
//
// With reconnect_ms, a session the host ends (gone, BYE, full) is followed
// by attempts to connect again on the same memory (guest.h, "Reconnection";
// session_lifecycle.cpp): everything of the old session is forgotten first,
// and each new session starts as the first did.
#pragma once

#include <ndisshm/guest.h>
#include <ndisshm/status.h>

#include <cstdint>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.hpp"
#include "guest/backoff.hpp"
#include "ipc/channel.hpp"
#include "ipc/ring.hpp"
#include "os/fd_checks.hpp"
#include "os/os.hpp"

namespace ndisshm::guest {

class Session {
public:
    // Validates the config and makes the memory; the reason on failure.
    static Result<std::unique_ptr<Session>> create(const ndisshm_guest_config& config);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    NDIS_STATUS connect(const std::string& socket_path, int timeout_ms);
    // guest.h's ndisshm_guest_poll, _wait, _rx_burst, _rx_return, _fd.
    NDIS_STATUS poll(int timeout_ms);
    NDIS_STATUS wait(int timeout_ms);
    uint32_t rx_burst(ndisshm_guest_packet* packets, uint32_t max);
    NDIS_STATUS rx_return(const ndisshm_guest_packet* packets, uint32_t count);
    int fd();
    void close();  // BYE, then the socket closes; memory and stats stay

    const std::string& last_error() const { return last_error_; }
    ndisshm_guest_stats stats() const;
    std::byte* memory() const { return memory_; }
    uint64_t memory_bytes() const { return bytes_; }
    int memory_fd() const { return memfd_.get(); }

private:
    struct Block {
        uint64_t guest_offset;
        uint32_t length;
        uint32_t queue_id;
        uint32_t usage;
        uint16_t index;   // BLOCK_ADDED's: what ring entries name it by
        uint64_t handle;  // what readers are told (NET_BUFFER_SHARED_MEMORY's handle)
    };
    struct Queue {
        uint32_t flags;
        uint32_t lookahead_size;
    };
    // One queue's rings, as RINGS_ATTACHED described them (checked).
    struct Rings {
        uint32_t queue_id = 0;
        uint64_t handle = 0;  // the ring block
        ipc::ReceiveRing rx;
        ipc::CompletionRing done;
        uint32_t rx_cons = 0;    // ours
        uint32_t done_prod = 0;  // ours
        uint32_t done_room = 0;  // completions we may write before looking at the host's index again
        uint32_t done_published = 0;
        os::WakeFd rx_kick, done_kick;
    };
    // A packet handed out and not yet given back. Two lines, the fields
    // every packet touches and its first two segments in the first.
    struct alignas(64) Held {
        uint32_t cookie = 0;
        uint32_t queue_id = 0;
        uint32_t generation = 1;  // the token's high bits; bumped at each release
        bool held = false;
        ndisshm_guest_segment segments[ipc::kMaxSegmentsPerPacket]{};
    };

    using Clock = std::chrono::steady_clock;
    // Whether a host that ended a session this way may be tried again: it
    // went away, said BYE, or was full (RESOURCES). Not a host that broke
    // the protocol or refused us for what we are.
    enum class Retry { No, Yes };

    Session(const ndisshm_guest_config& config, os::UniqueFd memfd, std::byte* memory);

    // Ends the session with `status`: the socket closes, the rings go, `why`
    // is kept. With reconnection on and `retry` Yes, a reconnection starts
    // instead and SUCCESS is returned (the DISCONNECTED event was the news).
    NDIS_STATUS end(NDIS_STATUS status, std::string why, Retry retry = Retry::No);
    // connect's work, and each reconnection attempt's: socket, HELLO,
    // SET_MEMORY, each answer within handshake_timeout_ms_.
    NDIS_STATUS handshake();
    // Forgets the lost session (its queues and blocks, with their events),
    // schedules the first attempt, and says DISCONNECTED if a session was
    // lost (not when connect's own handshake was turned away).
    void start_reconnecting(NDIS_STATUS status, const std::string& why, bool session_lost);
    // While reconnecting: sleeps until the next attempt or timeout_ms,
    // makes the attempt that is due. SUCCESS once a new session is up,
    // TIMEOUT, or the loss itself once the deadline has passed.
    NDIS_STATUS reconnect_step(int timeout_ms);
    // One attempt; false if it failed (then reconnecting_ says whether
    // another is scheduled, and if not, final_status_ is the answer).
    bool attempt();
    void schedule_attempt(Clock::time_point at);
    void forget_session();
    // A receive that failed: timeout (the session goes on) or its end.
    NDIS_STATUS receive_failed(const Error& e);
    // A send failed: if the host hung up, what it said last (BYE, ERROR)
    // may still be queued and tells why; otherwise the send's own error.
    NDIS_STATUS send_failed(const Error& e);
    // The handshake's answer of type `want`, within timeout_ms.
    NDIS_STATUS await(ipc::MessageType want, int timeout_ms, ipc::Message& out);
    // A host-initiated end (BYE or ERROR) or an unexpected type.
    NDIS_STATUS ended_by_host(const ipc::Message& m);

    NDIS_STATUS handle(ipc::Message& m);
    NDIS_STATUS on_rings_attached(ipc::Message& m);
    // Whether any receive ring has an entry ready (no system call).
    bool rings_ready() const;
    // Handles at most one control message already queued (no waiting):
    // SUCCESS if one was, TIMEOUT if none, or the session's end.
    NDIS_STATUS control_now();
    // Sleeps until a control message, a receive kick or the deadline
    // (interrupt mode: need-wakeup set, the rings checked once more first).
    NDIS_STATUS sleep_until(int timeout_ms);
    // Sets need-wakeup in every receive ring (seq_cst) and says whether a
    // ring has something after all; disarm clears the flags.
    bool arm();
    void disarm();
    // Up to `max` good packets of the rings into `out` (tokens taken), bad
    // ones given back at once. PROTOCOL ends the session on an impossible
    // index or a chain cut short.
    uint32_t take(ndisshm_guest_packet* out, uint32_t max);
    void complete(Rings& r, uint32_t cookie);
    void publish_completions();
    Rings* rings_of(uint32_t queue_id);
    // Frees a held slot: not held, its generation bumped (its token goes stale).
    void release(uint32_t slot);
    // Forgets a queue's rings: what it holds is void (its tokens go stale).
    void drop_rings(uint32_t queue_id);
    void on_block_added(const ipc::BlockAdded& b);
    void on_block_removed(uint64_t handle);
    void on_queue_detached(uint32_t queue_id);
    void emit(const ndisshm_guest_event& e) const;
    ndisshm_guest_event block_event(ndisshm_guest_event_kind kind, uint64_t handle, const Block& b) const;

    std::string name_;
    uint64_t guest_physical_base_;
    ndisshm_guest_packet_fn on_packet_;
    ndisshm_guest_event_fn on_event_;
    void* context_;

    os::UniqueFd memfd_;
    std::byte* memory_;
    uint64_t bytes_;

    std::optional<ipc::Channel> channel_;
    bool used_ = false;  // one session per guest: connect was called
    std::unordered_map<uint64_t, Block> blocks_;
    // blocks_' elements by their BLOCK_ADDED index, as ring entries name
    // them (elements of an unordered_map stay where they are until erased;
    // each erase clears its entry here). Grown to the highest index seen.
    std::vector<const Block*> by_index_;
    const Block* block_at(uint16_t index) const { return index < by_index_.size() ? by_index_[index] : nullptr; }
    void forget_block(const Block& b) { by_index_[b.index] = nullptr; }
    std::unordered_map<uint32_t, Queue> queues_;
    std::vector<std::unique_ptr<Rings>> rings_;  // one per queue with rings; stable addresses
    std::vector<Held> held_;                     // as many as the rings now attached hold, at most
    std::vector<uint32_t> free_held_;
    size_t held_needed_ = 0;                     // the attached rings' sizes summed
    bool busy_poll_ = false;
    bool armed_ = false;
    bool protocol_broken_ = false;  // take() found the host's rings impossible: end() at the next step
    std::string protocol_why_;
    os::UniqueFd epoll_;            // fd(): the socket and the receive kicks
    bool epoll_stale_ = true;
    uint32_t polls_since_control_ = 0;
    ndisshm_guest_stats stats_{};
    std::string last_error_;
    std::string end_reason_;  // why the session ended, kept past later calls' errors

    // Reconnection (guest.h). The path and the handshake's timeout are
    // connect's, kept for the attempts.
    uint32_t reconnect_ms_ = 0;
    std::string socket_path_;
    int handshake_timeout_ms_ = -1;
    bool reconnecting_ = false;
    bool attempting_ = false;    // inside handshake() for connect or an attempt: end() only records
    Retry attempt_retry_ = Retry::No;  // what the last end() inside an attempt said
    NDIS_STATUS lost_status_ = NDIS_STATUS_SUCCESS;  // what ended the lost session
    NDIS_STATUS final_status_ = NDIS_STATUS_SUCCESS; // returned when reconnection gives up
    std::string lost_why_;
    Clock::time_point connected_at_{}, lost_at_{}, give_up_at_{}, next_attempt_at_{};
    uint32_t attempts_this_loss_ = 0;
    Backoff backoff_;
    os::TimerFd retry_timer_;  // in fd()'s epoll set: readable when an attempt is due
};

}  // namespace ndisshm::guest
