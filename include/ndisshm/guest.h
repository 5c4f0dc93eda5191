/** @file
 * ndisshm/guest.h: the guest side of host/guest shared memory, in C.
 *
 * A guest plays the virtual machine: it owns its memory (a memfd, sealed
 * against shrinking), hands it to a host over a Unix socket (SCM_RIGHTS, as
 * vhost-user's SET_MEM_TABLE does), and reads each received packet in place,
 * named by (shared memory handle, offset, length) as NET_BUFFER_SHARED_MEMORY
 * names it on Windows. The host's NIC writes into this memory; nothing is
 * copied on the way. The descriptors travel in shared rings in the same
 * memory (one block of each queue, NdisSharedMemoryUsageOther), so that
 * under load no system call is made per packet or per batch; the socket
 * carries only the handshake and the life cycle.
 *
 * Two ways to receive: ndisshm_guest_poll calls on_packet for each packet
 * and gives it back when the callback returns; ndisshm_guest_rx_burst hands
 * packets out in place, as rte_eth_rx_burst does, and they stay the caller's
 * until ndisshm_guest_rx_return. Either way a host that is asked to
 * (interrupt mode, the default) wakes a sleeping guest with an eventfd only
 * when it has set its need-wakeup flag; NDISSHM_GUEST_BUSY_POLL spins
 * instead, for the lowest latency.
 *
 * @code
 *   ndisshm_guest_config c; ndisshm_guest_config_init(&c);
 *   c.name = "vm1"; c.memory_bytes = 64 << 20; c.on_packet = my_fn;
 *   ndisshm_guest *g; char err[256];
 *   if (ndisshm_guest_create(&c, &g, err, sizeof err) != NDIS_STATUS_SUCCESS) ... err
 *   if (ndisshm_guest_connect(g, path, 5000, err, sizeof err) != NDIS_STATUS_SUCCESS) ... err
 *   while (ndisshm_guest_poll(g, 100, err, sizeof err) >= 0) { ... }   (SUCCESS or TIMEOUT)
 *   ndisshm_guest_destroy(g);      (says BYE if still connected)
 * @endcode
 *
 * Errors follow <ndisshm/status.h>: an NDIS_STATUS, the reason in the
 * optional error buffer.
 *
 * Reconnection (ndisshm_guest_config.reconnect_ms > 0): when the host goes
 * away (it dies, says BYE, or turns the guest away for lack of resources),
 * the guest keeps its memory, forgets every block, queue and ring of the
 * session (QUEUE_DETACHED and BLOCK_REMOVED events, then DISCONNECTED: nothing
 * the old host handed out is read after that), and poll / wait try to
 * connect again, with backoff (50 ms doubling to 2 s, each delay jittered
 * down by up to half), until a host takes it (RECONNECTED: a new session on
 * the same memory, with new queues and rings) or reconnect_ms have passed
 * since the loss; then the loss is returned as it would have been without
 * reconnection, its reason saying how long it tried. A host whose messages
 * are malformed (PROTOCOL), or that refuses for any reason but
 * NDIS_STATUS_RESOURCES, is not tried again.
 *
 * One session at a time per guest object. Not thread-safe: one thread at a
 * time calls into a given guest (callbacks run on that thread, inside poll).
 * C11 and C++.
 */
#ifndef NDISSHM_GUEST_H
#define NDISSHM_GUEST_H

#include <ndisshm/export.h>
#include <ndisshm/status.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndisshm_guest ndisshm_guest;

/** One segment of a packet, in place: NET_BUFFER_SHARED_MEMORY's handle,
 * offset and length, and where those bytes are in guest memory. */
typedef struct ndisshm_guest_segment {
    uint64_t handle;  /**< SharedMemoryHandle of the block */
    uint32_t offset;  /**< SharedMemoryOffset within the block */
    uint32_t length;  /**< SharedMemoryLength: this segment's bytes, > 0 */
    const void* data; /**< guest memory + block's guest offset + offset */
} ndisshm_guest_segment;

