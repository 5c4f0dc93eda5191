// GuestHub: the host's guest server, in the role Hyper-V's virtual switch
// plays for VMQ. Guests (separate processes) connect to a Unix socket, hand
// over their memory as a memfd, and each gets a receive queue of the NIC
// whose buffers are carved out of that memory, so the NIC's writes land in
// the guest with no copy and the guest reads each packet in place.
//
// Per guest, in order (protocol.hpp has the messages):
//   HELLO -> HELLO_ACK; SET_MEMORY + memfd -> checked and mapped
//   (GuestMemory::adopt; refused with ERROR + close, reason logged) ->
//   MEMORY_ACK; a VMQ is allocated on the adapter (ndisshm_queue_allocate
//   with config.queue_params, or what config.choose_queue_params makes of
//   them for this guest), assigned to the guest in the guest provider,
//   completed -> QUEUE_ATTACHED; the miniport allocates the queue's receive
//   buffers (NdisAllocateSharedMemory; each block's commit -> BLOCK_ADDED;
//   lookahead and post-lookahead blocks on a split queue); the queue's rings
//   are allocated the same way, one block of Usage Other, as a NIC driver
//   allocates its descriptor rings (BLOCK_ADDED) -> RINGS_ATTACHED with the
//   two eventfds; then deliver() writes each packet into a buffer and its
//   descriptors (a split packet: a chain of two) into the receive ring, and
//   takes back what the guest put in the completion ring (guest_rings.hpp:
//   nothing read there is trusted; a violation refuses the session).
//
// Threads: one hub thread polls the listening socket, every session's socket
// (the handshake, then only BYE) and the completion kicks, and is the only one
// that receives on a session or tears one down, so a session's messages and
// its teardown never race. deliver() runs on the caller's thread (the NIC's),
// not through the hub thread: the data path takes one lock, the session's,
// and makes no system call unless the guest sleeps (need-wakeup). A guest
// that stops consuming fills its ring: deliver drops for its queue (counted),
// nobody else slows down. Control sends are non-blocking: a guest that does
// not read its socket is closed; it can never stall the host.
//
// Ownership: the hub owns its binding on the adapter and the guest provider
// registered through it, the miniport, and the sessions; a session owns its
// channel and a reference to its GuestMemory (the provider and each block hold
// others). The adapter and its runtime must outlive the hub.
//
// Teardown of one session (the guest closed, died, sent a malformed or
// forbidden message, or the host stops): deliver stops for its queue; the
// miniport frees the queue's blocks (NdisFreeSharedMemory; when the host
// stops, the provider's BLOCK_REMOVED goes to the guest, a guest that died or
// was refused is told nothing more); the queue is freed
// (ndisshm_queue_free, no blocks left, so no violation); the guest is removed
// from the provider; the last reference to its memory unmaps it. Other guests
// and the host are untouched. stop(): QUEUE_DETACHED and BYE to each guest
// after that, then the binding goes (every block was freed through its
// provider). Blocks other drivers still hold on the adapter at stop() are
// reclaimed by NDIS with a verifier report, as for any provider detaching.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <ndisshm/host.h>

#include "base/result.hpp"
#include "ipc/channel.hpp"
#include "nic/vmq_miniport.hpp"
#include "os/fd_checks.hpp"
#include "providers/guest_memory.hpp"
#include "providers/guest_provider.hpp"

