/** @file
 * ndis_shm.h: the NDIS shared memory API (NDIS 6.20+) for Linux user space.
 *
 * Source compatible with the parts of the WDK's ndis.h that a miniport uses to
 * allocate shared memory for its receive queues and that a shared memory
 * provider (a filter such as the Hyper-V virtual switch) uses to register.
 * Every type has the Windows x64 layout: ULONG is 32 bits, pointers 64 bits;
 * static assertions at the end of this file pin each size and offset.
 *
 * Compiles as C11 and as C++. Constants were checked against public copies of
 * ndis.h; docs/ndis-names.md lists each name, where it lives here, and what we
 * do not implement.
 *
 * What is ours and not NDIS's (creating runtimes, adapters, provider bindings
 * and receive queues, which the PnP manager does on Windows) lives in
 * <ndisshm/host.h>, under the ndisshm_ prefix.
 */
#ifndef NDIS_NDIS_SHM_H
#define NDIS_NDIS_SHM_H

#include <ndisshm/export.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Windows base types, with their x64 widths -------------------------- */
#ifndef NDISSHM_NO_BASE_TYPES
typedef uint8_t UCHAR;
typedef uint16_t USHORT;
typedef uint32_t ULONG; /**< 32 bits on Windows x64: never 'unsigned long' */
typedef int32_t LONG;
typedef uint64_t ULONG64;
typedef uint64_t ULONGLONG;
typedef int64_t LONGLONG;
typedef uintptr_t ULONG_PTR;
#ifndef VOID
#define VOID void
#endif
typedef void *PVOID;
typedef UCHAR BOOLEAN;
typedef ULONG *PULONG;
typedef UCHAR KIRQL;
typedef KIRQL *PKIRQL;
typedef ULONG_PTR KSPIN_LOCK;

typedef union _LARGE_INTEGER {
    struct {
        ULONG LowPart;
        LONG HighPart;
    };
    struct {
        ULONG LowPart;
        LONG HighPart;
    } u;
    LONGLONG QuadPart;
} LARGE_INTEGER, *PLARGE_INTEGER;
typedef LARGE_INTEGER PHYSICAL_ADDRESS, *PPHYSICAL_ADDRESS;
#endif

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

/** Signed, as in the WDK: (ULONG_PTR)va & ~(PAGE_SIZE - 1) must keep the high bits. */
#define PAGE_SIZE 0x1000
#define PAGE_SHIFT 12L
/** Pages spanned by Size bytes starting at a page boundary (as drivers use it). */
#define BYTES_TO_PAGES(Size) (((Size) >> PAGE_SHIFT) + (((Size) & (PAGE_SIZE - 1)) != 0))

#define NdisZeroMemory(Destination, Length) memset((Destination), 0, (Length))
#define NdisMoveMemory(Destination, Source, Length) memcpy((Destination), (Source), (Length))

typedef void *NDIS_HANDLE, **PNDIS_HANDLE;
typedef LONG NDIS_STATUS, *PNDIS_STATUS;
typedef ULONG NDIS_RECEIVE_QUEUE_ID, *PNDIS_RECEIVE_QUEUE_ID;
typedef ULONG NDIS_NIC_SWITCH_VPORT_ID, *PNDIS_NIC_SWITCH_VPORT_ID;
typedef ULONG NODE_REQUIREMENT;

/* ---- Physical addresses, as ndis.h spells them --------------------------- */
/* An SG element's Address as a miniport names it (ndis.h: a PHYSICAL_ADDRESS). */
typedef PHYSICAL_ADDRESS NDIS_PHYSICAL_ADDRESS, *PNDIS_PHYSICAL_ADDRESS;
/* An NDIS_PHYSICAL_ADDRESS initializer from its low and high 32 bits. ndis.h
 * writes `{ (ULONG)(_Low), (LONG)(_High) }`, relying on brace elision into the
 * union's first member; the inner braces give the same value and keep C's
 * -Wmissing-braces (in -Wall) quiet in drivers built with -Werror. */