/** The most segments a packet has (a lookahead-split packet has 2). */
#define NDISSHM_GUEST_MAX_SEGMENTS 4

/** One received packet, valid only during the callback (from
 * ndisshm_guest_poll: it is given back when the callback returns) or until
 * ndisshm_guest_rx_return (from ndisshm_guest_rx_burst): the host reuses
 * the buffers once it is given back.
 *
 * A packet is one or more segments, read in place, in order. On a queue with
 * lookahead split (NDISSHM_GUEST_QUEUE_ATTACHED's flags) a packet longer than
 * the lookahead comes as two: its first lookahead_size bytes in a
 * ReceiveLookahead block, the rest in a ReceivePostLookahead block. `data`
 * and `length` always describe readable bytes: with one segment, the whole
 * packet (as before segments existed); with more, the first segment only, so
 * a reader that knows nothing of segments never reads past it. */
typedef struct ndisshm_guest_packet {
    uint32_t queue_id;  /**< the VMQ it arrived on */
    uint32_t length; /**< bytes at `data`: the first segment's (the whole packet's when segment_count is 1) */
    uint64_t handle; /**< first segment: SharedMemoryHandle of its block */
    uint32_t offset; /**< first segment: SharedMemoryOffset within the block */
    uint32_t segment_count; /**< 1..NDISSHM_GUEST_MAX_SEGMENTS */
    const void* data;       /**< first segment, in place: guest memory + block's guest offset + offset */
    uint32_t packet_length; /**< the whole packet: the segments' lengths summed */
    uint32_t reserved;
    const ndisshm_guest_segment* segments; /**< segment_count of them, in order; segments[0] is data/length */
    uint64_t token; /**< the library's: names the packet to ndisshm_guest_rx_return */
} ndisshm_guest_packet;

typedef enum ndisshm_guest_event_kind {
    NDISSHM_GUEST_QUEUE_ATTACHED = 1, /**< queue_id, flags, lookahead_size */
    NDISSHM_GUEST_QUEUE_DETACHED = 2, /**< queue_id (its remaining blocks are forgotten too) */
    NDISSHM_GUEST_BLOCK_ADDED = 3,    /**< handle, guest_offset, length, queue_id, usage */
    NDISSHM_GUEST_BLOCK_REMOVED = 4,  /**< handle, and the rest as it was added */
    /** The session is lost and the guest will try to reconnect (reconnect_ms
     * > 0): reason says why; the session's queues and blocks were removed
     * (events) just before. */
    NDISSHM_GUEST_DISCONNECTED = 5,
    /** A new session after DISCONNECTED: guest_id is the new host's id for
     * us, attempts how many tries it took (1: the first). Queues, blocks and
     * rings follow as messages, as after connect. */
    NDISSHM_GUEST_RECONNECTED = 6
} ndisshm_guest_event_kind;

typedef struct ndisshm_guest_event {
    ndisshm_guest_event_kind kind;
    uint32_t queue_id;
    uint32_t flags;          /**< QUEUE_ATTACHED: 0x2 (NDISSHM_QUEUE_LOOKAHEAD_SPLIT) = lookahead split */
    uint32_t lookahead_size; /**< QUEUE_ATTACHED */
    uint64_t handle;         /**< BLOCK_*: SharedMemoryHandle */
    uint64_t guest_offset;   /**< BLOCK_*: where the block starts in guest memory */
    uint32_t length;         /**< BLOCK_*: bytes */
    uint32_t usage;          /**< BLOCK_*: NDIS_SHARED_MEMORY_USAGE */
    uint32_t guest_id;       /**< RECONNECTED: the new session's id */
    uint32_t attempts;       /**< RECONNECTED: tries it took; DISCONNECTED: 0 */
    const char* reason;      /**< DISCONNECTED: why the session ended (valid during the callback); else NULL */
} ndisshm_guest_event;

