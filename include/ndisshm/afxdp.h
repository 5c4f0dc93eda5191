/** @file
 * ndisshm/afxdp.h: the AF_XDP NIC of a hub, in C: real kernel packets,
 * written by the kernel straight into guests' memory.
 *
 * Attached to a hub (<ndisshm/hub.h>) before it starts, the NIC becomes the
 * hub's queue driver: it makes a private wire of its own (two network
 * namespaces, one veth pair per guest queue it feeds) and, when guest queue
 * first_queue_id + i starts, allocates that queue's UMEM through
 * NdisAllocateSharedMemory for the queue, so the guest provider carves it out
 * of the guest's memory, and binds an AF_XDP socket (copy mode: veth has no
 * zero-copy driver) on the receive end of link i to it. Each UDP datagram
 * sent into the queue (ndisshm_afxdp_send) then becomes one Ethernet frame
 * the kernel writes into a frame of the guest's memory; the guest reads it in
 * place, its payload NDISSHM_AFXDP_UDP_PAYLOAD_OFFSET bytes in, and gives it
 * back (its completion ring), which returns the frame to the kernel.
 *
 * @code{.unparsed}
 *   ndisshm_hub_create(rt, &hc, &hub, err, sizeof err);
 *   ndisshm_afxdp_config c; ndisshm_afxdp_config_init(&c); c.links = 2;
 *   if (ndisshm_afxdp_attach(hub, &c, &nic, err, sizeof err) != NDIS_STATUS_SUCCESS) ... err
 *   ndisshm_hub_start(hub, err, sizeof err);
 *   ... a guest connects, gets queue 1; ndisshm_afxdp_get_queue_stats(nic, 1, &s) until s.running
 *   ndisshm_afxdp_send(nic, 1, payloads, n, &sent, err, sizeof err);
 *   ndisshm_hub_stop(hub); ndisshm_afxdp_destroy(nic); ndisshm_hub_destroy(hub);
 * @endcode
 *
 * Flow control: a frame is busy from the moment its datagram is sent until
 * the guest gives its packet back, so a sender that keeps
 * sent - ndisshm_afxdp_returned(queue) below frames_per_queue (and, on veth,
 * below 256, its transmit ring) never makes the kernel drop.
 *
 * Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), network namespaces, iproute2's
 * `ip` and AF_XDP: ndisshm_afxdp_unavailable_reason says which is missing.
 *
 * Library: ndisshm_afxdp (it needs libxdp and libbpf, which libndisshm does
 * not), built in the tree and not installed. It brings the static library: a
 * program links it instead of libndisshm.so, never both (two runtimes would
 * not know each other's handles).
 *
 * Threads: attach and destroy on the thread that runs the hub's life cycle;
 * send, returned and get_queue_stats from any thread (one sender per queue
 * at a time keeps its datagrams in order). C11 and C++.
 */
#ifndef NDISSHM_AFXDP_H
#define NDISSHM_AFXDP_H

#include <ndisshm/hub.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The UDP port ndisshm_afxdp_send sends to. */
#define NDISSHM_AFXDP_UDP_PORT 50000
/** Where a datagram's payload starts in the frame a guest reads: Ethernet
 * (14), IPv4 without options (20) and UDP (8) headers. */
#define NDISSHM_AFXDP_UDP_PAYLOAD_OFFSET 42
/** The largest payload: a 1500-byte MTU less the IPv4 and UDP headers. */
#define NDISSHM_AFXDP_MAX_PAYLOAD 1472
/** The most datagrams one ndisshm_afxdp_send takes. */
#define NDISSHM_AFXDP_MAX_BATCH 1024

typedef struct ndisshm_afxdp ndisshm_afxdp;

typedef struct ndisshm_afxdp_config {
    uint32_t struct_size;       /**< sizeof(ndisshm_afxdp_config) */
    uint32_t links;             /**< veth pairs, one per guest queue fed, from the hub's first_queue_id on:
                                     1..the hub's max_guests; 0: 1 */
    uint32_t frames_per_queue;  /**< UMEM frames of each guest queue, 64..16384; 0: 1024 */
    uint32_t frame_bytes;       /**< 2048 or 4096; 0: 4096 */
    const char *tag;            /**< names the wire's namespaces and interfaces: 1..8 of a-z0-9; NULL: "ndx" */
} ndisshm_afxdp_config;

/** The defaults above. Fills sizeof(ndisshm_afxdp_config) bytes.
 * @param config what to fill; NULL is ignored */
NDISSHM_API void ndisshm_afxdp_config_init(ndisshm_afxdp_config *config);

/** Why the AF_XDP NIC cannot run here (not root, namespaces or AF_XDP
 * refused, no `ip`), or "" when it can.
 * @param buffer where the reason goes, NUL-terminated; may be NULL when buffer_bytes is 0
 * @param buffer_bytes its size
 * @return as snprintf: the length the whole reason needs, without its NUL (0: it can run) */
NDISSHM_API size_t ndisshm_afxdp_unavailable_reason(char *buffer, size_t buffer_bytes);

/** Makes the wire (first removing namespaces that killed processes left
 * behind) and becomes `hub`'s queue driver. After ndisshm_hub_create, before
 * ndisshm_hub_start. A guest whose memory cannot hold frames_per_queue *
 * frame_bytes bytes more than the hub's own blocks_per_queue * block_bytes
 * is refused at SET_MEMORY, with the reason.
 * @param hub a created hub, not started, with no queue driver yet
 * @param config NULL: the defaults; struct_size must be sizeof(ndisshm_afxdp_config)
 * @param nic receives the NIC, to be destroyed with ndisshm_afxdp_destroy
 * @param error the reason on failure, NUL-terminated (may be NULL when error_bytes is 0)
 * @param error_bytes its size
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad config, a started hub
 *         or one with a queue driver; NDIS_STATUS_FAILURE when the wire or a sender could not be
 *         made (not root, no `ip`, ...) */