#define NDIS_PHYSICAL_ADDRESS_CONST(_Low, _High) { { (ULONG)(_Low), (LONG)(_High) } }
/* The halves of an NDIS_PHYSICAL_ADDRESS (an lvalue), read and written as ndis.h does. */
#define NdisGetPhysicalAddressHigh(_PhysicalAddress) ((_PhysicalAddress).HighPart)
#define NdisSetPhysicalAddressHigh(_PhysicalAddress, _Value) ((_PhysicalAddress).HighPart) = (_Value)
#define NdisGetPhysicalAddressLow(_PhysicalAddress) ((_PhysicalAddress).LowPart)
#define NdisSetPhysicalAddressLow(_PhysicalAddress, _Value) ((_PhysicalAddress).LowPart) = (_Value)

/* ---- Status codes (NTSTATUS values, as the WDK defines them) ------------ */
#define NDIS_STATUS_SUCCESS ((NDIS_STATUS)0x00000000L)
#define NDIS_STATUS_PENDING ((NDIS_STATUS)0x00000103L)
#define NDIS_STATUS_FAILURE ((NDIS_STATUS)0xC0000001L)
#define NDIS_STATUS_INVALID_PARAMETER ((NDIS_STATUS)0xC000000DL)
#define NDIS_STATUS_RESOURCES ((NDIS_STATUS)0xC000009AL)
#define NDIS_STATUS_NOT_SUPPORTED ((NDIS_STATUS)0xC00000BBL)
#define NDIS_STATUS_INVALID_LENGTH ((NDIS_STATUS)0xC0010014L)
#define NDIS_STATUS_INVALID_DATA ((NDIS_STATUS)0xC0010015L)
#define NDIS_STATUS_BUFFER_TOO_SHORT ((NDIS_STATUS)0xC0010016L)

/* ---- IRQL (emulated per thread; see KeRaiseIrql below) ------------------ */
#define PASSIVE_LEVEL 0
#define APC_LEVEL 1
#define DISPATCH_LEVEL 2
#define HIGH_LEVEL 15

/* ---- Object header ------------------------------------------------------ */
typedef struct _NDIS_OBJECT_HEADER {
    UCHAR Type;
    UCHAR Revision;
    USHORT Size;
} NDIS_OBJECT_HEADER, *PNDIS_OBJECT_HEADER;

#define NDIS_OBJECT_TYPE_DEFAULT 0x80
#define NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS 0xB0

#define NDIS_DEFAULT_RECEIVE_QUEUE_ID 0
#define MM_ANY_NODE_OK 0x80000000u

/* ---- Scatter/gather lists (wdm.h) --------------------------------------- */
typedef struct _SCATTER_GATHER_ELEMENT {
    PHYSICAL_ADDRESS Address;
    ULONG Length;
    ULONG_PTR Reserved;
} SCATTER_GATHER_ELEMENT, *PSCATTER_GATHER_ELEMENT;

typedef struct _SCATTER_GATHER_LIST {
    ULONG NumberOfElements;
    ULONG_PTR Reserved;
    /** A flexible array, as in wdm.h: sizeof(SCATTER_GATHER_LIST) is the
     * 16-byte header in C and in C++ (where g++ and clang take it as an
     * extension), so drivers' sizeof(list) + n * sizeof(element) is exact. */
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
    SCATTER_GATHER_ELEMENT Elements[];
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
} SCATTER_GATHER_LIST, *PSCATTER_GATHER_LIST;

/** @def NDISSHM_SG_LIST_BYTES(n)
 * Bytes of an SG list buffer that holds n elements. */
#define NDISSHM_SG_LIST_HEADER_BYTES ((ULONG)sizeof(SCATTER_GATHER_LIST))
#define NDISSHM_SG_LIST_BYTES(n) \
    (NDISSHM_SG_LIST_HEADER_BYTES + (ULONG)(n) * (ULONG)sizeof(SCATTER_GATHER_ELEMENT))
/** Elements a buffer of BufferLength bytes can hold. */
#define NDISSHM_SG_LIST_CAPACITY(BufferLength)                                  \
    ((BufferLength) < NDISSHM_SG_LIST_HEADER_BYTES                              \
         ? 0u                                                                   \
         : ((ULONG)(BufferLength) - NDISSHM_SG_LIST_HEADER_BYTES) /             \
               (ULONG)sizeof(SCATTER_GATHER_ELEMENT))