typedef void (*ndisshm_guest_packet_fn)(void *context, const ndisshm_guest_packet *packet);
typedef void (*ndisshm_guest_event_fn)(void *context, const ndisshm_guest_event *event);

/** ndisshm_guest_config.flags: wait by spinning on the rings, never sleeping
 * (the host is then never asked for a wake-up: the lowest latency, a core). */
#define NDISSHM_GUEST_BUSY_POLL 0x1u

typedef struct ndisshm_guest_config {
    uint32_t struct_size;         /**< sizeof(ndisshm_guest_config): ndisshm_guest_config_init sets it */
    const char *name;             /**< 1..31 bytes, sent in HELLO (for the host's logs) */
    uint64_t memory_bytes;        /**< size of guest memory, > 0 */
    uint64_t guest_physical_base; /**< the host adds it to offsets in SG lists */
    ndisshm_guest_packet_fn on_packet; /**< may be NULL: packets are then only counted */
    ndisshm_guest_event_fn on_event;   /**< may be NULL */
    void *context;                /**< passed to both callbacks */
    uint32_t flags;               /**< NDISSHM_GUEST_BUSY_POLL, or 0: interrupt mode */
    /** How long to keep trying to get a host back after the session is lost
     * (the file comment's "Reconnection"), in ms; 0 (the default): never, the
     * loss ends the session. ndisshm guest uses NDISSHM_GUEST_RECONNECT_DEFAULT_MS. */
    uint32_t reconnect_ms;
} ndisshm_guest_config;

/** What `ndisshm guest` gives reconnect_ms unless told otherwise: a minute,
 * long enough for a host to restart, short enough that a guest whose host is
 * gone for good says so. */
#define NDISSHM_GUEST_RECONNECT_DEFAULT_MS 60000u

typedef struct ndisshm_guest_stats {
    uint64_t packets;         /**< handed to on_packet (or counted) */
    uint64_t bytes;           /**< their packet_lengths, summed */
    uint64_t bad_descriptors; /**< unknown handle, another queue's block, length 0, past the block's end: not
                                 read; one bad segment makes every descriptor of its packet bad */
    uint64_t bad_blocks;      /**< BLOCK_ADDED empty, outside guest memory or a duplicate; removal of an unknown one */
    uint64_t batches;         /**< reads of a receive ring that found entries */
    uint32_t blocks;          /**< known now */
    uint32_t queues;          /**< attached now */
    uint32_t guest_id;        /**< the host's, from HELLO_ACK (0 before) */
    uint32_t connected;       /**< 1 while the session lasts */
    uint64_t reconnects;         /**< new sessions after a loss (RECONNECTED events) */
    uint64_t reconnect_attempts; /**< tries to connect after a loss, successful or not */
    uint64_t sessions_lost;      /**< losses that started a reconnection (DISCONNECTED events) */
    uint32_t reconnecting;       /**< 1 while between sessions and still trying */
    uint32_t reserved;
} ndisshm_guest_stats;

/** Fills `config` with the defaults: everything 0 or NULL but struct_size.
 * @param config where to write sizeof(ndisshm_guest_config) bytes, as this header defines it. */
NDISSHM_API void ndisshm_guest_config_init(ndisshm_guest_config *config);

/** Creates the guest's memory (a memfd of memory_bytes, sealed against
 * shrinking, mapped read/write, zero) and nothing else.
 * @param config name, memory_bytes and callbacks; struct_size must be
 *        sizeof(ndisshm_guest_config) (ndisshm_guest_config_init).
 * @param guest receives the new guest (NULL on failure).
 * @param error optional buffer for the reason (error_bytes 0: none).
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad
 *         config (a NULL pointer, a name outside 1..31 bytes, memory_bytes 0,
 *         a struct_size this library does not know); NDIS_STATUS_RESOURCES
 *         when the memory cannot be had (the failing call and errno's text in
 *         `error`).
 * @param error_bytes its size in bytes (0: none) */
