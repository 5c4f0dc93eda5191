/** @file
 * ndisshm/host.h: what the PnP manager and NDIS would set up on Windows, and
 * user space has to ask for: a runtime, miniport adapters, provider bindings
 * and receive queues; plus the verifier's reports and the books' statistics.
 *
 * Everything here is ndisshm's own API (the ndisshm_ prefix), not NDIS's. The
 * NDIS calls themselves are in <ndis/ndis_shm.h>. C11 and C++.
 *
 * Object model, as in NDIS:
 * @code{.unparsed}
 *   runtime  1-* adapter            (NdisHandle of a miniport)
 *   adapter  1-* receive queue      (queue 0, the default queue, always exists)
 *   adapter  0-* provider binding   (NdisHandle of a filter or protocol)
 *   binding  0-* receive queue      (the queues it allocated: it owns them)
 *   adapter  1-* block              (one per NdisAllocateSharedMemory, linked
 *                                    to its adapter, binding and queue)
 * @endcode
 * Who serves an allocation (spec section 7): for a queue a binding owns, the
 * provider registered on that binding; for queue 0 and the queues no
 * providing binding owns, a provider registered with the adapter's own handle;
 * else NDIS's own memory (one contiguous element, SharedMemoryHandle NULL).
 * This is the Hyper-V shape: the virtual switch's binding allocates the
 * guests' queues and serves them from guest memory; queue 0 stays in host
 * memory.
 * Destroying a parent with blocks still outstanding is a verifier violation;
 * the runtime then frees each block through its own provider, so nothing
 * leaks. Callers must not use a handle while another thread destroys it.
 */
#ifndef NDISSHM_HOST_H
#define NDISSHM_HOST_H

#include <ndis/ndis_shm.h>
#include <ndisshm/export.h>
#include <ndisshm/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The library's version.
 * @return "MAJOR.MINOR.PATCH", a static string. */
NDISSHM_API const char *ndisshm_version(void);
/** The ABI the library in this process implements.
 * @return its NDISSHM_ABI_VERSION (<ndisshm/export.h>); a program built
 * against another value should not go on. */
NDISSHM_API int ndisshm_abi_version(void);

/** Name of a usage.
 * @param usage any value.
 * @return "Receive", ..., or "Invalid" for a value outside NDIS_SHARED_MEMORY_USAGE; static. */
NDISSHM_API const char *ndisshm_usage_name(NDIS_SHARED_MEMORY_USAGE usage);

/* ---- Verifier ----------------------------------------------------------- */
typedef enum ndisshm_violation_kind {
    NDISSHM_VIOLATION_BAD_HANDLE = 1,        /**< NdisHandle is no live adapter/binding */
    NDISSHM_VIOLATION_BAD_PARAMETERS,        /**< NULL pointer, header, flags, usage, queue, node */
    NDISSHM_VIOLATION_BAD_LENGTH,            /**< Length 0 or over the maximum */
    NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT,   /**< caller's SG list too small */
    NDISSHM_VIOLATION_DOUBLE_FREE,           /**< block already freed */
    NDISSHM_VIOLATION_WRONG_ADAPTER,         /**< block belongs to another adapter */
    NDISSHM_VIOLATION_GARBAGE_HANDLE,        /**< not a block handle at all */
    NDISSHM_VIOLATION_IRQL,                  /**< call above PASSIVE_LEVEL, or bad raise/lower */
    NDISSHM_VIOLATION_PROVIDER_NO_CONTEXT,   /**< provider said success, gave no context */
    NDISSHM_VIOLATION_PROVIDER_BAD_RESULT,   /**< provider said success, outputs inconsistent */
    NDISSHM_VIOLATION_BAD_REGISTRATION,      /**< provider characteristics malformed */
    NDISSHM_VIOLATION_LEAK,                  /**< block outstanding at teardown */
    NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS,
    NDISSHM_VIOLATION_BINDING_DETACHED_WITH_BLOCKS,
    /** A call Windows accepts although the documentation says otherwise (a
     * zeroed Header, an unknown Usage or Flags bit, a PreferredNode past the
     * last node, a provider's PENDING, a registration's Revision or Size): it
     * goes ahead exactly as on Windows, and this finding tells the developer. */
    NDISSHM_VIOLATION_LENIENT,
    NDISSHM_VIOLATION_KIND_COUNT
} ndisshm_violation_kind;

