/*
 * miniport_vmq.c: a VMQ miniport's receive buffers, written as a Windows
 * miniport author writes them.
 *
 * The miniport allocates shared memory for each VMQ receive queue once the
 * queue's allocation has completed: Receive blocks, or a ReceiveLookahead and
 * a ReceivePostLookahead block when the protocol asked for lookahead split.
 * The default queue gets none (it lives in the miniport's own memory). It
 * also takes one CONTIGUOUS block for a descriptor ring. Before a queue is
 * freed, every block of it is freed.
 *
 * No provider is registered here, so NDIS serves every block from host memory
 * (the default provider). Everything Windows' PnP manager would set up (the
 * runtime, the adapter, the queues) is done with the ndisshm_ host calls.
 *
 * Exits 0 only when every check holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

/* ---- The miniport's own definitions -------------------------------------- */

#define MP_VMQ_QUEUE_COUNT 3        /* VMQ queues 1..3; queue 0 is the default queue */
#define MP_FRAME_BYTES 1514u        /* the largest frame a receive buffer holds */
#define MP_LOOKAHEAD_BYTES 128u     /* the header part, when lookahead split is on */
#define MP_PACKETS_PER_QUEUE 32u    /* receive buffers per queue */
#define MP_RING_BYTES (4u * PAGE_SIZE) /* one descriptor ring, physically contiguous */
#define MP_MAX_BLOCKS_PER_QUEUE 2u

/* Bytes rounded up to whole pages. */
#define MP_ROUND_TO_PAGES(Bytes) ((ULONG)BYTES_TO_PAGES(Bytes) * (ULONG)PAGE_SIZE)

typedef struct _MP_SHARED_BLOCK {
    NDIS_HANDLE AllocationHandle;   /* for NdisFreeSharedMemory */
    NDIS_HANDLE SharedMemoryHandle; /* what NET_BUFFER_SHARED_MEMORY would carry */
    PVOID VirtualAddress;
    PHYSICAL_ADDRESS LogicalAddress; /* Elements[0].Address: what the NIC's DMA engine is given */
    ULONG NumberOfElements;
    ULONG Length;
    NDIS_SHARED_MEMORY_USAGE Usage;
} MP_SHARED_BLOCK, *PMP_SHARED_BLOCK;

typedef struct _MP_RECEIVE_QUEUE {
    NDIS_RECEIVE_QUEUE_ID QueueId;
    BOOLEAN Allocated;
    BOOLEAN LookaheadSplit;
    ULONG BlockCount;
    MP_SHARED_BLOCK Blocks[MP_MAX_BLOCKS_PER_QUEUE];
} MP_RECEIVE_QUEUE, *PMP_RECEIVE_QUEUE;

typedef struct _MP_ADAPTER {
    NDIS_HANDLE MiniportAdapterHandle;
    NODE_REQUIREMENT NumaNode;
    MP_RECEIVE_QUEUE Queues[MP_VMQ_QUEUE_COUNT + 1]; /* [0] is the default queue */
    MP_SHARED_BLOCK DescriptorRing;
} MP_ADAPTER, *PMP_ADAPTER;

static int g_failures;

static void Check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "miniport_vmq: FAILED: %s\n", what);
        ++g_failures;
    }
}

/* ---- Allocation, as in a miniport's receive path set-up ------------------ */

/*
 * One block of shared memory for a receive queue. Length is the frame size
 * rounded to pages times the packet count. The SG buffer is ours, sized for
 * one element per page, and used only during the call: what the miniport
 * keeps is the virtual address and the first element's address.
 */