NDISSHM_API NDIS_STATUS ndisshm_guest_create(const ndisshm_guest_config *config, ndisshm_guest **guest,
                                             char *error, size_t error_bytes);

/** Connects to the host's socket and completes the handshake: HELLO, then
 * SET_MEMORY with the memfd; each answered (HELLO_ACK, MEMORY_ACK) within
 * timeout_ms. Once per guest (reconnections are the library's own).
 * With reconnect_ms > 0, a host that answers but turns the guest away for
 * lack of resources (REFUSED, status NDIS_STATUS_RESOURCES) or goes during
 * the handshake leaves the guest reconnecting: the error is returned (the
 * host's reason in `error`), stats.reconnecting is 1, and ndisshm_guest_poll
 * keeps trying as after a lost session. A socket nobody listens on is not
 * tried again: that is a wrong path more often than a restarting host.
 * @param guest from ndisshm_guest_create.
 * @param socket_path the host's guest socket.
 * @param timeout_ms for each answer; < 0: forever.
 * @param error optional buffer for the reason.
 * @return NDIS_STATUS_SUCCESS; NDISSHM_STATUS_REFUSED (the host's ERROR
 *         reason in `error`), NDISSHM_STATUS_HOST_GONE, NDISSHM_STATUS_PROTOCOL;
 *         NDIS_STATUS_FAILURE when it cannot connect (the call and errno's
 *         text in `error`), no answer came in time, or the guest had its
 *         session already; NDIS_STATUS_INVALID_PARAMETER for a NULL pointer.
 * @param error_bytes its size in bytes (0: none) */
NDISSHM_API NDIS_STATUS ndisshm_guest_connect(ndisshm_guest *guest, const char *socket_path, int timeout_ms,
                                              char *error, size_t error_bytes);

/** Waits up to timeout_ms (as ndisshm_guest_wait) for packets or a message
 * from the host, then handles what there is: a message (queue and block
 * events go to on_event; BYE and ERROR end the session, or with
 * reconnect_ms start a reconnection), or an attempt to reconnect that is
 * due (SUCCESS once it connected, after the RECONNECTED event), or up to 256
 * packets from the receive rings, each handed to on_packet if every segment
 * of it is good, and given back through the completion ring as soon as its
 * callback returns. Packets held from ndisshm_guest_rx_burst are left alone.
 * @param guest a connected guest.
 * @param timeout_ms < 0: forever.
 * @param error optional buffer for why the session ended.
 * @return NDIS_STATUS_SUCCESS (a message was handled) or NDISSHM_STATUS_TIMEOUT
 *         (nothing arrived): the session goes on (both >= 0). Anything else
 *         has ended it: NDISSHM_STATUS_HOST_BYE (a clean end),
 *         NDISSHM_STATUS_HOST_GONE, NDISSHM_STATUS_REFUSED,
 *         NDISSHM_STATUS_PROTOCOL, NDIS_STATUS_FAILURE (a system call failed,
 *         or there is no session); the reason in `error`.
 * @param error_bytes its size in bytes (0: none) */
NDISSHM_API NDIS_STATUS ndisshm_guest_poll(ndisshm_guest *guest, int timeout_ms, char *error, size_t error_bytes);

/** Waits up to timeout_ms until a receive ring has packets or a message from
 * the host is handled (queue and block events, BYE, ERROR), without taking
 * any packet. Interrupt mode sleeps (need-wakeup set, woken by an eventfd);
 * NDISSHM_GUEST_BUSY_POLL spins. Under load it finds packets at once and
 * makes no system call (the socket is looked at every 64th call). With
 * timeout_ms 0 in interrupt mode, a TIMEOUT leaves need-wakeup set: sleep
 * on ndisshm_guest_fd then, and the next packet wakes it.
 * @param guest a connected guest.
 * @param timeout_ms < 0: forever; 0: look and return.
 * @param error optional buffer for why the session ended.
 * @return NDIS_STATUS_SUCCESS (packets ready, or a message handled),
 *         NDISSHM_STATUS_TIMEOUT, or the session's end as ndisshm_guest_poll.
 * @param error_bytes its size in bytes (0: none) */