/* ---- Shared memory parameters ------------------------------------------- */
typedef enum _NDIS_SHARED_MEMORY_USAGE {
    NdisSharedMemoryUsageUndefined = 0,
    NdisSharedMemoryUsageXmit = 1,
    NdisSharedMemoryUsageXmitHeader = 2,
    NdisSharedMemoryUsageXmitData = 3,
    NdisSharedMemoryUsageReceive = 4,
    NdisSharedMemoryUsageReceiveLookahead = 5,
    NdisSharedMemoryUsageReceivePostLookahead = 6,
    NdisSharedMemoryUsageReceiveHeader = 7,
    NdisSharedMemoryUsageReceiveData = 8,
    NdisSharedMemoryUsageOther = 9,
    NdisSharedMemoryUsageMax = 10
} NDIS_SHARED_MEMORY_USAGE, *PNDIS_SHARED_MEMORY_USAGE;

/** @{ */
/** The block must be one physically (here: address-) contiguous range, one SG
 * element. ndis.h spells it both ways, with the same value. */
#define NDIS_SHARED_MEM_PARAMETERS_CONTIGOUS 0x00000001
#define NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS 0x00000001
/** @} */

#define NDIS_SHARED_MEMORY_PARAMETERS_REVISION_1 1
#define NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2 2

typedef struct _NDIS_SHARED_MEMORY_PARAMETERS {
    NDIS_OBJECT_HEADER Header;     /**< Type DEFAULT, Revision 1 or 2 */
    ULONG Flags;                   /**< NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS */
    NDIS_RECEIVE_QUEUE_ID QueueId; /**< NDIS_DEFAULT_RECEIVE_QUEUE_ID or a VMQ */
    NDIS_HANDLE SharedMemoryHandle; /**< OUT: set by NDIS on success */
    NODE_REQUIREMENT PreferredNode; /**< a NUMA node, or MM_ANY_NODE_OK */
    NDIS_SHARED_MEMORY_USAGE Usage;
    ULONG Length;                   /**< bytes */
    PVOID VirtualAddress;           /**< OUT: base address of the block */
    ULONG SGListBufferLength;       /**< IN: bytes at SGListBuffer */
    PSCATTER_GATHER_LIST SGListBuffer; /**< IN: caller's buffer; OUT: filled */
    NDIS_NIC_SWITCH_VPORT_ID VPortId;  /**< revision 2 (NDIS 6.30) only */
} NDIS_SHARED_MEMORY_PARAMETERS, *PNDIS_SHARED_MEMORY_PARAMETERS;

/** RTL_SIZEOF_THROUGH_FIELD, as ndis.h defines the revision sizes. */
#define NDISSHM_SIZEOF_THROUGH_FIELD(type, field) \
    (offsetof(type, field) + sizeof(((type *)0)->field))
#define NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1 \
    NDISSHM_SIZEOF_THROUGH_FIELD(NDIS_SHARED_MEMORY_PARAMETERS, SGListBuffer)
#define NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2 \
    NDISSHM_SIZEOF_THROUGH_FIELD(NDIS_SHARED_MEMORY_PARAMETERS, VPortId)

/* ---- Provider characteristics and handlers ------------------------------ */
/** Pointer typedefs, as in the WDK's ndis.h (not function types).
 *
 * The allocate handler is called by NDIS, at PASSIVE_LEVEL, in the context of
 * NdisAllocateSharedMemory. On success the provider has filled
 * SharedMemoryParameters->VirtualAddress and the caller's SGListBuffer (at
 * most NDISSHM_SG_LIST_CAPACITY(SGListBufferLength) elements; if more are
 * needed it returns NDIS_STATUS_BUFFER_TOO_SHORT with NumberOfElements set to
 * the count needed), and written its own non-NULL context for the block to
 * *pSharedMemoryProviderContext. */
typedef NDIS_STATUS (*ALLOCATE_SHARED_MEMORY_HANDLER)(NDIS_HANDLE ProviderContext,
                                                      PNDIS_SHARED_MEMORY_PARAMETERS SharedMemoryParameters,
                                                      PNDIS_HANDLE pSharedMemoryProviderContext);

/** Called by NDIS, at PASSIVE_LEVEL, exactly once per block, with the context
 * the provider returned at allocation. */
typedef VOID (*FREE_SHARED_MEMORY_HANDLER)(NDIS_HANDLE ProviderContext, NDIS_HANDLE SharedMemoryProviderContext);

#define NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1 1
#define NDIS_SHARED_MEMORY_PROVIDER_CHAR_SUPPORTS_PF_VPORTS 0x00000001