typedef struct ndisshm_violation {
    ndisshm_violation_kind kind;
    const char *kind_name;  /**< "double-free", ... */
    const char *call;       /**< "NdisFreeSharedMemory", ... */
    const char *message;    /**< one line a person can act on; names adapter, handle, site */
    NDIS_HANDLE adapter;    /**< may be NULL */
    NDIS_HANDLE handle;     /**< the offending handle, may be NULL */
    const char *alloc_file; /**< where the block was allocated, or NULL */
    int alloc_line;
} ndisshm_violation;

/** Called once per violation, on the thread that made the bad call. The
 * pointers are valid only during the call. */
typedef void (*ndisshm_violation_callback)(void *context, const ndisshm_violation *violation);

/* ---- Runtime ------------------------------------------------------------ */
typedef struct ndisshm_runtime ndisshm_runtime;

/** Which pages back the default provider's arenas. */
typedef enum ndisshm_page_mode {
    NDISSHM_PAGES_AUTO = 0, /**< 2 MiB huge pages (MFD_HUGETLB) when the machine has them free, else BASE */
    NDISSHM_PAGES_HUGE = 1, /**< 2 MiB huge pages or nothing: runtime creation fails without them */
    NDISSHM_PAGES_BASE = 2  /**< 4 KiB pages, transparent huge pages advised (MADV_HUGEPAGE) */
} ndisshm_page_mode;

/** What SG elements of the default provider's blocks carry. */
typedef enum ndisshm_address_mode {
    NDISSHM_ADDRESS_IOVA = 0,         /**< iova_base + offset in the arena (IOVA = VA by default): one element */
    NDISSHM_ADDRESS_PHYSICAL = 1,     /**< physical addresses from /proc/self/pagemap, one element per
                                         physically contiguous run, pages locked while allocated; root only */
    NDISSHM_ADDRESS_ARENA_OFFSET = 2  /**< offset in the arena's memfd (what another process maps): one element */
} ndisshm_address_mode;

/** Whether a background thread clears freed blocks of the default provider
 * before they are asked for (at SCHED_IDLE priority, so only on idle CPUs). */
typedef enum ndisshm_zero_ahead {
    NDISSHM_ZERO_AHEAD_AUTO = 0, /**< on where the process may use 3 CPUs or more, else off */
    NDISSHM_ZERO_AHEAD_ON = 1,
    NDISSHM_ZERO_AHEAD_OFF = 2
} ndisshm_zero_ahead;

typedef struct ndisshm_runtime_config {
    uint32_t struct_size;       /**< sizeof(ndisshm_runtime_config) */
    int verifier;               /**< 1 on, 0 off (only the checks that keep the books safe remain) */
    int report_to_stderr;       /**< 1: print each violation to stderr as well */
    uint32_t max_block_bytes;   /**< Length above this: NDIS_STATUS_INVALID_LENGTH; 0: 1 GiB */
    uint64_t arena_capacity_bytes;  /**< address space of the default provider's arena; 0: 16 GiB */
    uint64_t iova_base;         /**< SG addresses: iova_base + arena offset; 0: IOVA = VA */
    uint64_t max_blocks;        /**< book-keeping capacity (outstanding + quarantine); 0: 4M */
    uint32_t page_mode;         /**< ndisshm_page_mode; NDISSHM_PAGES=auto|huge|base overrides the default */
    uint32_t address_mode;      /**< ndisshm_address_mode */
    /** Reused blocks at least this large are zeroed by releasing their pages
     * (fallocate punch hole) rather than memset; 0: the measured default,
     * UINT64_MAX: always memset. */
    uint64_t zero_by_release_bytes;
    uint64_t adapter_limit_bytes; /**< cap on each adapter's outstanding bytes (Length); 0: none */
    uint64_t queue_limit_bytes;   /**< cap on each queue's outstanding bytes; 0: none */
    /** ndisshm_zero_ahead; NDISSHM_ZERO_AHEAD=0|1 overrides the default. Added
     * after the fields above: a config whose struct_size ends before it (built
     * against an older header) is taken with this field's default. */
    uint32_t zero_ahead;
} ndisshm_runtime_config;

