/*
 * provider.c: a shared memory provider written in C, the way a filter driver
 * (such as a virtual switch handing out a VM's memory) provides for a NIC.
 *
 * The provider owns one pool: a single page-aligned region standing for the
 * guest's memory, carved into page-aligned blocks on request. It registers
 * its two handlers with NdisSetOptionalHandlers on its provider binding; from
 * then on every NdisAllocateSharedMemory of the adapter comes to it, and
 * every NdisFreeSharedMemory comes back to it with the context it returned.
 *
 * Each block gets a context of the provider's own (POOL_BLOCK). The free
 * handler checks that what NDIS hands back is one of those contexts, still in
 * use, and counts its frees: at the end, every context handed out must have
 * come back exactly once.
 *
 * Addresses in the SG list are "guest physical": POOL_GUEST_PHYSICAL_BASE plus
 * the offset in the pool. A block that need not be contiguous is described in
 * elements of at most POOL_MAX_SEGMENT_BYTES (as a device with a segment size
 * limit would see it); a CONTIGUOUS block by one element.
 *
 * Exits 0 only when every check holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

/* ---- The provider --------------------------------------------------------- */

#define POOL_PAGES 192u                               /* 768 KiB of guest memory */
#define POOL_BYTES ((size_t)POOL_PAGES * PAGE_SIZE)
#define POOL_MAX_CONTEXTS 64u                         /* contexts are never reused */
#define POOL_MAX_SEGMENT_BYTES (16u * PAGE_SIZE)      /* 64 KiB per SG element */
#define POOL_GUEST_PHYSICAL_BASE 0x0000000100000000ull
#define POOL_MAGIC 0x4C4F4F50u                        /* 'POOL' */
#define POOL_BLOCK_MAGIC 0x4B4C4250u                  /* 'PBLK' */

typedef enum _POOL_BLOCK_STATE { PoolBlockUnused = 0, PoolBlockInUse, PoolBlockFreed } POOL_BLOCK_STATE;

/* The provider's context for one block: what NDIS hands back on free. */
typedef struct _POOL_BLOCK {
    ULONG Magic;
    POOL_BLOCK_STATE State;
    ULONG FreeCount;
    ULONG FirstPage;
    ULONG Pages;
    ULONG Length;
    NDIS_RECEIVE_QUEUE_ID QueueId;
    NDIS_SHARED_MEMORY_USAGE Usage;
    PVOID VirtualAddress;
} POOL_BLOCK, *PPOOL_BLOCK;

/* The provider's own context (ProviderContext). */
typedef struct _VSWITCH_POOL {
    ULONG Magic;
    NDIS_SPIN_LOCK Lock;
    unsigned char *Memory;               /* POOL_BYTES, page-aligned */
    unsigned char PageInUse[POOL_PAGES];
    POOL_BLOCK Blocks[POOL_MAX_CONTEXTS];
    ULONG BlocksUsed;                    /* contexts handed out so far */
    ULONG Allocations;
    ULONG Frees;
    ULONG Refused;                       /* NDIS_STATUS_RESOURCES returned */
    ULONG BadFrees;                      /* a context not ours, or not in use */
    PPOOL_BLOCK LastFreed;
} VSWITCH_POOL, *PVSWITCH_POOL;

/* First fit: the first run of Pages free pages, or POOL_PAGES if none. */
static ULONG PoolFindRun(PVSWITCH_POOL Pool, ULONG Pages)
{
    ULONG first = 0, run = 0, page;
    for (page = 0; page < POOL_PAGES; ++page) {
        if (Pool->PageInUse[page]) {
            run = 0;
            first = page + 1;
        } else if (++run == Pages) {
            return first;
        }
    }
    return POOL_PAGES;
}

/* ALLOCATE_SHARED_MEMORY_HANDLER: called by NDIS at PASSIVE_LEVEL inside the
 * miniport's NdisAllocateSharedMemory. */
