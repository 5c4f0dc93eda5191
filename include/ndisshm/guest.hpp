/// @file
/// guest.hpp: the guest side in C++. RAII over <ndisshm/guest.h>, header-only
/// so it binds to the same exported C ABI as C callers do.
///
/// @code
///   ndisshm::Guest g({.name = "vm1", .memory_bytes = 64 << 20},
///                    [](const ndisshm::GuestPacket& p) { use(p.data); });
///   g.connect(path);                  // throws GuestError with the host's reason
///   NDIS_STATUS end = g.run();        // until the host says BYE or goes away
///   if (end == NDISSHM_STATUS_HOST_GONE) ...   g.last_error() says why
/// @endcode
///
/// A packet's bytes are in place in guest memory, in one or more segments
/// (GuestPacket::segments), and valid only during the handler: the host
/// reuses the buffers once the packet is given back, as poll_once does when
/// its handler returns. rx_burst hands packets out to hold instead, until
/// rx_return (as rte_eth_rx_burst does). An
/// exception from a handler stops the batch's remaining callbacks (the
/// descriptors still go back to the host) and is rethrown from poll_once/run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include <ndisshm/guest.h>

namespace ndisshm {

class GuestError : public std::runtime_error {
public:
    GuestError(const std::string& what, NDIS_STATUS status) : std::runtime_error(what), status_(status) {}
    /// The call's status (<ndisshm/status.h>).
    NDIS_STATUS status() const { return status_; }

private:
    NDIS_STATUS status_;
};

struct GuestOptions {
    std::string name;                  ///< 1..31 bytes
    uint64_t memory_bytes = 0;         ///< > 0
    uint64_t guest_physical_base = 0;  ///< added by the host to offsets in SG lists
    bool busy_poll = false;            ///< spin on the rings (NDISSHM_GUEST_BUSY_POLL); else sleep when idle
    uint32_t reconnect_ms = 0;         ///< keep trying to get a lost host back this long (guest.h); 0: never
};

/// One segment of a packet, in place in guest memory.
struct GuestSegment {
    uint64_t handle;  ///< SharedMemoryHandle of its block
    uint32_t offset;  ///< within the block
    std::span<const std::byte> data;
};

/// A received packet: one segment, or two on a queue with lookahead split
/// (the lookahead, then the rest). Read it in place segment by segment
/// (`segments`); `data` is the first segment, which is the whole packet
/// only when there is one segment.
struct GuestPacket {
    uint32_t queue_id;
    uint64_t handle;                         ///< first segment: SharedMemoryHandle of the block
    uint32_t offset;                         ///< first segment: within the block
    std::span<const std::byte> data;         ///< the first segment
    std::span<const GuestSegment> segments;  ///< every segment, in order
    size_t length;                           ///< the whole packet: the segments' bytes summed
};

class Guest {
public:
    using PacketHandler = std::function<void(const GuestPacket&)>;
    using EventHandler = std::function<void(const ndisshm_guest_event&)>;

    /// Makes the memory; throws GuestError with the status and the reason.
    explicit Guest(const GuestOptions& options, PacketHandler on_packet = {}, EventHandler on_event = {})
        : on_packet_(std::move(on_packet)), on_event_(std::move(on_event)) {
        ndisshm_guest_config c;
        ndisshm_guest_config_init(&c);
        c.name = options.name.c_str();
        c.memory_bytes = options.memory_bytes;
        c.guest_physical_base = options.guest_physical_base;
        c.flags = options.busy_poll ? NDISSHM_GUEST_BUSY_POLL : 0u;
        c.reconnect_ms = options.reconnect_ms;
        c.on_packet = &Guest::packet_trampoline;
        c.on_event = &Guest::event_trampoline;
        c.context = this;
        char error[kErrorBytes] = {};
        const NDIS_STATUS s = ndisshm_guest_create(&c, &g_, error, sizeof(error));
        if (s != NDIS_STATUS_SUCCESS) throw GuestError(error, s);
    }
    ~Guest() { ndisshm_guest_destroy(g_); }
    Guest(const Guest&) = delete;  ///< the C side holds `this` as its context
    Guest& operator=(const Guest&) = delete;