/** Defaults: verifier on (off with NDISSHM_VERIFIER=0 in the environment),
 * stderr reports on (off with NDISSHM_QUIET=1), zeroing ahead on where the
 * process may use 3 CPUs or more (NDISSHM_ZERO_AHEAD=0|1 overrides).
 *
 * What the default provider's blocks hold when handed out: zeros, unless the
 * block goes back to the adapter that freed it. A block of at most 64 KiB that
 * an adapter freed may be handed to that same adapter again as it left it,
 * NOT cleared (the adapter only finds bytes it wrote itself, as Linux's
 * page_pool recycles pages within a pool); a block that goes to any other
 * adapter, or to an adapter created later, is always cleared first. A driver
 * that needs zeros on every allocation clears the block itself, as it would
 * on Windows, where NdisAllocateSharedMemory promises no zeros. The owner is
 * the adapter, not the queue: a driver that gives its queues to different
 * tenants clears their blocks itself (docs/security.md).
 * @param config where to write sizeof(ndisshm_runtime_config) bytes */
NDISSHM_API void ndisshm_runtime_config_init(ndisshm_runtime_config *config);

/** Creates a runtime: what NDIS is for its adapters.
 * @param config NULL for the defaults; else struct_size must be
 *        sizeof(ndisshm_runtime_config) (ndisshm_runtime_config_init sets it),
 *        or offsetof(ndisshm_runtime_config, zero_ahead) for a caller built
 *        before that field (it gets the field's default).
 * @param runtime receives the runtime (NULL on failure).
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad config
 *         (which field, in `error`); NDIS_STATUS_RESOURCES when its memory
 *         cannot be set up (the failing call and errno's text in `error`).
 * @param error optional buffer for the reason (NULL: none; <ndisshm/status.h>)
 * @param error_bytes its size in bytes (0: none) */
NDISSHM_API NDIS_STATUS ndisshm_runtime_create(const ndisshm_runtime_config *config, ndisshm_runtime **runtime,
                                               char *error, size_t error_bytes);

/** Tears everything down: each adapter as by ndisshm_adapter_destroy, with a
 * leak report for every block still outstanding. NULL is ignored.
 * @param runtime from ndisshm_runtime_create; NULL is ignored */
NDISSHM_API void ndisshm_runtime_destroy(ndisshm_runtime *runtime);

/** Sends each of the runtime's violations to `callback` as well (and to stderr while report_to_stderr is 1).
 * @param runtime from ndisshm_runtime_create
 * @param callback NULL: none
 * @param context passed to `callback` */
NDISSHM_API void ndisshm_runtime_set_violation_callback(ndisshm_runtime *runtime,
                                                        ndisshm_violation_callback callback, void *context);
/** For violations no runtime can be found for (a garbage NdisHandle, IRQL
 * misuse outside any call). Default: stderr only.
 * @param callback NULL: stderr only
 * @param context passed to `callback` */
NDISSHM_API void ndisshm_set_global_violation_callback(ndisshm_violation_callback callback, void *context);
/** How many violations of one kind the runtime has reported.
 * @param runtime from ndisshm_runtime_create; NULL: 0
 * @param kind which kind
 * @return the count since the runtime was created */