NDISSHM_API NDIS_STATUS ndisshm_guest_wait(ndisshm_guest *guest, int timeout_ms, char *error, size_t error_bytes);

/** Receives up to `max` packets in place, without waiting and without a
 * system call, as rte_eth_rx_burst does. Each stays valid (its segments
 * included) until given back with ndisshm_guest_rx_return, in any order; the
 * host reuses its buffers only then. A packet with a bad segment is not
 * handed out (counted in bad_descriptors) and goes back at once. Each
 * packet's first cache line is prefetched as it is handed out, so a caller
 * that reads the headers of the whole burst waits for them once, not once a
 * packet.
 * @param guest a connected guest (none: 0).
 * @param packets room for `max` packets.
 * @param max how many at most.
 * @return how many were written to `packets`. */
NDISSHM_API uint32_t ndisshm_guest_rx_burst(ndisshm_guest *guest, ndisshm_guest_packet *packets, uint32_t max);

/** Gives packets from ndisshm_guest_rx_burst back to the host (one
 * publication of the completion ring for them all). A packet returned
 * already, or whose session or queue has ended since, is ignored.
 * @param guest the guest they came from.
 * @param packets as rx_burst wrote them (their `token` is what counts).
 * @param count how many.
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a NULL
 *         pointer or a token this guest never gave (the others are still
 *         returned; the reason in ndisshm_guest_poll's next error). */
NDISSHM_API NDIS_STATUS ndisshm_guest_rx_return(ndisshm_guest *guest, const ndisshm_guest_packet *packets,
                                                uint32_t count);

/** A file descriptor to sleep on in the caller's own epoll or poll loop: it
 * becomes readable when the host sends a message or, once
 * ndisshm_guest_wait(guest, 0, ...) has returned TIMEOUT (need-wakeup set),
 * when packets arrive. Then call ndisshm_guest_poll or _wait. Owned by the
 * guest; the same fd for the guest's life.
 * @param guest a guest.
 * @return the fd, or -1 (NULL guest, or epoll failed). */
NDISSHM_API int ndisshm_guest_fd(ndisshm_guest *guest);

/** Says BYE and closes the connection (the host frees our blocks). The guest
 * keeps its memory and stats until destroyed; a reconnection under way
 * stops. No-op without a session.
 * @param guest may be NULL. */
NDISSHM_API void ndisshm_guest_close(ndisshm_guest *guest);

/** Closes (as above), unmaps and frees.
 * @param guest may be NULL. */
NDISSHM_API void ndisshm_guest_destroy(ndisshm_guest *guest);

/** The guest's counters.
 * @param guest may be NULL (all zero).
 * @param stats receives them; may be NULL. */
NDISSHM_API void ndisshm_guest_get_stats(const ndisshm_guest *guest, ndisshm_guest_stats *stats);

/** The guest's memory, read/write (for tests that try what a hostile guest would).
 * @param guest may be NULL.
 * @param bytes receives its size; may be NULL.
 * @return its address, or NULL for a NULL guest. */
NDISSHM_API void *ndisshm_guest_memory(const ndisshm_guest *guest, uint64_t *bytes);
/** The memfd itself, still owned by the guest.
 * @param guest may be NULL.
 * @return the fd, or -1 for a NULL guest. */
NDISSHM_API int ndisshm_guest_memory_fd(const ndisshm_guest *guest);

#ifdef __cplusplus
}
#endif

#endif /* NDISSHM_GUEST_H */