static NDIS_STATUS PoolAllocateSharedMemory(NDIS_HANDLE ProviderContext,
                                            PNDIS_SHARED_MEMORY_PARAMETERS SharedMemoryParameters,
                                            PNDIS_HANDLE pSharedMemoryProviderContext)
{
    PVSWITCH_POOL pool = (PVSWITCH_POOL)ProviderContext;
    PNDIS_SHARED_MEMORY_PARAMETERS p = SharedMemoryParameters;
    PSCATTER_GATHER_LIST sg = p->SGListBuffer;
    const int contiguous = (p->Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) != 0;
    ULONG pages, needed, capacity, first, i, offset;
    PPOOL_BLOCK block;

    if (pool == NULL || pool->Magic != POOL_MAGIC) {
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    pages = (ULONG)BYTES_TO_PAGES(p->Length);
    needed = contiguous ? 1u : (p->Length + POOL_MAX_SEGMENT_BYTES - 1u) / POOL_MAX_SEGMENT_BYTES;
    capacity = p->SGListBufferLength < sizeof(SCATTER_GATHER_LIST)
                   ? 0u
                   : (ULONG)((p->SGListBufferLength - sizeof(SCATTER_GATHER_LIST)) / sizeof(SCATTER_GATHER_ELEMENT));
    if (capacity < needed) {
        if (p->SGListBufferLength >= sizeof(SCATTER_GATHER_LIST)) {
            sg->NumberOfElements = needed;
        }
        return NDIS_STATUS_BUFFER_TOO_SHORT;
    }

    NdisAcquireSpinLock(&pool->Lock);
    first = pages <= POOL_PAGES ? PoolFindRun(pool, pages) : POOL_PAGES;
    if (first == POOL_PAGES || pool->BlocksUsed == POOL_MAX_CONTEXTS) {
        ++pool->Refused;
        NdisReleaseSpinLock(&pool->Lock);
        return NDIS_STATUS_RESOURCES;
    }
    for (i = 0; i < pages; ++i) {
        pool->PageInUse[first + i] = 1;
    }
    block = &pool->Blocks[pool->BlocksUsed++];
    block->Magic = POOL_BLOCK_MAGIC;
    block->State = PoolBlockInUse;
    block->FreeCount = 0;
    block->FirstPage = first;
    block->Pages = pages;
    block->Length = p->Length;
    block->QueueId = p->QueueId;
    block->Usage = p->Usage;
    block->VirtualAddress = pool->Memory + (size_t)first * PAGE_SIZE;
    ++pool->Allocations;
    NdisReleaseSpinLock(&pool->Lock);

    /* Guest memory that was used before must not carry old data. */
    NdisZeroMemory(block->VirtualAddress, (size_t)pages * PAGE_SIZE);

    /* The block's address ranges, in the caller's SG buffer. */
    for (i = 0, offset = 0; offset < p->Length; ++i) {
        ULONG length = p->Length - offset;
        if (!contiguous && length > POOL_MAX_SEGMENT_BYTES) {
            length = POOL_MAX_SEGMENT_BYTES;
        }
        sg->Elements[i].Address.QuadPart =
            (LONGLONG)(POOL_GUEST_PHYSICAL_BASE + (ULONGLONG)first * PAGE_SIZE + offset);
        sg->Elements[i].Length = length;
        sg->Elements[i].Reserved = 0;
        offset += length;
    }
    sg->NumberOfElements = i;
    p->VirtualAddress = block->VirtualAddress;
    *pSharedMemoryProviderContext = block;
    return NDIS_STATUS_SUCCESS;
}

/* FREE_SHARED_MEMORY_HANDLER: NDIS hands back the context we returned. */
static VOID PoolFreeSharedMemory(NDIS_HANDLE ProviderContext, NDIS_HANDLE SharedMemoryProviderContext)
{
    PVSWITCH_POOL pool = (PVSWITCH_POOL)ProviderContext;
    PPOOL_BLOCK block = (PPOOL_BLOCK)SharedMemoryProviderContext;
    uintptr_t first = (uintptr_t)&pool->Blocks[0];
    uintptr_t at = (uintptr_t)block;
    ULONG i;

    NdisAcquireSpinLock(&pool->Lock);
    /* One of our contexts? Checked by address before it is dereferenced. */
    if (at < first || at >= (uintptr_t)&pool->Blocks[POOL_MAX_CONTEXTS] || (at - first) % sizeof(POOL_BLOCK) != 0 ||
        block->Magic != POOL_BLOCK_MAGIC) {
        ++pool->BadFrees;
        NdisReleaseSpinLock(&pool->Lock);
        return;
    }
    ++block->FreeCount;
    if (block->State != PoolBlockInUse) {
        ++pool->BadFrees; /* freed twice */
        NdisReleaseSpinLock(&pool->Lock);
        return;
    }
    for (i = 0; i < block->Pages; ++i) {
        pool->PageInUse[block->FirstPage + i] = 0;
    }
    block->State = PoolBlockFreed;
    ++pool->Frees;
    pool->LastFreed = block;
    NdisReleaseSpinLock(&pool->Lock);
}

static int PoolInitialize(PVSWITCH_POOL Pool)
{
    NdisZeroMemory(Pool, sizeof(*Pool));
    Pool->Memory = (unsigned char *)aligned_alloc(PAGE_SIZE, POOL_BYTES);
    if (Pool->Memory == NULL) {
        return 0;
    }
    Pool->Magic = POOL_MAGIC;
    NdisAllocateSpinLock(&Pool->Lock);
    return 1;
}

static ULONG PoolPagesInUse(PVSWITCH_POOL Pool)
{
    ULONG n = 0, page;
    for (page = 0; page < POOL_PAGES; ++page) {
        n += Pool->PageInUse[page] ? 1u : 0u;
    }
    return n;
}

/* ---- The miniport side ---------------------------------------------------- */

static int g_failures;

static void Check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "provider: FAILED: %s\n", what);
        ++g_failures;
    }
}