NDISSHM_API uint64_t ndisshm_runtime_violation_count(const ndisshm_runtime *runtime, ndisshm_violation_kind kind);
/** How many violations no runtime could be named for.
 * @return the count since the process started */
NDISSHM_API uint64_t ndisshm_global_violation_count(void);

/* ---- Adapters, queues, bindings ----------------------------------------- */

/** A miniport adapter. *adapter is the NdisHandle for NdisAllocateSharedMemory.
 * Its default queue (NDIS_DEFAULT_RECEIVE_QUEUE_ID) exists from the start.
 * NDIS_STATUS_RESOURCES when the process already has the maximum (1024).
 * @param runtime from ndisshm_runtime_create
 * @param name for reports and `ndisshm stat`; NULL: "adapter<N>"
 * @param adapter receives the adapter's NdisHandle
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a NULL pointer; NDIS_STATUS_RESOURCES at the maximum */
NDISSHM_API NDIS_STATUS ndisshm_adapter_create(ndisshm_runtime *runtime, const char *name, NDIS_HANDLE *adapter);

/** Detaches every binding, frees every queue and reports and frees every block
 * still outstanding (through its provider), then invalidates the handle.
 * @param adapter from ndisshm_adapter_create; anything else is a verifier report, and nothing happens */
NDISSHM_API void ndisshm_adapter_destroy(NDIS_HANDLE adapter);

/** A receive queue with this id (non-zero), allocated and completed at once.
 * NDIS_STATUS_INVALID_PARAMETER if it exists already or the id is 0.
 * @param adapter the adapter's handle (a queue of the miniport's own), or a
 *        binding's (ndisshm_binding_create): the binding that allocates a queue
 *        (what sends OID_RECEIVE_FILTER_ALLOCATE_QUEUE) owns it, and its
 *        provider serves the queue
 * @param queue_id the new queue's id, not 0
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle (a verifier report), id 0 or an id in use */
NDISSHM_API NDIS_STATUS ndisshm_queue_create(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id);

#define NDISSHM_QUEUE_LOOKAHEAD_SPLIT 0x00000002 /**< = NDIS_RECEIVE_QUEUE_PARAMETERS_LOOKAHEAD_SPLIT_REQUIRED */
/** A receive queue's parameters (NDIS_RECEIVE_QUEUE_PARAMETERS' Flags and LookaheadSize). */
typedef struct ndisshm_queue_params {
    uint32_t struct_size;     /**< sizeof(ndisshm_queue_params): ndisshm_queue_params_init sets it */
    uint32_t flags;           /**< NDISSHM_QUEUE_LOOKAHEAD_SPLIT */
    uint32_t lookahead_size;  /**< bytes, with lookahead split */
} ndisshm_queue_params;
/** Fills `params` with the defaults: no flags, no lookahead, struct_size set.
 * @param params where to write sizeof(ndisshm_queue_params) bytes. */
NDISSHM_API void ndisshm_queue_params_init(ndisshm_queue_params *params);
/** @{ */
/** The VMQ life cycle in two steps, as NDIS has it: the queue is allocated
 * (OID_RECEIVE_FILTER_ALLOCATE_QUEUE) with its parameters, then its
 * allocation completes (OID_RECEIVE_FILTER_QUEUE_ALLOCATION_COMPLETE); only
 * then may the miniport allocate shared memory for it: before, the call is a
 * verifier violation (NDIS_STATUS_INVALID_PARAMETER). The provider hears of
 * the queue (attach_queue) at completion.
 * @param adapter the adapter's handle, or the handle of the binding that
 *        allocates (and so owns) the queue, as for ndisshm_queue_create
 * @param queue_id the new queue's id, not 0
 * @param params NULL for none; else struct_size must be sizeof(ndisshm_queue_params), and flags only NDISSHM_QUEUE_LOOKAHEAD_SPLIT
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle or params (a verifier report), id 0 or an id in use */
NDISSHM_API NDIS_STATUS ndisshm_queue_allocate(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id,
                                               const ndisshm_queue_params *params);