namespace ndisshm::ipc {

class GuestHub;

// A driver of the NIC that fills guests' queues itself, instead of the hub's
// VmqMiniport and deliver(): the NIC writes into memory the driver allocated
// for the queue (NdisAllocateSharedMemory with QueueId = the queue, so the
// guest provider carves it from the guest), then the driver tells the guest
// where the packet is with GuestHub::announce. The AF_XDP miniport
// (hub/afxdp_guest_driver) is one: the kernel writes into its UMEM.
// deliver() finds no buffers on such queues (Dropped). All three calls come
// from the hub's own thread.
class QueueDriver {
public:
    // The guest's queue has been allocated and completed: allocate its
    // buffers and start receiving. Not SUCCESS: the session is refused with
    // `why`, and the driver has freed whatever it allocated.
    virtual NDIS_STATUS start_queue(GuestHub& hub, uint32_t queue, std::string* why) = 0;
    // The session ends: stop writing into the queue's buffers, then free them,
    // before returning (the hub frees the queue next; a block still on it
    // would be a verifier violation, and its memory the guest's again).
    virtual void stop_queue(uint32_t queue) = 0;
    // The guest gave back `d` (each segment of a chained packet in turn,
    // exactly as the driver announced it: the hub's own copy, never the
    // guest's bytes). Called on the thread that reaps the completion ring:
    // inside announce, or the hub's thread. False is a bug of the hub's.
    virtual bool give_back(uint32_t queue, const PacketDescriptor& d) = 0;

protected:
    ~QueueDriver() = default;
};

struct GuestInfo {
    uint32_t guest_id = 0;
    std::string name;
    uint32_t queue_id = 0;
    uint64_t memory_bytes = 0;
    uint64_t guest_physical_base = 0;
};

struct GuestHubConfig {
    std::string socket_path;  // empty: default_socket_dir() + "/host.sock"
    providers::GuestMemoryLimits memory_limits;  // min is raised to what one queue's buffers need
    nic::VmqMiniportConfig miniport;
    ndisshm_queue_params queue_params{sizeof(ndisshm_queue_params), 0, 0};  // for ndisshm_queue_allocate (lookahead split is optional)
    // Per guest: called on the hub thread before a guest's queue is
    // allocated, with the guest (id, name, the queue it gets) and
    // queue_params; may change them (lookahead split for some queues only).
    // Parameters the miniport cannot serve refuse that session with the
    // reason. Empty: queue_params for every guest.
    std::function<void(const GuestInfo&, ndisshm_queue_params&)> choose_queue_params;
    uint32_t first_queue_id = 1;          // guests' queues are numbered from here
    uint32_t max_guests = 64;
    int handshake_timeout_ms = 5000;      // HELLO and SET_MEMORY must be done by then
    // Entries of each guest queue's receive and completion rings (a power of
    // two, kMinHubRingSize..ipc::kMaxRingSize), and the most packets a guest
    // may hold at once.
    uint32_t ring_size = 512;
    std::function<void(const std::string&)> log;  // one line per event; empty: stderr
    // Fills guests' queues instead of the hub's miniport; null: the miniport
    // (deliver). Must outlive the hub's stop().
    QueueDriver* queue_driver = nullptr;
};

inline constexpr uint32_t kMinHubRingSize = 64;

enum class Delivery {
    Delivered,
    NoGuest,   // no running guest owns that queue
    Dropped,   // no free slot, too large, or the guest's ring is full
};

struct GuestHubStats {
    uint64_t accepted = 0;  // connections
    uint64_t running = 0;   // guests with a queue now
    uint64_t closed = 0;    // sessions ended, for any reason
    uint64_t refused = 0;   // ended by the host for a bad handshake or message
    uint64_t delivered = 0;
    uint64_t dropped = 0;
    uint64_t returned = 0;  // packets given back through the completion rings
    uint64_t kicks = 0;     // receive-kick eventfd writes (guests asleep in interrupt mode)
};

class GuestHub final : private providers::BlockListener {
public:
    // Registers the guest provider on `adapter` (a binding named "guest-hub"),
    // listens and starts the hub thread. Fails if the adapter already has a
    // provider or the socket cannot be made.
    static Result<std::unique_ptr<GuestHub>> start(NDIS_HANDLE adapter, GuestHubConfig config);
    ~GuestHub();
    GuestHub(const GuestHub&) = delete;
    GuestHub& operator=(const GuestHub&) = delete;

    // BLOCK_REMOVED, QUEUE_DETACHED and BYE to every guest with the teardown
    // above; joins the thread; destroys the binding; removes the socket file.
    // Idempotent, but not to be called from two threads at once. deliver()
    // afterwards returns NoGuest.
    void stop();

    // The NIC received `packet` for `queue`: written into a free slot of that
    // queue's buffers (in the guest's memory) and announced to the guest.
    // Any thread; packets of one queue are delivered in call order.
    Delivery deliver(uint32_t queue, std::span<const std::byte> packet);
    // As deliver, for a batch: one lock, one publication of the receive ring
    // (what a NIC's interrupt moderation buys). Returns how many were
    // delivered, a prefix of `packets`; the rest were dropped (no free
    // buffer, ring or table full, too large) or the guest is gone.
    size_t deliver_batch(uint32_t queue, std::span<const std::span<const std::byte>> packets);
    // For the queue driver: packets it already wrote into the queue's blocks
    // (each descriptor names one of them; chains whole, at most
    // kMaxAnnounce descriptors), put in the guest's receive ring: all
    // (Delivered) or none. Dropped: the ring is full (the guest is slow): the
    // driver may try again or reuse the buffers. NoGuest: the guest is gone
    // or going. Completions come back through QueueDriver::give_back.
    Delivery announce(uint32_t queue, std::span<const PacketDescriptor> packets);
    static constexpr uint32_t kMaxAnnounce = kMinHubRingSize;