typedef struct _NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS {
    NDIS_OBJECT_HEADER Header; /**< Type ..._SHARED_MEMORY_PROVIDER_CHARACTERISTICS */
    ULONG Flags;               /**< reserved for NDIS */
    NDIS_HANDLE ProviderContext;
    ALLOCATE_SHARED_MEMORY_HANDLER AllocateSharedMemoryHandler;
    FREE_SHARED_MEMORY_HANDLER FreeSharedMemoryHandler;
} NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, *PNDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;

#define NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1          \
    NDISSHM_SIZEOF_THROUGH_FIELD(NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, \
                                 FreeSharedMemoryHandler)

/** NdisSetOptionalHandlers takes any optional handler set; the header's Type
 * says which. Only the shared memory provider set is implemented here. */
typedef struct _NDIS_DRIVER_OPTIONAL_HANDLERS {
    NDIS_OBJECT_HEADER Header;
} NDIS_DRIVER_OPTIONAL_HANDLERS, *PNDIS_DRIVER_OPTIONAL_HANDLERS;

/* ---- Spin locks (raise the calling thread to DISPATCH_LEVEL) ------------ */
typedef struct _NDIS_SPIN_LOCK {
    KSPIN_LOCK SpinLock;
    KIRQL OldIrql;
} NDIS_SPIN_LOCK, *PNDIS_SPIN_LOCK;

/* ---- Entry points ------------------------------------------------------- */

/** Allocates one block of shared memory for the miniport adapter NdisHandle,
 * as ndis.sys does (spec section 7; docs/ndis-names.md section 4 has every
 * edge). Caller at PASSIVE_LEVEL. NDIS calls, synchronously: for a queue a
 * binding allocated, that binding's provider; for queue 0 and the queues no
 * providing binding owns, the provider registered with the adapter's own
 * handle; else its own memory (one contiguous element). On success:
 * SharedMemoryParameters->VirtualAddress is set, SGListBuffer is filled,
 * *pAllocationHandle is set (free it with NdisFreeSharedMemory), and
 * ->SharedMemoryHandle is the handle packets name the block by: NULL for
 * NDIS's own memory, as on Windows. NDIS's own blocks are zeroed (no byte
 * crosses users); a provider's are as it gives them.
 * As on Windows, the Header is not checked (revision 1's fields are read
 * whatever it says; VPortId only when it says revision 2), Usage goes to the
 * provider as it is, of Flags only CONTIGUOUS is read, a PreferredNode past
 * the last NUMA node means any node, and a provider's success-class status
 * (PENDING) is success: each is accepted with a verifier finding of kind
 * NDISSHM_VIOLATION_LENIENT.
 * Failures: NDIS_STATUS_NOT_SUPPORTED (NdisHandle NULL),
 * NDIS_STATUS_INVALID_PARAMETER (a handle that is no adapter; an unknown or
 * uncompleted queue; NULL pointers), NDIS_STATUS_INVALID_LENGTH (Length 0 or
 * over the runtime's maximum), NDIS_STATUS_BUFFER_TOO_SHORT (SGListBuffer
 * holds too few elements: when it holds at least the list header,
 * NumberOfElements is set to the count needed), NDIS_STATUS_RESOURCES (out of
 * memory or book-keeping records; a CONTIGUOUS block the provider described
 * in several elements, freed back to it), NDIS_STATUS_FAILURE (with the
 * verifier on: not at PASSIVE_LEVEL; or the provider misbehaved), or a
 * provider's own error status. On failure no output is valid and nothing is
 * allocated.
 * @param NdisHandle the miniport adapter's handle
 * @param SharedMemoryParameters in: Flags, QueueId, PreferredNode, Usage, Length, SGListBufferLength, SGListBuffer; out: SharedMemoryHandle, VirtualAddress, the SG list
 * @param pAllocationHandle receives the allocation handle, for NdisFreeSharedMemory
 * @return NDIS_STATUS_SUCCESS, or as above (the verifier reports the reason) */
NDISSHM_API NDIS_STATUS NdisAllocateSharedMemory(NDIS_HANDLE NdisHandle,
                                                 PNDIS_SHARED_MEMORY_PARAMETERS SharedMemoryParameters,
                                                 PNDIS_HANDLE pAllocationHandle);

