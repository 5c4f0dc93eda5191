/** @file
 * ndisshm/hub.h: the host side of host/guest shared memory, in C: what a
 * virtual switch or NIC emulator needs to run a VMQ host without the
 * library's internal headers.
 *
 * A hub owns one adapter (the emulated VMQ NIC) on a runtime, registers the
 * guest provider on its binding (the virtual switch's), and listens on a Unix
 * socket for guests
 * (<ndisshm/guest.h>, `ndisshm guest`). Each guest hands over its memory as
 * a memfd and gets one receive queue whose buffers are carved out of that
 * memory: ndisshm_hub_deliver writes a packet straight into the guest (zero
 * copy). The switch's binding allocates every queue it gives out (the Hyper-V
 * shape), so the guest provider serves them; queue 0 is no binding's and
 * gets NDIS's own memory (SharedMemoryHandle NULL, as on Windows). Host
 * queues (ndisshm_hub_host_queue_create) get host memory instead;
 * ndisshm_hub_deliver_copy_batch sends packets through one and copies each
 * into the guest, the path a switch without VMQ takes.
 *
 * Next to the guest socket the hub serves a control socket (0600, same
 * private directory): a client sends "stat" and gets the snapshot JSON of
 * ndisshm_hub_snapshot_json back. `ndisshm stat` is such a client
 * (ndisshm_control_query).
 *
 * @code{.unparsed}
 *   ndisshm_hub_config c; ndisshm_hub_config_init(&c); c.socket_path = path;
 *   ndisshm_hub *hub; char err[256];
 *   if (ndisshm_hub_create(rt, &c, &hub, err, sizeof err) != NDIS_STATUS_SUCCESS) ... err
 *   if (ndisshm_hub_start(hub, err, sizeof err) != NDIS_STATUS_SUCCESS) ... err
 *   ndisshm_hub_wait_guests(hub, 1, 5000);
 *   ndisshm_hub_deliver(hub, queue_id, frame, frame_bytes);
 *   ndisshm_hub_destroy(hub);   (stops: guests told BYE, every block freed)
 * @endcode
 *
 * Threads: the hub runs two threads of its own (guests' control traffic, the
 * control socket). Delivery may run on any thread; packets of one queue are
 * delivered in call order. create, start, stop and destroy are for one thread
 * at a time, and no other call may race destroy. C11 and C++.
 */
#ifndef NDISSHM_HUB_H
#define NDISSHM_HUB_H

#include <ndisshm/host.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndisshm_hub ndisshm_hub;

/** One line per hub event (a guest connected, refused, gone); the string is
 * valid only during the call, which runs on one of the hub's threads. */
typedef void (*ndisshm_hub_log_fn)(void *context, const char *line);

/** Chooses one guest's queue parameters, so that only some queues get
 * lookahead split. Called on the hub's thread once the guest's memory is
 * accepted and before its queue is allocated, with the guest's id, its name
 * as sent in HELLO (printable ASCII), the queue id it is about to get, and
 * `params` holding what lookahead_split and lookahead_size say (all 0
 * without lookahead_split); it may change `params`. Parameters the NIC cannot serve (a flag other than
 * NDISSHM_QUEUE_LOOKAHEAD_SPLIT, a lookahead_size outside 1..slot_bytes)
 * refuse that guest's session, with the reason in the hub's log. */
typedef void (*ndisshm_hub_queue_params_fn)(void* context, uint32_t guest_id, const char* guest_name,
                                            uint32_t queue_id, ndisshm_queue_params* params);