NDISSHM_API NDIS_STATUS ndisshm_afxdp_attach(ndisshm_hub *hub, const ndisshm_afxdp_config *config,
                                             ndisshm_afxdp **nic, char *error, size_t error_bytes);

/** Stops the hub if it still runs (ndisshm_hub_stop: each queue's socket is
 * closed before its UMEM is freed), then removes the wire: the namespaces
 * and every veth in them. Before ndisshm_hub_destroy (the hub must still
 * exist); the hub cannot be started again afterwards.
 * @param nic from ndisshm_afxdp_attach; NULL is ignored */
NDISSHM_API void ndisshm_afxdp_destroy(ndisshm_afxdp *nic);

/** One veth pair of the wire: link i feeds guest queue first_queue_id + i
 * of the hub. */
typedef struct ndisshm_afxdp_link {
    char rx_ifname[16];    /**< the receive end, where the queue's AF_XDP socket binds */
    char tx_ifname[16];    /**< the transmit end, where datagrams are sent */
    char rx_address[16];   /**< IPv4, dotted: datagrams go there */
    char tx_address[16];   /**< IPv4, dotted */
    char rx_netns[64];     /**< the receive end's network namespace (a /run/netns path) */
    char tx_netns[64];     /**< the transmit end's */
} ndisshm_afxdp_link;

/** The wire, one entry per link in queue order.
 * @param nic the NIC
 * @param links filled with up to `capacity` entries (may be NULL when capacity is 0)
 * @param capacity room in `links`
 * @return how many links there are, which may be more than capacity */
NDISSHM_API size_t ndisshm_afxdp_links(const ndisshm_afxdp *nic, ndisshm_afxdp_link *links, size_t capacity);

/** Which link feeds guest queue `queue_id`.
 * @param nic the NIC
 * @param queue_id a guest queue of the hub
 * @return its index in ndisshm_afxdp_links, or -1 when no link feeds the queue */
NDISSHM_API int ndisshm_afxdp_link_of(const ndisshm_afxdp *nic, uint32_t queue_id);

/** Sends UDP datagrams into guest queue `queue_id`, one sendmmsg for the
 * batch, from the transmit end of the queue's link to NDISSHM_AFXDP_UDP_PORT.
 * Send only once the queue runs (ndisshm_afxdp_queue_stats.running): a
 * datagram sent before its socket is bound goes to the kernel's stack.
 * @param nic the NIC
 * @param queue_id the guest queue the datagrams are for
 * @param payloads each datagram's payload (data, length <= NDISSHM_AFXDP_MAX_PAYLOAD)
 * @param count 1..NDISSHM_AFXDP_MAX_BATCH
 * @param sent receives how many the kernel took: a prefix of `payloads`
 * @param error the reason of a FAILURE (may be NULL when error_bytes is 0)
 * @param error_bytes its size
 * @return NDIS_STATUS_SUCCESS (*sent may be less than count: offer the rest again);
 *         NDIS_STATUS_RESOURCES, *sent = 0: the link's transmit queue is full, offer them again later;
 *         NDIS_STATUS_INVALID_PARAMETER: no link feeds the queue, or a bad count or length;
 *         NDIS_STATUS_FAILURE: the socket failed, the reason in `error` */
NDISSHM_API NDIS_STATUS ndisshm_afxdp_send(ndisshm_afxdp *nic, uint32_t queue_id, const ndisshm_hub_packet *payloads,
                                           size_t count, size_t *sent, char *error, size_t error_bytes);

/** Packets of guest queue `queue_id` its guest gave back since the queue
 * started (see flow control above).
 * @param nic the NIC
 * @param queue_id a guest queue of the hub
 * @return the count; 0 for a queue not running or fed by no link */
NDISSHM_API uint64_t ndisshm_afxdp_returned(const ndisshm_afxdp *nic, uint32_t queue_id);

/** One guest queue as the NIC and the kernel see it. */
typedef struct ndisshm_afxdp_queue_stats {
    uint32_t running;                /**< 1 once its UMEM is registered and its socket bound: send then */
    uint32_t frames;                 /**< UMEM frames */
    uint64_t indicated;              /**< packets announced to the guest */
    uint64_t filtered;               /**< frames for another MAC, given back unseen */
    uint64_t returned;               /**< given back by the guest */
    uint64_t refused;                /**< give-backs of something not held (stale, forged, twice) */
    uint64_t outstanding;            /**< held by the guest now */
    uint64_t bad_descriptors;        /**< kernel descriptors naming no frame of the UMEM (should stay 0) */
    uint64_t kernel_rx_dropped;      /**< XDP_STATISTICS: dropped for other reasons */
    uint64_t kernel_rx_invalid;      /**< a fill ring entry that was no frame of the UMEM */
    uint64_t kernel_rx_ring_full;    /**< no room on the receive ring */
    uint64_t kernel_fill_ring_empty; /**< no frame to write into: the guest gave none back */
} ndisshm_afxdp_queue_stats;

/** The queue's figures (all 0 while it does not run).
 * @param nic the NIC
 * @param queue_id a guest queue of the hub
 * @param stats filled on success
 * @return NDIS_STATUS_SUCCESS, or NDIS_STATUS_INVALID_PARAMETER when no link feeds the queue */
NDISSHM_API NDIS_STATUS ndisshm_afxdp_get_queue_stats(const ndisshm_afxdp *nic, uint32_t queue_id,
                                                      ndisshm_afxdp_queue_stats *stats);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NDISSHM_AFXDP_H */