    /// Handshake; throws GuestError with the status and reason unless SUCCESS.
    /// With reconnect_ms, stats().reconnecting says whether the guest goes on
    /// trying after the throw (a host that is full: poll_once retries).
    void connect(const std::string& socket_path, int timeout_ms = 5000) {
        const NDIS_STATUS s = ndisshm_guest_connect(g_, socket_path.c_str(), timeout_ms, error_, sizeof(error_));
        if (s != NDIS_STATUS_SUCCESS) throw GuestError(error_, s);
    }
    /// One message (NDIS_STATUS_SUCCESS) or NDISSHM_STATUS_TIMEOUT: the
    /// session goes on (>= 0); any other status has ended it.
    NDIS_STATUS poll_once(int timeout_ms) {
        const NDIS_STATUS s = ndisshm_guest_poll(g_, timeout_ms, error_, sizeof(error_));
        rethrow_from_handler();
        return s;
    }
    /// Waits for packets or handles one message, taking no packet
    /// (ndisshm_guest_wait): NDIS_STATUS_SUCCESS or NDISSHM_STATUS_TIMEOUT
    /// while the session goes on (>= 0); any other status has ended it.
    NDIS_STATUS wait(int timeout_ms) {
        const NDIS_STATUS s = ndisshm_guest_wait(g_, timeout_ms, error_, sizeof(error_));
        rethrow_from_handler();
        return s;
    }
    /// Up to packets.size() packets in place, without waiting
    /// (ndisshm_guest_rx_burst): each stays valid until rx_return. Returns
    /// how many were written, a prefix of `packets`.
    size_t rx_burst(std::span<ndisshm_guest_packet> packets) {
        const auto max = static_cast<uint32_t>(packets.size() < UINT32_MAX ? packets.size() : UINT32_MAX);
        return ndisshm_guest_rx_burst(g_, packets.data(), max);
    }
    /// Gives packets from rx_burst back (any order, each once; a repeat, or
    /// one of an ended session, is ignored). False for a packet this guest
    /// never handed out.
    bool rx_return(std::span<const ndisshm_guest_packet> packets) {
        const auto n = static_cast<uint32_t>(packets.size() < UINT32_MAX ? packets.size() : UINT32_MAX);
        return ndisshm_guest_rx_return(g_, packets.data(), n) == NDIS_STATUS_SUCCESS;
    }
    /// An fd to sleep on in one's own epoll loop (ndisshm_guest_fd).
    int fd() const { return ndisshm_guest_fd(g_); }
    /// Until the session ends; returns how (NDISSHM_STATUS_HOST_BYE, ..._HOST_GONE, ...).
    NDIS_STATUS run() {
        for (;;) {
            const NDIS_STATUS s = poll_once(-1);
            if (s < 0) return s;
        }
    }
    void close() { ndisshm_guest_close(g_); }

    /// Why the last call failed or the session ended ("" if it has not).
    std::string last_error() const { return error_; }
    ndisshm_guest_stats stats() const {
        ndisshm_guest_stats s;
        ndisshm_guest_get_stats(g_, &s);
        return s;
    }
    std::span<std::byte> memory() const {
        uint64_t bytes = 0;
        void* p = ndisshm_guest_memory(g_, &bytes);
        return {static_cast<std::byte*>(p), static_cast<size_t>(bytes)};
    }
    int memory_fd() const { return ndisshm_guest_memory_fd(g_); }
    ndisshm_guest* handle() const { return g_; }

private:
    static void packet_trampoline(void* context, const ndisshm_guest_packet* p) {
        auto* self = static_cast<Guest*>(context);
        if (!self->on_packet_ || self->pending_) return;
        GuestSegment segments[NDISSHM_GUEST_MAX_SEGMENTS];
        const uint32_t n =
            p->segment_count < NDISSHM_GUEST_MAX_SEGMENTS ? p->segment_count : NDISSHM_GUEST_MAX_SEGMENTS;
        for (uint32_t i = 0; i < n; ++i) {
            const ndisshm_guest_segment& s = p->segments[i];
            segments[i] = {s.handle, s.offset, {static_cast<const std::byte*>(s.data), s.length}};
        }
        try {
            self->on_packet_(GuestPacket{p->queue_id,
                                         p->handle,
                                         p->offset,
                                         {static_cast<const std::byte*>(p->data), p->length},
                                         {segments, n},
                                         p->packet_length});
        } catch (...) {
            self->pending_ = std::current_exception();  // never through the C library
        }
    }
    static void event_trampoline(void* context, const ndisshm_guest_event* e) {
        auto* self = static_cast<Guest*>(context);
        if (!self->on_event_ || self->pending_) return;
        try {
            self->on_event_(*e);
        } catch (...) {
            self->pending_ = std::current_exception();
        }
    }
    void rethrow_from_handler() {
        if (pending_) std::rethrow_exception(std::exchange(pending_, nullptr));
    }

    PacketHandler on_packet_;
    EventHandler on_event_;
    std::exception_ptr pending_;
    ndisshm_guest* g_ = nullptr;
    // The reason of the last call that failed: a host's reason (up to 1 KiB
    // on the wire) with ours around it, twice when a reconnection gave up
    // (the loss and the last attempt's), never cut.
    static constexpr size_t kErrorBytes = 4096;
    char error_[kErrorBytes] = {};
};

}  // namespace ndisshm