    const std::string& socket_path() const { return socket_path_; }
    uint32_t ring_size() const { return config_.ring_size; }
    std::vector<GuestInfo> guests() const;
    GuestHubStats stats() const;
    // Guests whose rings are attached: the end of the handshake, from which a
    // delivery to their queue can land. (stats().running counts a guest from
    // the moment its queue is assigned, some messages earlier.)
    size_t ready_guests() const;
    // Why each session ended, oldest first (at most the last 256).
    std::vector<std::string> closed_reasons() const;
    // Waits until `done()` holds (checked after each session event) or
    // timeout_ms passes; returns done()'s last value. For tests and tools.
    bool wait_until(const std::function<bool()>& done, int timeout_ms) const;

    providers::GuestProvider& provider() { return *provider_; }
    nic::VmqMiniport& miniport() { return *miniport_; }
    NDIS_HANDLE adapter() const { return adapter_; }
    // The hub's binding: the virtual switch's, which owns every queue it
    // allocates (guests' and host queues), so its provider serves them.
    NDIS_HANDLE binding() const { return binding_; }

private:
    struct Session;
    using SessionPtr = std::shared_ptr<Session>;

    GuestHub(NDIS_HANDLE adapter, GuestHubConfig config);
    void run();
    void accept_one();
    void serve(const SessionPtr& s);
    void handle_hello(const SessionPtr& s, const Message& m);
    void handle_set_memory(const SessionPtr& s, Message& m);
    bool attach_queue(const SessionPtr& s);
    bool attach_rings(const SessionPtr& s);
    // The completion kick fired: take back what the guest gave.
    void reap_kicked(const SessionPtr& s);
    // Under s->mu: the completions the guest has published go back to the
    // driver or the miniport; a violation marks the session for closing.
    void reap_locked(const SessionPtr& s);
    // Under s->mu: the guest broke the rings' rules; the hub thread closes it.
    void violation_locked(const SessionPtr& s, const std::string& why);
    enum class Ending {
        HostStops,  // graceful: BLOCK_REMOVED, QUEUE_DETACHED, BYE
        GuestLeft,  // BYE, closed, died: nothing more is sent
        Refused,    // the host's decision: ERROR (if error_code) with the reason, then close
    };
    void close_session(const SessionPtr& s, const std::string& reason, Ending ending, uint32_t error_code = 0);
    void say(const std::string& line) const;
    void notify();

    void block_added(uint32_t guest_id, const providers::GuestBlock& block) override;
    void block_removed(uint32_t guest_id, const providers::GuestBlock& block) override;
    SessionPtr session_of_guest(uint32_t guest_id) const;
    SessionPtr session_of_queue(uint32_t queue) const;

    NDIS_HANDLE adapter_;
    GuestHubConfig config_;
    std::string socket_path_;
    NDIS_HANDLE binding_ = nullptr;
    std::unique_ptr<providers::GuestProvider> provider_;
    std::unique_ptr<nic::VmqMiniport> miniport_;
    os::UniqueFd listen_fd_;
    std::unique_ptr<os::WakeFd> wake_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    bool stopped_ = false;

    mutable std::mutex mu_;  // the maps and counters below; never held while sending or calling NDIS
    mutable std::condition_variable changed_;
    std::map<uint32_t, SessionPtr> sessions_;      // by guest id
    std::map<uint32_t, SessionPtr> queue_owner_;   // running guests, by queue id
    uint32_t next_guest_id_ = 1;
    uint64_t events_ = 0;
    GuestHubStats stats_;  // delivered, dropped and returned live in the atomics below
    std::atomic<uint64_t> delivered_{0}, dropped_{0}, returned_{0}, kicks_{0};
    std::vector<std::string> closed_reasons_;
};

}  // namespace ndisshm::ipc