/** Completes a queue's allocation (OID_RECEIVE_FILTER_QUEUE_ALLOCATION_COMPLETE): shared memory may be allocated for it from now on.
 * @param adapter from ndisshm_adapter_create
 * @param queue_id a queue allocated with ndisshm_queue_allocate
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle, an unknown queue or one completed already */
NDISSHM_API NDIS_STATUS ndisshm_queue_allocation_complete(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id);
/** @} */
/** NDIS_STATUS_INVALID_PARAMETER for an unknown queue. *complete: 1 once completed.
 * @param adapter from ndisshm_adapter_create
 * @param queue_id the queue
 * @param params receives its parameters (struct_size set); may be NULL
 * @param complete receives 1 once its allocation has completed, else 0; may be NULL
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle or an unknown queue */
NDISSHM_API NDIS_STATUS ndisshm_queue_get_params(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id,
                                                 ndisshm_queue_params *params, int *complete);

/** Frees a queue. Blocks still allocated for it: a verifier violation naming
 * them, then freed through their provider. NDIS_STATUS_INVALID_PARAMETER for
 * an unknown queue or the default queue.
 * @param adapter from ndisshm_adapter_create
 * @param queue_id the queue, not 0
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle, an unknown queue or queue 0 */
NDISSHM_API NDIS_STATUS ndisshm_queue_free(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id);

/** A provider binding (a filter or protocol bound to the adapter). *binding is
 * the NdisHandle for NdisSetOptionalHandlers.
 * @param adapter from ndisshm_adapter_create
 * @param name for reports and `ndisshm stat`; NULL: "binding<N>"
 * @param binding receives the binding's NdisHandle
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle or NULL pointer; NDIS_STATUS_RESOURCES at the maximum */
NDISSHM_API NDIS_STATUS ndisshm_binding_create(NDIS_HANDLE adapter, const char *name, NDIS_HANDLE *binding);

/** Unregisters the binding's provider; blocks it still has are a violation,
 * freed through it. The queues it owns stay, the miniport's from then on
 * (served by the adapter's own provider, or NDIS's memory).
 * @param binding from ndisshm_binding_create; anything else is a verifier report, and nothing happens */
NDISSHM_API void ndisshm_binding_destroy(NDIS_HANDLE binding);

/** The full provider table, of which NDIS's characteristics are the first two
 * entries (modelled on Linux's per-queue memory provider ops). */
typedef struct ndisshm_provider_ops {
    uint32_t struct_size; /**< sizeof(ndisshm_provider_ops) */
    NDIS_HANDLE context;
    ALLOCATE_SHARED_MEMORY_HANDLER allocate; /**< required */
    FREE_SHARED_MEMORY_HANDLER free;       /**< required */
    /** @{ */
    /** Optional: a queue of the adapter appears / goes for this provider. attach_queue: it serves the
     * queue from now on (the queue completed, or its provider changed to this one). detach_queue: it
     * no longer does, and no block it gave for the queue is live. When another provider takes the
     * queue over (the binding that owns it registers one) while this one's blocks of it are live, the
     * queue's allocations go to the new provider at once (spec section 7), those blocks still free
     * through this one, and detach_queue comes only when the queue goes, or this provider is replaced
     * or its binding goes, whichever is first; if the queue comes back to it before, it hears neither
     * call. */
    void (*attach_queue)(NDIS_HANDLE context, NDIS_RECEIVE_QUEUE_ID queue_id);
    void (*detach_queue)(NDIS_HANDLE context, NDIS_RECEIVE_QUEUE_ID queue_id);
    /** @} */
    /** Optional: one line describing the provider, for `ndisshm stat`. */
    void (*describe)(NDIS_HANDLE context, char *buffer, size_t buffer_bytes);
    /** Optional: after a successful allocate, the SharedMemoryHandle NDIS gave
     * the block that provider_context names (packets name blocks by it).
     * Called before NdisAllocateSharedMemory returns. */
    void (*committed)(NDIS_HANDLE context, NDIS_HANDLE provider_context, NDIS_HANDLE shared_memory_handle);
} ndisshm_provider_ops;
/** Fills `ops` with no handler, no context and struct_size set.
 * @param ops where to write sizeof(ndisshm_provider_ops) bytes. */