static NDIS_STATUS AllocateQueueMemory(PMP_ADAPTER Adapter, NDIS_RECEIVE_QUEUE_ID QueueId,
                                       NDIS_SHARED_MEMORY_USAGE Usage, ULONG Length,
                                       NODE_REQUIREMENT PreferredNode, PMP_SHARED_BLOCK Block)
{
    NDIS_SHARED_MEMORY_PARAMETERS params;
    PSCATTER_GATHER_LIST sgList;
    ULONG sgListBytes;
    ULONG elements;
    NDIS_HANDLE allocationHandle = NULL;
    NDIS_STATUS status;

    NdisZeroMemory(Block, sizeof(*Block));
    NdisZeroMemory(&params, sizeof(params));
    params.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    params.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    params.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    params.Flags = 0;
    params.QueueId = QueueId;
    params.Usage = Usage;
    params.PreferredNode = PreferredNode;
    params.Length = Length;

    elements = (ULONG)BYTES_TO_PAGES(Length);
    sgListBytes = (ULONG)(sizeof(SCATTER_GATHER_LIST) + elements * sizeof(SCATTER_GATHER_ELEMENT));
    sgList = (PSCATTER_GATHER_LIST)malloc(sgListBytes);
    if (sgList == NULL) {
        return NDIS_STATUS_RESOURCES;
    }
    NdisZeroMemory(sgList, sgListBytes);
    sgList->NumberOfElements = elements; /* its capacity */
    params.SGListBuffer = sgList;
    params.SGListBufferLength = sgListBytes;

    status = NdisAllocateSharedMemory(Adapter->MiniportAdapterHandle, &params, &allocationHandle);
    if (status == NDIS_STATUS_SUCCESS) {
        Block->AllocationHandle = allocationHandle;
        Block->SharedMemoryHandle = params.SharedMemoryHandle;
        Block->VirtualAddress = params.VirtualAddress;
        Block->LogicalAddress = params.SGListBuffer->Elements[0].Address;
        Block->NumberOfElements = params.SGListBuffer->NumberOfElements;
        Block->Length = Length;
        Block->Usage = Usage;
    }
    free(sgList); /* the SG list was needed only during the call */
    return status;
}

/*
 * A descriptor ring must be one physically contiguous range, so it asks for
 * NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS and needs room for one element only.
 */
static NDIS_STATUS AllocateDescriptorRing(PMP_ADAPTER Adapter, NDIS_RECEIVE_QUEUE_ID QueueId, ULONG Length,
                                          PMP_SHARED_BLOCK Block)
{
    NDIS_SHARED_MEMORY_PARAMETERS params;
    PSCATTER_GATHER_LIST sgList;
    ULONG sgListBytes = (ULONG)(sizeof(SCATTER_GATHER_LIST) + sizeof(SCATTER_GATHER_ELEMENT));
    NDIS_HANDLE allocationHandle = NULL;
    NDIS_STATUS status;

    NdisZeroMemory(Block, sizeof(*Block));
    NdisZeroMemory(&params, sizeof(params));
    params.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    params.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    params.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    params.Flags = NDIS_SHARED_MEM_PARAMETERS_CONTIGOUS; /* the spelling the docs use */
    params.QueueId = QueueId;
    params.Usage = NdisSharedMemoryUsageOther;
    params.PreferredNode = Adapter->NumaNode;
    params.Length = Length;

    sgList = (PSCATTER_GATHER_LIST)malloc(sgListBytes);
    if (sgList == NULL) {
        return NDIS_STATUS_RESOURCES;
    }
    NdisZeroMemory(sgList, sgListBytes);
    sgList->NumberOfElements = 1;
    params.SGListBuffer = sgList;
    params.SGListBufferLength = sgListBytes;

    status = NdisAllocateSharedMemory(Adapter->MiniportAdapterHandle, &params, &allocationHandle);
    if (status == NDIS_STATUS_SUCCESS) {
        Block->AllocationHandle = allocationHandle;
        Block->SharedMemoryHandle = params.SharedMemoryHandle;
        Block->VirtualAddress = params.VirtualAddress;
        Block->LogicalAddress = sgList->Elements[0].Address;
        Block->NumberOfElements = sgList->NumberOfElements;
        Block->Length = Length;
        Block->Usage = NdisSharedMemoryUsageOther;
        Check(sgList->NumberOfElements == 1, "a CONTIGUOUS block is described by exactly one SG element");
        Check(sgList->Elements[0].Length >= Length, "the one SG element covers the whole ring");
    }
    free(sgList);
    return status;
}

static void FreeSharedBlock(PMP_ADAPTER Adapter, PMP_SHARED_BLOCK Block)
{
    if (Block->AllocationHandle != NULL) {
        NdisFreeSharedMemory(Adapter->MiniportAdapterHandle, Block->AllocationHandle);
        NdisZeroMemory(Block, sizeof(*Block));
    }
}

/* ---- VMQ queue life cycle ------------------------------------------------- */