typedef struct ndisshm_hub_config {
    uint32_t struct_size;       /**< sizeof(ndisshm_hub_config) */
    const char *socket_path;    /**< guests connect here; NULL or "": ndisshm_default_socket_path */
    const char *adapter_name;   /**< the hub's adapter; NULL: "nic0" */
    uint32_t max_guests;        /**< guests running at once, 1..1024; 0: 64 */
    uint32_t first_queue_id;    /**< guests' queues are numbered from here; 0: 1 */
    uint32_t blocks_per_queue;  /**< receive blocks per queue, 1..1024; 0: 4 */
    uint32_t block_bytes;       /**< bytes per receive block, 4096..1 GiB; 0: 65536 */
    uint32_t slot_bytes;        /**< largest packet, 64..block_bytes; 0: 2048 */
    uint32_t lookahead_split;   /**< 1: guests' queues are allocated with NDISSHM_QUEUE_LOOKAHEAD_SPLIT */
    uint32_t lookahead_size;    /**< bytes, with lookahead_split; 0: 128 */
    int handshake_timeout_ms;   /**< HELLO and SET_MEMORY must be done by then; 0: 5000 */
    uint64_t max_guest_memory_bytes; /**< larger guest memory is refused; 0: 64 GiB */
    int serve_control;          /**< 1 (the default): serve the control socket */
    ndisshm_hub_log_fn log;     /**< NULL: each line to stderr */
    void *log_context;          /**< passed to `log` */
    /* Added with lookahead split per queue. A caller built against the header
     * without them passes the smaller struct_size; they then read as NULL. */
    ndisshm_hub_queue_params_fn queue_params; /**< NULL: every guest's queue as lookahead_split says */
    void* queue_params_context;               /**< passed to `queue_params` */
    /* Added with the shared rings; a smaller struct_size reads them as 0. */
    uint32_t ring_size; /**< entries of each guest queue's receive and completion rings (and the most packets a
                             guest holds at once): a power of two, 64..65536; 0: 512 */
    uint32_t reserved;  /**< 0 */
} ndisshm_hub_config;

/** The defaults above, serve_control = 1. Fills sizeof(ndisshm_hub_config)
 * bytes, as this header defines it.
 * @param config where to write sizeof(ndisshm_hub_config) bytes */
NDISSHM_API void ndisshm_hub_config_init(ndisshm_hub_config *config);

/** Creates the hub's adapter on `runtime`; nothing listens yet. NULL config:
 * the defaults. struct_size may be sizeof(ndisshm_hub_config) or the size
 * before queue_params or before ring_size (the fields after it are then 0);
 * anything else is refused. NDIS_STATUS_INVALID_PARAMETER for a bad config (the reason in
 * `error`, error_bytes > 0, may be NULL), or an adapter creation's status.
 * The runtime must outlive the hub.
 * @param runtime the runtime the hub's adapter lives on; it must outlive the hub
 * @param config NULL for the defaults
 * @param hub receives the hub (NULL on failure)
 * @param error optional buffer for the reason (NULL: none; <ndisshm/status.h>)
 * @param error_bytes its size in bytes (0: none)
 * @return NDIS_STATUS_SUCCESS, or as above */
NDISSHM_API NDIS_STATUS ndisshm_hub_create(ndisshm_runtime *runtime, const ndisshm_hub_config *config,
                                           ndisshm_hub **hub, char *error, size_t error_bytes);

/** Registers the guest provider on the adapter, listens on the guest socket
 * and the control socket (made 0600 in a 0700 directory; a stale socket file
 * is replaced, a live one refused) and starts the hub's threads. Once per
 * hub. NDIS_STATUS_FAILURE with the reason in `error` otherwise.
 * @param hub from ndisshm_hub_create
 * @param error optional buffer for the reason (NULL: none; <ndisshm/status.h>)
 * @param error_bytes its size in bytes (0: none)
 * @return NDIS_STATUS_SUCCESS, or as above */
NDISSHM_API NDIS_STATUS ndisshm_hub_start(ndisshm_hub *hub, char *error, size_t error_bytes);

/** Stops serving: the control socket closes, host queues' buffers and the
 * queues are freed, each guest is told BLOCK_REMOVED, QUEUE_DETACHED and BYE,
 * its queue's buffers are freed through the guest provider, the binding goes
 * and the socket files are removed. Blocks other drivers still hold on the
 * adapter are reclaimed by NDIS with a verifier report. Idempotent; delivery
 * afterwards finds no guest.
 * @param hub from ndisshm_hub_create; NULL is ignored */
NDISSHM_API void ndisshm_hub_stop(ndisshm_hub *hub);

/** Stops (as above) and destroys the adapter (a leak report for any block
 * still on it). NULL is ignored.
 * @param hub from ndisshm_hub_create; NULL is ignored */
NDISSHM_API void ndisshm_hub_destroy(ndisshm_hub *hub);

/** The hub's adapter: the NdisHandle drivers of the same NIC allocate with
 * (queue 0 gets NDIS's own memory; the guests' queues the guest provider's).
 * @param hub from ndisshm_hub_create
 * @return the adapter's NdisHandle */
NDISSHM_API NDIS_HANDLE ndisshm_hub_adapter(const ndisshm_hub *hub);
/** The guest socket's path.
 * @param hub from ndisshm_hub_create
 * @return the path, valid while the hub lives */