NDISSHM_API void ndisshm_provider_ops_init(ndisshm_provider_ops *ops);

/** Registers ops as a provider (what NdisSetOptionalHandlers does with the
 * first two entries). Same errors; a handle that is neither a binding nor an
 * adapter is NDIS_STATUS_NOT_SUPPORTED. A re-registration replaces the
 * provider when none of its blocks is outstanding.
 * @param binding a binding's handle: the provider serves the queues that
 *        binding owns; or the adapter's own handle: it serves queue 0 and the
 *        queues no providing binding owns
 * @param ops the table; struct_size must be sizeof(ndisshm_provider_ops), allocate and free set
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle or table (a verifier report); NDIS_STATUS_FAILURE above PASSIVE_LEVEL */
NDISSHM_API NDIS_STATUS ndisshm_binding_register_provider(NDIS_HANDLE binding, const ndisshm_provider_ops *ops);

/* ---- Limits -------------------------------------------------------------- */
/** @{ */
/** Caps on outstanding bytes (the sum of Length of live blocks); 0 removes the
 * cap. An allocation that would exceed one gets NDIS_STATUS_RESOURCES (and a
 * line in the verifier log), never an abort. Lowering a cap below what is
 * outstanding frees nothing: it refuses new allocations until enough go.
 * @param adapter from ndisshm_adapter_create
 * @param max_bytes the cap; 0 removes it
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle */
NDISSHM_API NDIS_STATUS ndisshm_adapter_set_limit(NDIS_HANDLE adapter, uint64_t max_bytes);
/** Caps the bytes one queue may have outstanding, as ndisshm_adapter_set_limit does for the adapter.
 * @param adapter from ndisshm_adapter_create
 * @param queue_id the queue
 * @param max_bytes the cap; 0 removes it
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle or an unknown queue */
NDISSHM_API NDIS_STATUS ndisshm_queue_set_limit(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id,
                                                uint64_t max_bytes);
/** @} */

/* ---- Books --------------------------------------------------------------- */
#define NDISSHM_MAX_NODES 64
typedef struct ndisshm_usage_stats {
    uint64_t blocks;       /**< outstanding now */
    uint64_t bytes;        /**< outstanding now (requested Length) */
    uint64_t peak_blocks;  /**< the most outstanding at once, ever */
    uint64_t peak_bytes;   /**< the most outstanding at once, ever */
    uint64_t allocations;  /**< successful, ever */
    uint64_t frees;
    uint64_t failures;     /**< allocations refused, for any reason */
} ndisshm_usage_stats;

typedef struct ndisshm_adapter_stats {
    ndisshm_usage_stats total;
    ndisshm_usage_stats by_usage[NdisSharedMemoryUsageMax];
    ndisshm_usage_stats by_node[NDISSHM_MAX_NODES]; /**< node the provider placed the block on; failures by
                                                       the node asked for (MM_ANY_NODE_OK: not counted) */
    uint64_t limit_bytes;  /**< 0: none */
    uint32_t queues;
    uint32_t bindings;
    int has_provider;      /**< 1 when any provider is registered (a binding's or the adapter's own) */
} ndisshm_adapter_stats;