typedef struct _MINIPORT_BLOCK {
    NDIS_HANDLE AllocationHandle;
    PVOID VirtualAddress;
    ULONG Length;
    ULONG NumberOfElements;
    SCATTER_GATHER_ELEMENT First;
    SCATTER_GATHER_ELEMENT Last;
} MINIPORT_BLOCK;

/* A miniport's call, with an SG buffer of one element per page. */
static NDIS_STATUS MiniportAllocate(NDIS_HANDLE Adapter, NDIS_RECEIVE_QUEUE_ID QueueId,
                                    NDIS_SHARED_MEMORY_USAGE Usage, ULONG Length, ULONG Flags,
                                    MINIPORT_BLOCK *Out)
{
    NDIS_SHARED_MEMORY_PARAMETERS params;
    ULONG capacity = (ULONG)BYTES_TO_PAGES(Length);
    ULONG bytes = (ULONG)(sizeof(SCATTER_GATHER_LIST) + capacity * sizeof(SCATTER_GATHER_ELEMENT));
    PSCATTER_GATHER_LIST sg = (PSCATTER_GATHER_LIST)malloc(bytes);
    NDIS_STATUS status;

    NdisZeroMemory(Out, sizeof(*Out));
    if (sg == NULL) {
        return NDIS_STATUS_RESOURCES;
    }
    NdisZeroMemory(sg, bytes);
    sg->NumberOfElements = capacity;
    NdisZeroMemory(&params, sizeof(params));
    params.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    params.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    params.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    params.Flags = Flags;
    params.QueueId = QueueId;
    params.Usage = Usage;
    params.PreferredNode = MM_ANY_NODE_OK;
    params.Length = Length;
    params.SGListBuffer = sg;
    params.SGListBufferLength = bytes;
    status = NdisAllocateSharedMemory(Adapter, &params, &Out->AllocationHandle);
    if (status == NDIS_STATUS_SUCCESS) {
        Out->VirtualAddress = params.VirtualAddress;
        Out->Length = Length;
        Out->NumberOfElements = sg->NumberOfElements;
        Out->First = sg->Elements[0];
        Out->Last = sg->Elements[sg->NumberOfElements - 1];
    }
    free(sg);
    return status;
}

/* The block lies in the pool, and its SG list says where, in guest-physical
 * terms, in at most 64 KiB pieces (one piece when CONTIGUOUS). */