NDISSHM_API const char *ndisshm_hub_socket_path(const ndisshm_hub *hub);
/** "" when the hub serves no control socket.
 * @param hub from ndisshm_hub_create
 * @return the control socket's path, valid while the hub lives */
NDISSHM_API const char *ndisshm_hub_control_path(const ndisshm_hub *hub);

/* ---- Delivery ------------------------------------------------------------ */
typedef enum ndisshm_hub_delivery {
    NDISSHM_HUB_DELIVERED = 0,
    NDISSHM_HUB_NO_GUEST = 1, /**< no running guest owns that queue */
    NDISSHM_HUB_DROPPED = 2   /**< no free slot (the guest has not given enough back), too large, or the
                                 guest's socket is full: as a NIC drops on a full ring */
} ndisshm_hub_delivery;

typedef struct ndisshm_hub_packet {
    const void *data;
    uint32_t length;
    uint32_t reserved;  /**< 0 */
} ndisshm_hub_packet;

/** The NIC received a packet for a guest's queue: written into a free slot of
 * that queue's buffers, in the guest's memory, and announced to the guest.
 * On a queue with lookahead split, its first lookahead_size bytes go into a
 * ReceiveLookahead block and the rest into a ReceivePostLookahead block: the
 * guest sees one packet of two segments (ndisshm_guest_packet.segments).
 * @param hub from ndisshm_hub_create
 * @param queue_id a running guest's queue
 * @param data the packet
 * @param length its bytes, 1..slot_bytes
 * @return NDISSHM_HUB_DELIVERED, NDISSHM_HUB_NO_GUEST or NDISSHM_HUB_DROPPED */
NDISSHM_API ndisshm_hub_delivery ndisshm_hub_deliver(ndisshm_hub *hub, uint32_t queue_id, const void *data,
                                                     uint32_t length);

/** As ndisshm_hub_deliver for a batch: one lock and one publication of the
 * guest's receive ring for them all, no system call unless the guest sleeps
 * (need-wakeup). Up to 1024 packets, and no more than the ring has room for
 * (a split packet takes two entries). Returns how many were delivered:
 * always a prefix of `packets`; the rest were dropped (see
 * NDISSHM_HUB_DROPPED; also when the ring is full) and may be offered again,
 * or the guest is gone.
 * @param hub from ndisshm_hub_create
 * @param queue_id a running guest's queue
 * @param packets the packets
 * @param count how many
 * @return how many were delivered, a prefix of `packets` */
NDISSHM_API size_t ndisshm_hub_deliver_batch(ndisshm_hub *hub, uint32_t queue_id, const ndisshm_hub_packet *packets,
                                             size_t count);

/* ---- Host queues: the copy path ------------------------------------------ */
/** A receive queue of the adapter that no guest owns: allocated (with
 * `params`, NULL for none) by the switch's binding, which so owns it, and
 * completed; then its receive buffers are allocated as the guests' are, and
 * the guest provider serves them from host memory, each with a
 * SharedMemoryHandle of the provider's own (not NDIS's NULL), which the copy
 * path names its packets by. The id must lie outside the guests' range [first_queue_id,
 * first_queue_id + max_guests) and not be 0. NDIS_STATUS_INVALID_PARAMETER
 * for a bad or taken id, or the failing call's status. After start.
 * @param hub from ndisshm_hub_create
 * @param queue_id outside the guests' range, not 0
 * @param params NULL for none (else as ndisshm_queue_allocate takes them)
 * @return NDIS_STATUS_SUCCESS, or as above */
NDISSHM_API NDIS_STATUS ndisshm_hub_host_queue_create(ndisshm_hub *hub, uint32_t queue_id,
                                                      const ndisshm_queue_params *params);
/** Frees the queue's buffers, then the queue. INVALID_PARAMETER if unknown.
 * @param hub from ndisshm_hub_create
 * @param queue_id a host queue
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER if it is none */
NDISSHM_API NDIS_STATUS ndisshm_hub_host_queue_free(ndisshm_hub *hub, uint32_t queue_id);

/** The copy path, for comparison with ndisshm_hub_deliver_batch: the NIC
 * writes each packet into a free slot of host queue `host_queue_id` (host
 * memory), then the host copies it from there into guest queue
 * `guest_queue_id` (as deliver_batch does), and the host slots are given back.
 * Returns how many reached the guest, a prefix of `packets`.
 * @param hub from ndisshm_hub_create
 * @param host_queue_id a host queue (ndisshm_hub_host_queue_create)
 * @param guest_queue_id a running guest's queue
 * @param packets the packets
 * @param count how many
 * @return how many reached the guest, a prefix of `packets` */
