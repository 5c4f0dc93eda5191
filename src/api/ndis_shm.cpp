// The NDIS entry points (include/ndis/ndis_shm.h), mapped onto the core.
// Only handle resolution and header checks of NdisSetOptionalHandlers live
// here; every rule of the allocation and free paths is in src/core/.
#define NDISSHM_BUILDING_LIBRARY 1
#include <ndis/ndis_shm.h>

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
    Binding* b = ndisshm::core::find_binding(NdisHandle);
    if (b == nullptr) {
        Adapter* a = ndisshm::core::find_adapter(NdisHandle);
        Verifier& v = a != nullptr ? a->runtime->verifier() : Verifier::global();
        v.report(NDISSHM_VIOLATION_BAD_HANDLE, kCall, a, NdisHandle, {},
                 a != nullptr ? "NdisHandle is the miniport adapter '" + a->name +
                                    "'; a shared memory provider registers through a provider binding "
                                    "(ndisshm_binding_create)"
                              : "NdisHandle " + hex(NdisHandle) + " is not a live provider binding");
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    ndisshm::core::Runtime* rt = b->adapter->runtime;
    auto refuse = [&](const std::string& why) {
        rt->verifier().report(NDISSHM_VIOLATION_BAD_REGISTRATION, kCall, b->adapter, NdisHandle, {},
                              why + " (binding '" + b->name + "' on " + ndisshm::core::Runtime::describe(b->adapter) +
                                  ")");
        return NDIS_STATUS_INVALID_PARAMETER;
    };
    if (rt->verifier().enabled() && ndisshm::core::current_irql() != PASSIVE_LEVEL) {
        rt->verifier().report(NDISSHM_VIOLATION_IRQL, kCall, b->adapter, NdisHandle, {},
                              "called at IRQL " + std::to_string(ndisshm::core::current_irql()) +
                                  " by binding '" + b->name + "' on " +
                                  ndisshm::core::Runtime::describe(b->adapter) + "; it must be called at PASSIVE_LEVEL");
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
    if (h.Revision != NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1)
        return refuse("Header.Revision is " + std::to_string(h.Revision) + ", expected 1");
    if (h.Size < NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1)
        return refuse("Header.Size is " + std::to_string(h.Size) + ", expected at least " +
                      std::to_string(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1));
    const auto* c = reinterpret_cast<const NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS*>(OptionalHandlers);
    if (c->AllocateSharedMemoryHandler == nullptr) return refuse("AllocateSharedMemoryHandler is NULL");
    if (c->FreeSharedMemoryHandler == nullptr) return refuse("FreeSharedMemoryHandler is NULL");
    ndisshm_provider_ops ops{};
    ops.struct_size = sizeof(ops);
    ops.context = c->ProviderContext;
    ops.allocate = c->AllocateSharedMemoryHandler;
    ops.free = c->FreeSharedMemoryHandler;
    return rt->register_provider(b, kCall, std::make_unique<ndisshm::core::OpsProvider>(ops, b->name));
}

}  // extern "C"