static void CheckPoolBlock(PVSWITCH_POOL Pool, const MINIPORT_BLOCK *Block, int Contiguous)
{
    const unsigned char *va = (const unsigned char *)Block->VirtualAddress;
    size_t offset = (size_t)(va - Pool->Memory);
    ULONG expectedElements =
        Contiguous ? 1u : (Block->Length + POOL_MAX_SEGMENT_BYTES - 1u) / POOL_MAX_SEGMENT_BYTES;
    ULONG i;
    int zero = 1;

    Check(va >= Pool->Memory && va + Block->Length <= Pool->Memory + POOL_BYTES, "the block lies in the pool");
    Check(offset % PAGE_SIZE == 0, "the block is page-aligned");
    Check(Block->NumberOfElements == expectedElements, "the SG list has the provider's element count");
    Check((ULONGLONG)Block->First.Address.QuadPart == POOL_GUEST_PHYSICAL_BASE + offset,
          "Elements[0].Address is the block's guest-physical address");
    Check(Block->First.Length == (Contiguous ? Block->Length
                                             : (Block->Length < POOL_MAX_SEGMENT_BYTES ? Block->Length
                                                                                       : POOL_MAX_SEGMENT_BYTES)),
          "Elements[0].Length");
    Check((ULONGLONG)Block->Last.Address.QuadPart + Block->Last.Length ==
              POOL_GUEST_PHYSICAL_BASE + offset + Block->Length,
          "the last element ends where the block ends");
    for (i = 0; i < Block->Length; ++i) {
        zero &= (va[i] == 0);
    }
    Check(zero, "the block arrives zeroed");
}

static uint64_t TotalViolations(const ndisshm_runtime *runtime)
{
    uint64_t n = 0;
    int kind;
    for (kind = NDISSHM_VIOLATION_BAD_HANDLE; kind < NDISSHM_VIOLATION_KIND_COUNT; ++kind) {
        n += ndisshm_runtime_violation_count(runtime, (ndisshm_violation_kind)kind);
    }
    return n;
}

/* Frees one block and checks that the provider got that block's own context. */
static void MiniportFree(NDIS_HANDLE Adapter, PVSWITCH_POOL Pool, MINIPORT_BLOCK *Block)
{
    ULONG freesBefore = Pool->Frees;
    Pool->LastFreed = NULL;
    NdisFreeSharedMemory(Adapter, Block->AllocationHandle);
    Check(Pool->Frees == freesBefore + 1, "NdisFreeSharedMemory called the provider's free handler once");
    Check(Pool->LastFreed != NULL && Pool->LastFreed->VirtualAddress == Block->VirtualAddress &&
              Pool->LastFreed->Length == Block->Length,
          "the free handler got this block's own context");
    NdisZeroMemory(Block, sizeof(*Block));
}

enum { BLOCK_RECEIVE, BLOCK_LOOKAHEAD, BLOCK_POST_LOOKAHEAD, BLOCK_RING, BLOCK_COUNT };