/* After the queue's allocation completed: its receive buffers. */
static NDIS_STATUS AllocateQueueBuffers(PMP_ADAPTER Adapter, PMP_RECEIVE_QUEUE Queue)
{
    NDIS_STATUS status;

    if (Queue->QueueId == NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
        return NDIS_STATUS_SUCCESS; /* the default queue uses the miniport's own memory */
    }
    if (Queue->LookaheadSplit) {
        status = AllocateQueueMemory(Adapter, Queue->QueueId, NdisSharedMemoryUsageReceiveLookahead,
                                     MP_ROUND_TO_PAGES(MP_LOOKAHEAD_BYTES) * MP_PACKETS_PER_QUEUE,
                                     Adapter->NumaNode, &Queue->Blocks[0]);
        if (status != NDIS_STATUS_SUCCESS) {
            return status;
        }
        Queue->BlockCount = 1;
        status = AllocateQueueMemory(Adapter, Queue->QueueId, NdisSharedMemoryUsageReceivePostLookahead,
                                     MP_ROUND_TO_PAGES(MP_FRAME_BYTES - MP_LOOKAHEAD_BYTES) * MP_PACKETS_PER_QUEUE,
                                     Adapter->NumaNode, &Queue->Blocks[1]);
        if (status != NDIS_STATUS_SUCCESS) {
            return status;
        }
        Queue->BlockCount = 2;
        return NDIS_STATUS_SUCCESS;
    }
    status = AllocateQueueMemory(Adapter, Queue->QueueId, NdisSharedMemoryUsageReceive,
                                 MP_ROUND_TO_PAGES(MP_FRAME_BYTES) * MP_PACKETS_PER_QUEUE, Adapter->NumaNode,
                                 &Queue->Blocks[0]);
    if (status == NDIS_STATUS_SUCCESS) {
        Queue->BlockCount = 1;
    }
    return status;
}

/* Before the queue's free completes: every block of it. */
static void FreeQueueBuffers(PMP_ADAPTER Adapter, PMP_RECEIVE_QUEUE Queue)
{
    ULONG i;
    for (i = 0; i < Queue->BlockCount; ++i) {
        FreeSharedBlock(Adapter, &Queue->Blocks[i]);
    }
    Queue->BlockCount = 0;
}

/* ---- Checks --------------------------------------------------------------- */

