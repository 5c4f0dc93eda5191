// The NDIS entry points (include/ndis/ndis_shm.h), mapped onto the core.
// Only handle resolution and header checks of NdisSetOptionalHandlers live
// here; every rule of the allocation and free paths is in src/core/.
#define NDISSHM_BUILDING_LIBRARY 1
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <cstdio>
#include <memory>
#include <string>

#include "core/irql.hpp"
#include "core/ops_provider.hpp"
#include "core/runtime.hpp"

using ndisshm::core::Adapter;
using ndisshm::core::Binding;
using ndisshm::core::Verifier;

namespace {

std::string hex(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%p", p);
    return buf;
}

Adapter* resolve_adapter(NDIS_HANDLE h, const char* call) {
    Adapter* a = ndisshm::core::find_adapter(h);
    if (a == nullptr)
        Verifier::global().report(NDISSHM_VIOLATION_BAD_HANDLE, call, h, nullptr, {},
                                  "NdisHandle " + hex(h) + " is not a live miniport adapter (ndisshm_adapter_create)");
    return a;
}

}  // namespace

extern "C" {

NDIS_STATUS ndisshm_allocate_shared_memory_at(NDIS_HANDLE NdisHandle, PNDIS_SHARED_MEMORY_PARAMETERS p,
                                              PNDIS_HANDLE pAllocationHandle, const char* file, int line) {
    if (NdisHandle == nullptr) {
        // ndis.sys: NOT_SUPPORTED for a NULL handle, INVALID_PARAMETER for any other that is no adapter.
        Verifier::global().report(NDISSHM_VIOLATION_BAD_HANDLE, "NdisAllocateSharedMemory", nullptr, nullptr,
                                  {file, line}, "NdisHandle is NULL; it must be the miniport adapter's handle");
        return NDIS_STATUS_NOT_SUPPORTED;
    }
    Adapter* a = resolve_adapter(NdisHandle, "NdisAllocateSharedMemory");
    if (a == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    return a->runtime->allocate(a, p, pAllocationHandle, {file, line});
}

NDIS_STATUS NdisAllocateSharedMemory(NDIS_HANDLE NdisHandle, PNDIS_SHARED_MEMORY_PARAMETERS p,
                                     PNDIS_HANDLE pAllocationHandle) {
    return ndisshm_allocate_shared_memory_at(NdisHandle, p, pAllocationHandle, nullptr, 0);
}

VOID NdisFreeSharedMemory(NDIS_HANDLE NdisHandle, NDIS_HANDLE AllocationHandle) {
    Adapter* a = resolve_adapter(NdisHandle, "NdisFreeSharedMemory");
    if (a != nullptr) a->runtime->free(a, AllocationHandle);
}

NDIS_STATUS NdisSetOptionalHandlers(NDIS_HANDLE NdisHandle, PNDIS_DRIVER_OPTIONAL_HANDLERS OptionalHandlers) {
    constexpr const char* kCall = "NdisSetOptionalHandlers";
    // A binding registers for the queues it allocates; the miniport adapter's
    // own handle registers the adapter's provider (queue 0 and the queues no
    // providing binding owns). Any other handle: NOT_SUPPORTED, as ndis.sys.
    Binding* b = ndisshm::core::find_binding(NdisHandle);
    if (b == nullptr) {
        if (Adapter* a = ndisshm::core::find_adapter(NdisHandle)) b = a->runtime->adapter_binding(a);
    }
    if (b == nullptr) {
        Verifier::global().report(NDISSHM_VIOLATION_BAD_HANDLE, kCall, nullptr, NdisHandle, {},
                                  "NdisHandle " + hex(NdisHandle) +
                                      " is neither a live provider binding nor a miniport adapter");
        return NDIS_STATUS_NOT_SUPPORTED;
    }
    ndisshm::core::Runtime* rt = b->adapter->runtime;
    const std::string who = (b->adapter_own ? std::string("the adapter's own handle") : "binding '" + b->name + "'") +
                            " on " + ndisshm::core::Runtime::describe(b->adapter);
    auto refuse = [&](const std::string& why) {
        rt->verifier().report(NDISSHM_VIOLATION_BAD_REGISTRATION, kCall, b->adapter, NdisHandle, {},
                              why + " (" + who + ")");
        return NDIS_STATUS_INVALID_PARAMETER;
    };
    if (rt->verifier().enabled() && ndisshm::core::current_irql() != PASSIVE_LEVEL) {
        rt->verifier().report(NDISSHM_VIOLATION_IRQL, kCall, b->adapter, NdisHandle, {},
                              "called at IRQL " + std::to_string(ndisshm::core::current_irql()) + " by " + who +
                                  "; it must be called at PASSIVE_LEVEL");
        return NDIS_STATUS_FAILURE;
    }
    if (OptionalHandlers == nullptr) return refuse("OptionalHandlers is NULL");
    const NDIS_OBJECT_HEADER& h = OptionalHandlers->Header;
    if (h.Type != NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS) {
        char t[8];
        std::snprintf(t, sizeof(t), "0x%02X", h.Type);
        return refuse(std::string("Header.Type is ") + t +
                      "; only NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS (0xB0) is implemented");
    }
    // ndis.sys reads neither Revision nor Size: the characteristics are taken
    // as revision 1 whatever they say.
    if (h.Revision != NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1 ||
        h.Size < NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1)
        rt->verifier().report(NDISSHM_VIOLATION_LENIENT, kCall, b->adapter, NdisHandle, {},
                              "Header.Revision is " + std::to_string(h.Revision) + " and Header.Size " +
                                  std::to_string(h.Size) + ", not revision 1 of at least " +
                                  std::to_string(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1) +
                                  " bytes; accepted, as Windows does (" + who + ")");
    const auto* c = reinterpret_cast<const NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS*>(OptionalHandlers);
    if (c->AllocateSharedMemoryHandler == nullptr) return refuse("AllocateSharedMemoryHandler is NULL");
    if (c->FreeSharedMemoryHandler == nullptr) return refuse("FreeSharedMemoryHandler is NULL");
    ndisshm_provider_ops ops;
    ndisshm_provider_ops_init(&ops);
    ops.context = c->ProviderContext;
    ops.allocate = c->AllocateSharedMemoryHandler;
    ops.free = c->FreeSharedMemoryHandler;
    return rt->register_provider(b, kCall, std::make_unique<ndisshm::core::OpsProvider>(ops, b->name));
}

}  // extern "C"