int main(void)
{
    static VSWITCH_POOL pool; /* static: the provider's state outlives every call into it */
    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS chars;
    ndisshm_runtime_config config;
    ndisshm_runtime *runtime = NULL;
    ndisshm_adapter_stats stats;
    NDIS_HANDLE nic = NULL, vswitch = NULL;
    MINIPORT_BLOCK blocks[BLOCK_COUNT], big, host;
    NDIS_STATUS status;
    ULONG i, allocationsBefore;
    const int order[BLOCK_COUNT] = {BLOCK_LOOKAHEAD, BLOCK_RING, BLOCK_RECEIVE, BLOCK_POST_LOOKAHEAD};

    if (!PoolInitialize(&pool)) {
        fprintf(stderr, "provider: no memory for the pool\n");
        return 1;
    }
    ndisshm_runtime_config_init(&config);
    config.report_to_stderr = 0; /* violations are counted below */
    status = ndisshm_runtime_create(&config, &runtime, NULL, 0);
    if (status != NDIS_STATUS_SUCCESS) {
        fprintf(stderr, "provider: ndisshm_runtime_create: %s\n", ndisshm_status_name(status));
        free(pool.Memory);
        return 1;
    }

    /* The NIC, the virtual switch bound to it, and two VMQ queues the switch allocates
     * (OID_RECEIVE_FILTER_ALLOCATE_QUEUE): they are the switch's, so its provider serves them. */
    Check(ndisshm_adapter_create(runtime, "nic0", &nic) == NDIS_STATUS_SUCCESS, "ndisshm_adapter_create");
    Check(ndisshm_binding_create(nic, "vswitch", &vswitch) == NDIS_STATUS_SUCCESS, "ndisshm_binding_create");
    Check(ndisshm_queue_create(vswitch, 1) == NDIS_STATUS_SUCCESS, "queue 1");
    Check(ndisshm_queue_create(vswitch, 2) == NDIS_STATUS_SUCCESS, "queue 2");

    /* The provider registers, as a filter does from its attach handler. */
    NdisZeroMemory(&chars, sizeof(chars));
    chars.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
    chars.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
    chars.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
    chars.Flags = 0;
    chars.ProviderContext = &pool;
    chars.AllocateSharedMemoryHandler = PoolAllocateSharedMemory;
    chars.FreeSharedMemoryHandler = PoolFreeSharedMemory;
    status = NdisSetOptionalHandlers(vswitch, (PNDIS_DRIVER_OPTIONAL_HANDLERS)&chars);
    Check(status == NDIS_STATUS_SUCCESS, "NdisSetOptionalHandlers");
    Check(ndisshm_adapter_get_stats(nic, &stats) == NDIS_STATUS_SUCCESS && stats.has_provider == 1,
          "the adapter now has a provider");

    /* The miniport allocates; NDIS routes every call to the pool. */
    status = MiniportAllocate(nic, 1, NdisSharedMemoryUsageReceive, 64u * PAGE_SIZE, 0, &blocks[BLOCK_RECEIVE]);
    Check(status == NDIS_STATUS_SUCCESS, "Receive block (256 KiB)");
    if (status == NDIS_STATUS_SUCCESS) CheckPoolBlock(&pool, &blocks[BLOCK_RECEIVE], 0);
    status = MiniportAllocate(nic, 2, NdisSharedMemoryUsageReceiveLookahead, 4u * PAGE_SIZE, 0,
                              &blocks[BLOCK_LOOKAHEAD]);
    Check(status == NDIS_STATUS_SUCCESS, "ReceiveLookahead block (16 KiB)");
    if (status == NDIS_STATUS_SUCCESS) CheckPoolBlock(&pool, &blocks[BLOCK_LOOKAHEAD], 0);
    status = MiniportAllocate(nic, 2, NdisSharedMemoryUsageReceivePostLookahead, 150000u, 0,
                              &blocks[BLOCK_POST_LOOKAHEAD]);
    Check(status == NDIS_STATUS_SUCCESS, "ReceivePostLookahead block (150000 bytes)");
    if (status == NDIS_STATUS_SUCCESS) CheckPoolBlock(&pool, &blocks[BLOCK_POST_LOOKAHEAD], 0);
    status = MiniportAllocate(nic, 1, NdisSharedMemoryUsageOther, 24u * PAGE_SIZE,
                              NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS, &blocks[BLOCK_RING]);
    Check(status == NDIS_STATUS_SUCCESS, "CONTIGUOUS ring (96 KiB)");
    if (status == NDIS_STATUS_SUCCESS) CheckPoolBlock(&pool, &blocks[BLOCK_RING], 1);
    Check(pool.Allocations == BLOCK_COUNT && pool.BlocksUsed == BLOCK_COUNT, "the pool made every block");
    for (i = 0; i < BLOCK_COUNT; ++i) {
        Check(pool.Blocks[i].QueueId == (i == BLOCK_LOOKAHEAD || i == BLOCK_POST_LOOKAHEAD ? 2u : 1u),
              "the provider saw each block's queue");
        if (blocks[i].VirtualAddress != NULL) {
            memset(blocks[i].VirtualAddress, 0x40 + (int)i, blocks[i].Length);
        }
    }

    /* More than the pool has left: the provider's NDIS_STATUS_RESOURCES comes
     * back to the miniport as is, and nothing is allocated. */
    allocationsBefore = pool.Allocations;
    status = MiniportAllocate(nic, 1, NdisSharedMemoryUsageReceive, 64u * PAGE_SIZE, 0, &big);
    Check(status == NDIS_STATUS_RESOURCES, "an exhausted pool answers NDIS_STATUS_RESOURCES");
    Check(pool.Refused == 1 && pool.Allocations == allocationsBefore, "the refusal allocated nothing");

    Check(ndisshm_adapter_get_stats(nic, &stats) == NDIS_STATUS_SUCCESS, "ndisshm_adapter_get_stats");
    Check(stats.total.blocks == BLOCK_COUNT, "NDIS counts four blocks outstanding");
    Check(stats.total.bytes == 64u * PAGE_SIZE + 4u * PAGE_SIZE + 150000u + 24u * PAGE_SIZE,
          "NDIS counts their bytes");
    Check(stats.total.failures == 1, "NDIS counts the refused allocation");
    printf("provider: pool of %u pages serves %u blocks (%u pages in use); one request refused\n",
           (unsigned)POOL_PAGES, (unsigned)pool.Allocations, (unsigned)PoolPagesInUse(&pool));

    /* The miniport frees, in an order of its own; each free comes back to
     * the pool with that block's context. */
    for (i = 0; i < BLOCK_COUNT; ++i) {
        MINIPORT_BLOCK *b = &blocks[order[i]];
        if (b->AllocationHandle != NULL) {
            Check(((unsigned char *)b->VirtualAddress)[b->Length - 1] == 0x40 + order[i],
                  "a block kept its contents until it was freed");
            MiniportFree(nic, &pool, b);
        }
    }

    /* Every context handed out came back exactly once; the pool is whole. */
    for (i = 0; i < pool.BlocksUsed; ++i) {
        Check(pool.Blocks[i].State == PoolBlockFreed && pool.Blocks[i].FreeCount == 1,
              "each context freed exactly once");
    }
    Check(pool.Frees == pool.Allocations && pool.BadFrees == 0, "no unknown or repeated free");
    Check(PoolPagesInUse(&pool) == 0, "every page of the pool is free again");
    Check(ndisshm_adapter_get_stats(nic, &stats) == NDIS_STATUS_SUCCESS && stats.total.blocks == 0 &&
              stats.total.allocations == BLOCK_COUNT && stats.total.frees == BLOCK_COUNT,
          "NDIS: zero outstanding, allocations == frees");

    /* The switch detaches: allocations go to NDIS's own host memory again. */
    ndisshm_binding_destroy(vswitch);
    status = MiniportAllocate(nic, 1, NdisSharedMemoryUsageReceive, 2u * PAGE_SIZE, 0, &host);
    Check(status == NDIS_STATUS_SUCCESS, "allocation after the provider detached");
    if (status == NDIS_STATUS_SUCCESS) {
        Check((unsigned char *)host.VirtualAddress < pool.Memory ||
                  (unsigned char *)host.VirtualAddress >= pool.Memory + POOL_BYTES,
              "after detach the block is host memory, not the pool's");
        Check(pool.Allocations == BLOCK_COUNT, "the detached provider is no longer called");
        NdisFreeSharedMemory(nic, host.AllocationHandle);
    }
    Check(ndisshm_queue_free(nic, 1) == NDIS_STATUS_SUCCESS, "queue 1 freed");
    Check(ndisshm_queue_free(nic, 2) == NDIS_STATUS_SUCCESS, "queue 2 freed");
    Check(TotalViolations(runtime) == 0, "no verifier violation");

    ndisshm_adapter_destroy(nic);
    Check(TotalViolations(runtime) == 0, "no leak at teardown");
    Check(pool.Frees == BLOCK_COUNT, "teardown did not free anything twice");
    ndisshm_runtime_destroy(runtime);
    NdisFreeSpinLock(&pool.Lock);
    free(pool.Memory);

    if (g_failures != 0) {
        fprintf(stderr, "provider: %d check(s) failed\n", g_failures);
        return 1;
    }
    printf("provider: every context came back exactly once; 0 outstanding, 0 violations\n");
    return 0;
}