/** Frees one block that NdisAllocateSharedMemory gave this adapter, by calling
 * the provider's free handler with the provider's own context, exactly once.
 * Caller at PASSIVE_LEVEL. A NULL AllocationHandle is a silent no-op, as on
 * Windows. A handle that is not a live block of this adapter (double free,
 * another adapter's block, garbage: a bug check on Windows) is a verifier
 * violation: it is reported and nothing is freed or corrupted.
 * @param NdisHandle the adapter the block was allocated on
 * @param AllocationHandle what NdisAllocateSharedMemory gave */
NDISSHM_API VOID NdisFreeSharedMemory(NDIS_HANDLE NdisHandle, NDIS_HANDLE AllocationHandle);

/** Registers optional handlers. With OptionalHandlers pointing at an
 * NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS (Type 0xB0, both handlers set;
 * Revision and Size are not checked, as on Windows: a finding of kind
 * NDISSHM_VIOLATION_LENIENT), NdisHandle may be a provider binding
 * (ndisshm_binding_create): its provider then serves the queues that binding
 * allocated; or the miniport adapter's own handle: its provider serves queue
 * 0 and the queues no providing binding owns. Several bindings may each
 * provide for their own queues. A handle that is neither:
 * NDIS_STATUS_NOT_SUPPORTED. Another Type, or a missing handler:
 * NDIS_STATUS_INVALID_PARAMETER (other optional handler types are not
 * implemented). A re-registration while the registrant has blocks
 * outstanding: NDIS_STATUS_FAILURE.
 * @param NdisHandle the handle the provider registers with
 * @param OptionalHandlers an NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS
 * @return NDIS_STATUS_SUCCESS, or as above (the verifier reports the reason) */
NDISSHM_API NDIS_STATUS NdisSetOptionalHandlers(NDIS_HANDLE NdisHandle,
                                                PNDIS_DRIVER_OPTIONAL_HANDLERS OptionalHandlers);

/** @{ */
/** Per-thread IRQL emulation. Every thread starts at PASSIVE_LEVEL. Raising to
 * a lower level, or lowering to a higher one, is a verifier violation and
 * leaves the IRQL unchanged.
 * @return the calling thread's IRQL (PASSIVE_LEVEL at its birth) */
NDISSHM_API KIRQL KeGetCurrentIrql(void);
/** Raises the calling thread's IRQL, as Windows' KeRaiseIrql; a lower NewIrql is a verifier report.
 * @param NewIrql the level to raise to
 * @param OldIrql receives the level before, for KeLowerIrql */
NDISSHM_API VOID KeRaiseIrql(KIRQL NewIrql, PKIRQL OldIrql);
/** Lowers the calling thread's IRQL back, as Windows' KeLowerIrql; a higher NewIrql is a verifier report.
 * @param NewIrql the level KeRaiseIrql gave back */
NDISSHM_API VOID KeLowerIrql(KIRQL NewIrql);
/** @} */

/** @{ */
/** Spin locks: acquiring raises the thread to DISPATCH_LEVEL until release.
 * @param SpinLock the lock to initialize */
NDISSHM_API VOID NdisAllocateSpinLock(PNDIS_SPIN_LOCK SpinLock);
/** Releases what NdisAllocateSpinLock set up.
 * @param SpinLock the lock */
NDISSHM_API VOID NdisFreeSpinLock(PNDIS_SPIN_LOCK SpinLock);
/** Takes the lock and raises the thread to DISPATCH_LEVEL, as on Windows.
 * @param SpinLock the lock */
NDISSHM_API VOID NdisAcquireSpinLock(PNDIS_SPIN_LOCK SpinLock);
/** Gives the lock back and lowers the thread to where it was.
 * @param SpinLock the lock */
NDISSHM_API VOID NdisReleaseSpinLock(PNDIS_SPIN_LOCK SpinLock);
/** @} */

/** The allocation entry point with the caller's source location, so verifier
 * reports and leak reports say where a block was allocated. The macro below
 * routes NdisAllocateSharedMemory(...) here; &NdisAllocateSharedMemory still
 * names the plain function. Define NDISSHM_NO_CALL_SITES to turn it off.
 * @param NdisHandle as for NdisAllocateSharedMemory
 * @param SharedMemoryParameters as for NdisAllocateSharedMemory
 * @param pAllocationHandle as for NdisAllocateSharedMemory
 * @param file the caller's __FILE__
 * @param line the caller's __LINE__
 * @return as NdisAllocateSharedMemory */