/** The books at the moment of the call, exact (peaks included) however many
 *  threads allocate and free on the adapter. Each CPU keeps its own part of an
 *  adapter's books, so that threads do not wait for one another; these two
 *  calls lock every part for a moment, and hold up allocations on the adapter
 *  meanwhile: call them at a monitoring rate, not once per packet.
 * @param adapter from ndisshm_adapter_create
 * @param stats receives the adapter's books
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle or NULL stats */
NDISSHM_API NDIS_STATUS ndisshm_adapter_get_stats(NDIS_HANDLE adapter, ndisshm_adapter_stats *stats);
/** One queue's books, as ndisshm_adapter_get_stats gives the adapter's (and as costly).
 * @param adapter from ndisshm_adapter_create
 * @param queue_id the queue
 * @param stats receives its books
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a bad handle, an unknown queue or NULL stats */
NDISSHM_API NDIS_STATUS ndisshm_queue_get_stats(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id,
                                                ndisshm_usage_stats *stats);

/** The default provider's memory: which pages, where, how much, how zeroed. */
typedef struct ndisshm_memory_stats {
    uint32_t page_mode;       /**< ndisshm_page_mode actually in use (never AUTO) */
    uint32_t page_bytes;      /**< 2097152 with huge pages, else 4096 */
    uint32_t thp_advised;     /**< 1: MADV_HUGEPAGE accepted on the arenas */
    uint32_t address_mode;    /**< ndisshm_address_mode */
    uint32_t arenas;          /**< one per NUMA node used so far */
    uint32_t numa_nodes;      /**< nodes this machine has */
    uint64_t reserved_bytes;  /**< address space reserved by the arenas */
    uint64_t file_bytes;      /**< memfd bytes behind them */
    uint64_t bytes_in_use;    /**< page-rounded bytes of live blocks */
    uint64_t blocks_in_use;
    uint64_t high_water_bytes;
    uint64_t largest_free_bytes; /**< largest free range within the reserved capacity (the file may grow to give it) */
    uint64_t zeroed_by_memset_bytes;
    uint64_t zeroed_by_release_bytes;
    uint64_t cache_hits;      /**< allocations served from a per-CPU cache */
    uint64_t cache_misses;
    uint64_t node_bytes_in_use[NDISSHM_MAX_NODES];
    uint64_t owner_reuses;       /**< allocations that got back a block their own adapter freed, not cleared */
    uint64_t zeroed_ahead_bytes; /**< cleared by the background zeroer before anyone asked for them */
    uint64_t served_pre_zeroed;  /**< allocations served by a block the zeroer had cleared */
    uint32_t zero_ahead;         /**< 1: the background zeroer runs */
} ndisshm_memory_stats;
/** The default provider's memory now.
 * @param runtime from ndisshm_runtime_create
 * @param stats receives them
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER for a NULL pointer */
NDISSHM_API NDIS_STATUS ndisshm_runtime_get_memory_stats(const ndisshm_runtime *runtime, ndisshm_memory_stats *stats);

/** What the books say of a live block: its adapter, queue, usage, length,
 * address, first SG address, NUMA node and provider. `provider` points into
 * the binding and is valid while the block is live. */
typedef struct ndisshm_block_info {
    NDIS_HANDLE adapter;
    NDIS_RECEIVE_QUEUE_ID queue_id;
    NDIS_SHARED_MEMORY_USAGE usage;
    ULONG length;
    PVOID virtual_address;
    ULONG64 first_address; /**< Elements[0].Address */
    int32_t node;          /**< NUMA node the provider placed it on, -1 if it did not say */
    const char *provider;  /**< binding name, or "default" */
} ndisshm_block_info;

/** NDIS_STATUS_INVALID_PARAMETER unless handle is a live block of adapter.
 * @param adapter the adapter the block was allocated on
 * @param handle the allocation handle NdisAllocateSharedMemory gave
 * @param info receives what the books say
 * @return NDIS_STATUS_SUCCESS; NDIS_STATUS_INVALID_PARAMETER unless handle is a live block of adapter */
NDISSHM_API NDIS_STATUS ndisshm_block_get_info(NDIS_HANDLE adapter, NDIS_HANDLE handle, ndisshm_block_info *info);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NDISSHM_HOST_H */