NDISSHM_API size_t ndisshm_hub_deliver_copy_batch(ndisshm_hub *hub, uint32_t host_queue_id, uint32_t guest_queue_id,
                                                  const ndisshm_hub_packet *packets, size_t count);

/* ---- Guests, queues, statistics -------------------------------------------- */
typedef struct ndisshm_hub_guest_info {
    uint32_t guest_id;
    uint32_t queue_id;
    uint64_t memory_bytes;
    uint64_t guest_physical_base;
    char name[32];  /**< as the guest sent it in HELLO, printable ASCII */
} ndisshm_hub_guest_info;

/** The running guests (those with a queue), by queue id. Fills up to
 * `capacity` entries (guests may be NULL when capacity is 0); returns how
 * many there are, which may be more.
 * @param hub from ndisshm_hub_create
 * @param guests receives up to `capacity` entries; may be NULL when capacity is 0
 * @param capacity entries `guests` holds
 * @return how many guests run, which may be more than capacity */
NDISSHM_API size_t ndisshm_hub_list_guests(const ndisshm_hub *hub, ndisshm_hub_guest_info *guests, size_t capacity);

typedef enum ndisshm_hub_queue_kind {
    NDISSHM_HUB_QUEUE_DEFAULT = 0, /**< queue 0: host memory, the hub puts no buffers there */
    NDISSHM_HUB_QUEUE_GUEST = 1,   /**< a running guest's: its buffers are the guest's memory */
    NDISSHM_HUB_QUEUE_HOST = 2     /**< ndisshm_hub_host_queue_create: host memory */
} ndisshm_hub_queue_kind;

typedef struct ndisshm_hub_queue_info {
    uint32_t queue_id;
    uint32_t kind;            /**< ndisshm_hub_queue_kind */
    uint32_t guest_id;        /**< NDISSHM_HUB_QUEUE_GUEST; else 0 */
    uint32_t flags;           /**< the queue's ndisshm_queue_params */
    uint32_t lookahead_size;
    uint32_t lookahead_blocks; /**< with lookahead split: ReceiveLookahead blocks of its buffers (the others
                                  are ReceivePostLookahead); else 0 */
    uint64_t slots;           /**< receive slots in its buffers */
    uint64_t received;        /**< packets the NIC wrote into them */
    uint64_t ring_full;       /**< packets refused: no free slot */
    uint64_t too_large;       /**< packets refused: longer than a slot */
    uint64_t returned;        /**< slots given back */
    uint64_t outstanding;     /**< slots holding a packet now */
    ndisshm_usage_stats books; /**< ndisshm_queue_get_stats: the runtime's books for the queue (a guest's
                                  queue: its receive blocks and its rings' block) */
    uint32_t post_lookahead_blocks; /**< with lookahead split: ReceivePostLookahead blocks; else 0 */
    uint32_t ring_size;       /**< a guest's queue: entries of its receive and completion rings; else 0 */
} ndisshm_hub_queue_info;

/** Queue 0, the running guests' queues and the host queues, by id; as
 * ndisshm_hub_list_guests for capacity and the result.
 * @param hub from ndisshm_hub_create
 * @param queues receives up to `capacity` entries; may be NULL when capacity is 0
 * @param capacity entries `queues` holds
 * @return how many queues there are, which may be more than capacity */
NDISSHM_API size_t ndisshm_hub_list_queues(const ndisshm_hub *hub, ndisshm_hub_queue_info *queues, size_t capacity);

typedef struct ndisshm_hub_stats {
    uint64_t accepted;    /**< guest connections */
    uint64_t running;     /**< guests with a queue now */
    uint64_t closed;      /**< sessions ended, for any reason */
    uint64_t refused;     /**< ended by the hub: bad handshake or message, no room */
    uint64_t delivered;   /**< packets delivered into guests (both paths) */
    uint64_t dropped;     /**< packets offered and not delivered (see NDISSHM_HUB_DROPPED) */
    uint64_t returned;    /**< packets guests gave back through their completion rings */
    uint64_t copied;      /**< of `delivered`, those that went through a host queue */
    uint64_t host_queues; /**< now */
    uint64_t control_requests; /**< answered on the control socket */
    uint64_t kicks;       /**< eventfd writes to wake a sleeping guest (need-wakeup); none under load */
} ndisshm_hub_stats;
/** The hub's counters now.
 * @param hub from ndisshm_hub_create
 * @param stats receives them; may be NULL */