static int IsZero(const unsigned char *p, ULONG n)
{
    ULONG i;
    for (i = 0; i < n; ++i) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* What the NIC would do: DMA frames in. Here: a pattern per queue and block. */
static void FillBlock(PMP_SHARED_BLOCK Block, unsigned char seed)
{
    unsigned char *p = (unsigned char *)Block->VirtualAddress;
    ULONG i;
    for (i = 0; i < Block->Length; ++i) {
        p[i] = (unsigned char)(seed + i * 7u);
    }
}

static int BlockHolds(PMP_SHARED_BLOCK Block, unsigned char seed)
{
    const unsigned char *p = (const unsigned char *)Block->VirtualAddress;
    ULONG i;
    for (i = 0; i < Block->Length; ++i) {
        if (p[i] != (unsigned char)(seed + i * 7u)) {
            return 0;
        }
    }
    return 1;
}

/* A block as it comes back from NdisAllocateSharedMemory, and as NDIS's
 * books (ndisshm_block_get_info) describe it. */
static void CheckNewBlock(PMP_ADAPTER Adapter, NDIS_RECEIVE_QUEUE_ID QueueId, PMP_SHARED_BLOCK Block)
{
    ndisshm_block_info info;
    NDIS_STATUS status;

    Check(Block->VirtualAddress != NULL, "VirtualAddress set");
    Check(((ULONG_PTR)Block->VirtualAddress & (PAGE_SIZE - 1)) == 0, "block is page-aligned");
    /* NDIS's own memory (no provider registered): SharedMemoryHandle stays NULL, as on Windows. */
    Check(Block->SharedMemoryHandle == NULL, "SharedMemoryHandle NULL for NDIS's own memory");
    Check(Block->AllocationHandle != NULL, "an allocation handle");
    Check(Block->LogicalAddress.QuadPart != 0, "Elements[0].Address set");
    Check(Block->NumberOfElements >= 1 && Block->NumberOfElements <= BYTES_TO_PAGES(Block->Length),
          "NumberOfElements within the SG buffer's capacity");
    Check(IsZero((const unsigned char *)Block->VirtualAddress, Block->Length), "a new block is zeroed");

    NdisZeroMemory(&info, sizeof(info));
    status = ndisshm_block_get_info(Adapter->MiniportAdapterHandle, Block->AllocationHandle, &info);
    Check(status == NDIS_STATUS_SUCCESS, "ndisshm_block_get_info");
    Check(info.queue_id == QueueId && info.usage == Block->Usage && info.length == Block->Length,
          "the books have the block's queue, usage and length");
    Check(info.virtual_address == Block->VirtualAddress &&
              info.first_address == (ULONG64)Block->LogicalAddress.QuadPart,
          "the books have the block's addresses");
    Check(info.provider != NULL && strcmp(info.provider, "default") == 0, "served by the default provider");
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

int main(void)
{
    ndisshm_runtime_config config;
    ndisshm_runtime *runtime = NULL;
    ndisshm_adapter_stats stats;
    ndisshm_usage_stats queueStats;
    MP_ADAPTER adapter;
    NDIS_STATUS status;
    ULONG q, i;
    ULONG expectedBlocks = 0;
    uint64_t expectedBytes = 0;
    uint64_t globalViolationsBefore;

    ndisshm_runtime_config_init(&config);
    config.report_to_stderr = 0; /* we count violations ourselves below */
    status = ndisshm_runtime_create(&config, &runtime, NULL, 0);
    if (status != NDIS_STATUS_SUCCESS) {
        fprintf(stderr, "miniport_vmq: ndisshm_runtime_create: %s\n", ndisshm_status_name(status));
        return 1;
    }
    globalViolationsBefore = ndisshm_global_violation_count();

    /* MiniportInitializeEx: the adapter, no NUMA preference. */
    NdisZeroMemory(&adapter, sizeof(adapter));
    adapter.NumaNode = MM_ANY_NODE_OK;
    status = ndisshm_adapter_create(runtime, "vmq-nic0", &adapter.MiniportAdapterHandle);
    Check(status == NDIS_STATUS_SUCCESS, "ndisshm_adapter_create");
    if (status != NDIS_STATUS_SUCCESS) {
        ndisshm_runtime_destroy(runtime);
        return 1;
    }

    /* OID_RECEIVE_FILTER_ALLOCATE_QUEUE for queues 1..3; queue 2 asked for
     * lookahead split. Each queue's buffers once its allocation completed. */
    for (q = 0; q <= MP_VMQ_QUEUE_COUNT; ++q) {
        PMP_RECEIVE_QUEUE queue = &adapter.Queues[q];
        queue->QueueId = q;
        queue->LookaheadSplit = (q == 2);
        if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
            status = ndisshm_queue_create(adapter.MiniportAdapterHandle, q);
            Check(status == NDIS_STATUS_SUCCESS, "ndisshm_queue_create");
        }
        queue->Allocated = TRUE;
        status = AllocateQueueBuffers(&adapter, queue);
        Check(status == NDIS_STATUS_SUCCESS, "AllocateQueueBuffers");
        if (status != NDIS_STATUS_SUCCESS) {
            fprintf(stderr, "miniport_vmq: queue %u: %s\n", (unsigned)q, ndisshm_status_name(status));
        }
        for (i = 0; i < queue->BlockCount; ++i) {
            CheckNewBlock(&adapter, q, &queue->Blocks[i]);
            FillBlock(&queue->Blocks[i], (unsigned char)(q * 16u + i));
            ++expectedBlocks;
            expectedBytes += queue->Blocks[i].Length;
        }
    }
    Check(adapter.Queues[0].BlockCount == 0, "the default queue has no shared memory");
    Check(adapter.Queues[1].BlockCount == 1 && adapter.Queues[1].Blocks[0].Usage == NdisSharedMemoryUsageReceive,
          "queue 1: one Receive block");
    Check(adapter.Queues[2].BlockCount == 2 &&
              adapter.Queues[2].Blocks[0].Usage == NdisSharedMemoryUsageReceiveLookahead &&
              adapter.Queues[2].Blocks[1].Usage == NdisSharedMemoryUsageReceivePostLookahead,
          "queue 2 (lookahead split): a lookahead and a post-lookahead block");
    Check(adapter.Queues[3].BlockCount == 1, "queue 3: one Receive block");

    /* A descriptor ring for queue 1: one contiguous block. */
    status = AllocateDescriptorRing(&adapter, 1, MP_RING_BYTES, &adapter.DescriptorRing);
    Check(status == NDIS_STATUS_SUCCESS, "the CONTIGUOUS descriptor ring");
    if (status == NDIS_STATUS_SUCCESS) {
        CheckNewBlock(&adapter, 1, &adapter.DescriptorRing);
        FillBlock(&adapter.DescriptorRing, 0xA5);
        ++expectedBlocks;
        expectedBytes += adapter.DescriptorRing.Length;
    }

    /* Every block still holds what was written into it: none overlaps another. */
    for (q = 1; q <= MP_VMQ_QUEUE_COUNT; ++q) {
        for (i = 0; i < adapter.Queues[q].BlockCount; ++i) {
            Check(BlockHolds(&adapter.Queues[q].Blocks[i], (unsigned char)(q * 16u + i)),
                  "a receive block kept its contents");
        }
    }
    Check(adapter.DescriptorRing.AllocationHandle == NULL || BlockHolds(&adapter.DescriptorRing, 0xA5),
          "the ring kept its contents");

    /* NDIS's books agree. */
    status = ndisshm_adapter_get_stats(adapter.MiniportAdapterHandle, &stats);
    Check(status == NDIS_STATUS_SUCCESS, "ndisshm_adapter_get_stats");
    Check(stats.total.blocks == expectedBlocks, "stats: blocks outstanding");
    Check(stats.total.bytes == expectedBytes, "stats: bytes outstanding");
    Check(stats.total.failures == 0, "stats: no failed allocation");
    Check(stats.by_usage[NdisSharedMemoryUsageReceive].blocks == 2, "stats: two Receive blocks");
    Check(stats.by_usage[NdisSharedMemoryUsageReceiveLookahead].blocks == 1, "stats: one lookahead block");
    Check(stats.by_usage[NdisSharedMemoryUsageReceivePostLookahead].blocks == 1, "stats: one post-lookahead block");
    Check(stats.by_usage[NdisSharedMemoryUsageOther].blocks == 1, "stats: one ring");
    Check(stats.queues == MP_VMQ_QUEUE_COUNT + 1, "stats: default queue + 3 VMQ queues");
    Check(stats.has_provider == 0, "stats: no provider registered (host memory)");
    status = ndisshm_queue_get_stats(adapter.MiniportAdapterHandle, 2, &queueStats);
    Check(status == NDIS_STATUS_SUCCESS && queueStats.blocks == 2, "queue 2 has two blocks");
    status = ndisshm_queue_get_stats(adapter.MiniportAdapterHandle, NDIS_DEFAULT_RECEIVE_QUEUE_ID, &queueStats);
    Check(status == NDIS_STATUS_SUCCESS && queueStats.blocks == 0, "the default queue has none");

    printf("miniport_vmq: %u blocks, %llu bytes of shared memory for %d VMQ queues (+1 ring)\n",
           (unsigned)expectedBlocks, (unsigned long long)expectedBytes, MP_VMQ_QUEUE_COUNT);
    for (q = 1; q <= MP_VMQ_QUEUE_COUNT; ++q) {
        for (i = 0; i < adapter.Queues[q].BlockCount; ++i) {
            PMP_SHARED_BLOCK b = &adapter.Queues[q].Blocks[i];
            printf("  queue %u: %-20s %7u bytes at %p, DMA address 0x%llx, %u SG element(s)\n", (unsigned)q,
                   ndisshm_usage_name(b->Usage), (unsigned)b->Length, b->VirtualAddress,
                   (unsigned long long)b->LogicalAddress.QuadPart, (unsigned)b->NumberOfElements);
        }
    }

    /* OID_RECEIVE_FILTER_FREE_QUEUE: every block of a queue is freed before
     * the queue's free completes. The ring belongs to queue 1. */
    for (q = MP_VMQ_QUEUE_COUNT; q >= 1; --q) {
        PMP_RECEIVE_QUEUE queue = &adapter.Queues[q];
        FreeQueueBuffers(&adapter, queue);
        if (q == 1) {
            FreeSharedBlock(&adapter, &adapter.DescriptorRing);
        }
        status = ndisshm_queue_get_stats(adapter.MiniportAdapterHandle, q, &queueStats);
        Check(status == NDIS_STATUS_SUCCESS && queueStats.blocks == 0 && queueStats.bytes == 0,
              "a queue has no blocks left before it is freed");
        status = ndisshm_queue_free(adapter.MiniportAdapterHandle, q);
        Check(status == NDIS_STATUS_SUCCESS, "ndisshm_queue_free");
        queue->Allocated = FALSE;
    }

    status = ndisshm_adapter_get_stats(adapter.MiniportAdapterHandle, &stats);
    Check(status == NDIS_STATUS_SUCCESS, "ndisshm_adapter_get_stats after the frees");
    Check(stats.total.blocks == 0 && stats.total.bytes == 0, "zero blocks outstanding");
    Check(stats.total.allocations == expectedBlocks && stats.total.frees == expectedBlocks,
          "every allocation was freed");
    Check(stats.total.peak_blocks == expectedBlocks, "peak blocks");
    Check(stats.queues == 1, "only the default queue is left");
    Check(TotalViolations(runtime) == 0, "no verifier violation");
    Check(ndisshm_global_violation_count() == globalViolationsBefore, "no process-wide verifier violation");

    /* MiniportHaltEx. */
    ndisshm_adapter_destroy(adapter.MiniportAdapterHandle);
    Check(TotalViolations(runtime) == 0, "no leak reported at teardown");
    ndisshm_runtime_destroy(runtime);

    if (g_failures != 0) {
        fprintf(stderr, "miniport_vmq: %d check(s) failed\n", g_failures);
        return 1;
    }
    printf("miniport_vmq: all blocks freed, 0 outstanding, 0 violations\n");
    return 0;
}