NDISSHM_API NDIS_STATUS ndisshm_allocate_shared_memory_at(
    NDIS_HANDLE NdisHandle, PNDIS_SHARED_MEMORY_PARAMETERS SharedMemoryParameters,
    PNDIS_HANDLE pAllocationHandle, const char *file, int line);
#if !defined(NDISSHM_NO_CALL_SITES) && !defined(NDISSHM_BUILDING_LIBRARY)
#define NdisAllocateSharedMemory(NdisHandle, Parameters, pAllocationHandle) \
    ndisshm_allocate_shared_memory_at((NdisHandle), (Parameters), (pAllocationHandle), __FILE__, __LINE__)
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

/* ---- Layout: Windows x64, pinned ---------------------------------------- */
#ifdef __cplusplus
#define NDISSHM_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define NDISSHM_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
NDISSHM_STATIC_ASSERT(sizeof(void *) == 8, "ndis_shm.h models Windows x64: 64-bit pointers only");
NDISSHM_STATIC_ASSERT(sizeof(ULONG) == 4, "ULONG is 32 bits on Windows x64");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_STATUS) == 4, "NDIS_STATUS is a 32-bit NTSTATUS");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_SHARED_MEMORY_USAGE) == 4, "enum is 32 bits");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_OBJECT_HEADER) == 4, "NDIS_OBJECT_HEADER size");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_OBJECT_HEADER, Revision) == 1, "Revision offset");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_OBJECT_HEADER, Size) == 2, "Size offset");

NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, Flags) == 0x04, "Flags");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, QueueId) == 0x08, "QueueId");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, SharedMemoryHandle) == 0x10, "SharedMemoryHandle");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, PreferredNode) == 0x18, "PreferredNode");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, Usage) == 0x1C, "Usage");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, Length) == 0x20, "Length");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, VirtualAddress) == 0x28, "VirtualAddress");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, SGListBufferLength) == 0x30, "SGListBufferLength");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, SGListBuffer) == 0x38, "SGListBuffer");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PARAMETERS, VPortId) == 0x40, "VPortId");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_SHARED_MEMORY_PARAMETERS) == 0x48, "NDIS_SHARED_MEMORY_PARAMETERS size");
NDISSHM_STATIC_ASSERT(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1 == 0x40, "revision 1 size");
NDISSHM_STATIC_ASSERT(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2 == 0x44, "revision 2 size");

NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, Flags) == 0x04, "Flags");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, ProviderContext) == 0x08, "ProviderContext");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, AllocateSharedMemoryHandler) == 0x10,
                      "AllocateSharedMemoryHandler");
NDISSHM_STATIC_ASSERT(offsetof(NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, FreeSharedMemoryHandler) == 0x18,
                      "FreeSharedMemoryHandler");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS) == 0x20, "characteristics size");
NDISSHM_STATIC_ASSERT(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1 == 0x20, "revision 1 size");

NDISSHM_STATIC_ASSERT(sizeof(LARGE_INTEGER) == 8, "PHYSICAL_ADDRESS is 64 bits");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_PHYSICAL_ADDRESS) == 8, "NDIS_PHYSICAL_ADDRESS is 64 bits");
NDISSHM_STATIC_ASSERT(offsetof(LARGE_INTEGER, HighPart) == 4, "HighPart is the upper half (little endian)");
NDISSHM_STATIC_ASSERT(offsetof(SCATTER_GATHER_ELEMENT, Length) == 0x08, "element Length");
NDISSHM_STATIC_ASSERT(offsetof(SCATTER_GATHER_ELEMENT, Reserved) == 0x10, "element Reserved");
NDISSHM_STATIC_ASSERT(sizeof(SCATTER_GATHER_ELEMENT) == 24, "SCATTER_GATHER_ELEMENT size");
NDISSHM_STATIC_ASSERT(offsetof(SCATTER_GATHER_LIST, Reserved) == 0x08, "list Reserved");
NDISSHM_STATIC_ASSERT(offsetof(SCATTER_GATHER_LIST, Elements) == 0x10, "list header is 16 bytes");
NDISSHM_STATIC_ASSERT(sizeof(SCATTER_GATHER_LIST) == 16, "sizeof(SCATTER_GATHER_LIST) is the header alone");
NDISSHM_STATIC_ASSERT(sizeof(NDIS_SPIN_LOCK) == 16, "NDIS_SPIN_LOCK size");

#endif /* NDIS_NDIS_SHM_H */