NDISSHM_API void ndisshm_hub_get_stats(const ndisshm_hub *hub, ndisshm_hub_stats *stats);

/** Waits until at least `count` guests are running and ready for packets
 * (their handshake done, rings attached: a delivery to their queue can
 * land), or timeout_ms passes (< 0: forever). 1 if they are, 0 otherwise.
 * @param hub from ndisshm_hub_create
 * @param count guests to wait for
 * @param timeout_ms < 0: forever
 * @return 1 if they run, 0 if the time ran out */
NDISSHM_API int ndisshm_hub_wait_guests(const ndisshm_hub *hub, uint32_t count, int timeout_ms);

/* ---- Control socket and snapshot ------------------------------------------- */
/** The hub's state as one JSON object (UTF-8, NUL-terminated): "version",
 * "adapters" (books: total, by usage, by node; provider), "providers",
 * "queues", "guests", "memory" (ndisshm_runtime_get_memory_stats), "verifier"
 * (counts by kind, recent messages), "hub" (ndisshm_hub_stats), "sessions"
 * (why the last ones ended). As snprintf: writes at most buffer_bytes bytes
 * (buffer may be NULL when buffer_bytes is 0) and returns the length the
 * whole text needs, without its NUL. The format is documented in
 * docs/control-socket.md; keys are only ever added.
 * @param hub from ndisshm_hub_create
 * @param buffer receives the text; may be NULL when buffer_bytes is 0
 * @param buffer_bytes its size
 * @return the length of the whole text, without its NUL (as snprintf) */
NDISSHM_API size_t ndisshm_hub_snapshot_json(const ndisshm_hub *hub, char *buffer, size_t buffer_bytes);

/** A ndisshm_violation_callback: keeps the last few violations' messages for
 * the snapshot ("verifier.recent"). `hub` is the ndisshm_hub. Register it
 * with ndisshm_runtime_set_violation_callback, or call it from your own.
 * @param hub the ndisshm_hub, as the callback's context
 * @param violation as the runtime reports it */
NDISSHM_API void ndisshm_hub_record_violation(void *hub, const ndisshm_violation *violation);

/** Where a host puts its guest socket by default:
 * $XDG_RUNTIME_DIR/ndisshm/host.sock, else /run/ndisshm/host.sock for root,
 * else /tmp/ndisshm-UID/host.sock (UID: the effective user id). As snprintf
 * for buffer and result.
 * @param buffer receives the path; may be NULL when buffer_bytes is 0
 * @param buffer_bytes its size
 * @return the path's length (as snprintf) */
NDISSHM_API size_t ndisshm_default_socket_path(char *buffer, size_t buffer_bytes);

/** The control socket that goes with a guest socket: a trailing ".sock"
 * becomes ".ctl", else ".ctl" is appended. As snprintf.
 * @param socket_path a guest socket's path
 * @param buffer receives the path; may be NULL when buffer_bytes is 0
 * @param buffer_bytes its size
 * @return the path's length (as snprintf) */
NDISSHM_API size_t ndisshm_control_path_for(const char *socket_path, char *buffer, size_t buffer_bytes);

/** A client of the control socket: connects to `path`, sends `request` and
 * hands back the reply.
 * @param path a host's guest socket (its control socket is then
 *        ndisshm_control_path_for(path)) or a control socket (a path ending in ".ctl").
 * @param request "stat".
 * @param timeout_ms for the answer.
 * @param reply receives the reply, NUL-terminated, to be released with
 *        ndisshm_control_free; NULL on failure.
 * @param error optional buffer for the reason.
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_FAILURE when no host answers there
 *         in time; NDIS_STATUS_NOT_SUPPORTED when the host refused the
 *         request; NDIS_STATUS_RESOURCES; NDIS_STATUS_INVALID_PARAMETER for a NULL pointer.
 * @param error_bytes its size in bytes (0: none) */
NDISSHM_API NDIS_STATUS ndisshm_control_query(const char *path, const char *request, int timeout_ms, char **reply,
                                              char *error, size_t error_bytes);
/** Releases a reply of ndisshm_control_query.
 * @param reply may be NULL. */
NDISSHM_API void ndisshm_control_free(char *reply);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NDISSHM_HUB_H */
