// ndisshm's host API (include/ndisshm/host.h), mapped onto the core.
#define NDISSHM_BUILDING_LIBRARY 1
#include <ndisshm/host.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "api/error_buffer.hpp"
#include "core/irql.hpp"
#include "core/ops_provider.hpp"
#include "core/runtime.hpp"
#include "os/os.hpp"
#include "providers/default_provider.hpp"

#ifndef NDISSHM_VERSION_STRING
#define NDISSHM_VERSION_STRING "0.0.0"
#endif

struct ndisshm_runtime {
    std::unique_ptr<ndisshm::core::Runtime> core;
    ndisshm::providers::DefaultProvider* default_provider = nullptr;  // owned by `core`
};

using ndisshm::core::Adapter;
using ndisshm::core::Binding;
using ndisshm::core::Verifier;

namespace {

constexpr unsigned providers_max_nodes() { return ndisshm::providers::MemoryStats::kMaxNodes; }

bool env_is(const char* name, const char* value) {
    const char* v = std::getenv(name);
    return v != nullptr && std::strcmp(v, value) == 0;
}

Adapter* adapter_or_report(NDIS_HANDLE h, const char* call) {
    Adapter* a = ndisshm::core::find_adapter(h);
    if (a == nullptr) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%p", h);
        Verifier::global().report(NDISSHM_VIOLATION_BAD_HANDLE, call, h, nullptr, {},
                                  std::string("handle ") + buf + " is not a live adapter");
    }
    return a;
}

// NDIS's own memory, as the config asks for it (its defaults filled in).
ndisshm::Result<std::unique_ptr<ndisshm::providers::DefaultProvider>> make_default_provider(
    const ndisshm_runtime_config& config) {
    using ndisshm::Error;
    namespace providers = ndisshm::providers;
    if (config.page_mode > NDISSHM_PAGES_BASE)
        return Error{"ndisshm_runtime_create", EINVAL, "page_mode " + std::to_string(config.page_mode) + " is unknown"};
    if (config.address_mode > NDISSHM_ADDRESS_ARENA_OFFSET)
        return Error{"ndisshm_runtime_create", EINVAL,
                     "address_mode " + std::to_string(config.address_mode) + " is unknown"};
    providers::DefaultProviderConfig pc;
    pc.arena.name = "ndisshm-default";
    pc.arena.capacity_bytes = config.arena_capacity_bytes;
    pc.iova_base = config.iova_base;
    pc.page_mode = static_cast<providers::PageMode>(config.page_mode);
    pc.address_mode = static_cast<providers::AddressMode>(config.address_mode);
    pc.zero_by_release_bytes = config.zero_by_release_bytes;
    if (config.zero_ahead > NDISSHM_ZERO_AHEAD_OFF)
        return Error{"ndisshm_runtime_create", EINVAL,
                     "zero_ahead " + std::to_string(config.zero_ahead) + " is unknown"};
    // Auto: a zeroer needs a CPU that would otherwise idle; with one or two, the threads it serves
    // would mostly have it (SCHED_IDLE keeps it out of their way, but then it rarely runs at all).
    pc.zero_ahead = config.zero_ahead == NDISSHM_ZERO_AHEAD_ON ||
                    (config.zero_ahead == NDISSHM_ZERO_AHEAD_AUTO && ndisshm::os::usable_cpu_count() >= 3);
    return providers::DefaultProvider::create(pc);
}

// The adapter a queue call names, and the binding that owns the queue when
// the handle is a binding's (the protocol or filter that sends
// OID_RECEIVE_FILTER_ALLOCATE_QUEUE on Windows); nullptr after a report.
Adapter* queue_owner_or_report(NDIS_HANDLE h, const char* call, Binding** owner) {
    *owner = nullptr;
    if (Binding* b = ndisshm::core::find_binding(h)) {
        *owner = b;
        return b->adapter;
    }
    return adapter_or_report(h, call);
}

}  // namespace

extern "C" {

const char* ndisshm_version(void) { return NDISSHM_VERSION_STRING; }
int ndisshm_abi_version(void) { return NDISSHM_ABI_VERSION; }

const char* ndisshm_usage_name(NDIS_SHARED_MEMORY_USAGE u) {
    static const char* const names[] = {"Undefined", "Xmit", "XmitHeader", "XmitData", "Receive",
                                        "ReceiveLookahead", "ReceivePostLookahead", "ReceiveHeader", "ReceiveData",
                                        "Other"};
    auto i = static_cast<uint32_t>(u);
    return i < NdisSharedMemoryUsageMax ? names[i] : "Invalid";
}

void ndisshm_runtime_config_init(ndisshm_runtime_config* c) {
    if (c == nullptr) return;
    *c = {};
    c->struct_size = sizeof(*c);
    c->verifier = env_is("NDISSHM_VERIFIER", "0") ? 0 : 1;
    c->report_to_stderr = env_is("NDISSHM_QUIET", "1") ? 0 : 1;
    if (env_is("NDISSHM_PAGES", "huge")) c->page_mode = NDISSHM_PAGES_HUGE;
    if (env_is("NDISSHM_PAGES", "base")) c->page_mode = NDISSHM_PAGES_BASE;
    if (env_is("NDISSHM_ZERO_AHEAD", "1")) c->zero_ahead = NDISSHM_ZERO_AHEAD_ON;
    if (env_is("NDISSHM_ZERO_AHEAD", "0")) c->zero_ahead = NDISSHM_ZERO_AHEAD_OFF;
}

NDIS_STATUS ndisshm_runtime_create(const ndisshm_runtime_config* config, ndisshm_runtime** runtime, char* error,
                                   size_t error_bytes) {
    using ndisshm::api::fail;
    if (runtime == nullptr) return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "runtime is NULL");
    *runtime = nullptr;
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    if (config != nullptr) {
        // The size of this header's struct, or of the one before zero_ahead was added (whose callers get
        // that field's default from config_init above).
        constexpr size_t kBeforeZeroAhead = offsetof(ndisshm_runtime_config, zero_ahead);
        if (config->struct_size != sizeof(ndisshm_runtime_config) && config->struct_size != kBeforeZeroAhead) {
            const std::string why = "config.struct_size is " + std::to_string(config->struct_size) + ", expected " +
                                    std::to_string(sizeof(ndisshm_runtime_config)) + " (or " +
                                    std::to_string(kBeforeZeroAhead) +
                                    ", before zero_ahead; ndisshm_runtime_config_init sets it)";
            Verifier::global().log("ndisshm_runtime_create", why);
            return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, why);
        }
        std::memcpy(&c, config, config->struct_size);
        c.struct_size = sizeof(c);
    }
    ndisshm::providers::DefaultProvider* default_provider = nullptr;
    auto rt = ndisshm::core::Runtime::create(c, [&](const ndisshm_runtime_config& filled)
                                                    -> ndisshm::Result<std::unique_ptr<ndisshm::providers::Provider>> {
        auto made = make_default_provider(filled);
        if (!made) return made.error();
        default_provider = made->get();
        return std::unique_ptr<ndisshm::providers::Provider>(std::move(*made));
    });
    if (!rt) {
        Verifier::global().log("ndisshm_runtime_create", rt.error().message());
        return fail(error, error_bytes, rt.error().err == EINVAL ? NDIS_STATUS_INVALID_PARAMETER : NDIS_STATUS_RESOURCES,
                    rt.error().message());
    }
    *runtime = new ndisshm_runtime{std::move(*rt), default_provider};
    ndisshm::api::clear_error(error, error_bytes);
    return NDIS_STATUS_SUCCESS;
}

void ndisshm_runtime_destroy(ndisshm_runtime* runtime) { delete runtime; }

void ndisshm_runtime_set_violation_callback(ndisshm_runtime* runtime, ndisshm_violation_callback cb, void* ctx) {
    if (runtime != nullptr) runtime->core->verifier().set_callback(cb, ctx);
}

void ndisshm_set_global_violation_callback(ndisshm_violation_callback cb, void* ctx) {
    Verifier::global().set_callback(cb, ctx);
}

uint64_t ndisshm_runtime_violation_count(const ndisshm_runtime* runtime, ndisshm_violation_kind kind) {
    return runtime != nullptr ? runtime->core->verifier().count(kind) : 0;
}

uint64_t ndisshm_global_violation_count(void) { return Verifier::global().total(); }

NDIS_STATUS ndisshm_adapter_create(ndisshm_runtime* runtime, const char* name, NDIS_HANDLE* adapter) {
    if (runtime == nullptr || adapter == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    Adapter* a = nullptr;
    NDIS_STATUS s = runtime->core->create_adapter(name, &a);
    *adapter = a;
    return s;
}

void ndisshm_adapter_destroy(NDIS_HANDLE adapter) {
    if (Adapter* a = adapter_or_report(adapter, "ndisshm_adapter_destroy")) a->runtime->destroy_adapter(a);
}

NDIS_STATUS ndisshm_queue_create(NDIS_HANDLE handle, NDIS_RECEIVE_QUEUE_ID queue_id) {
    Binding* owner = nullptr;
    Adapter* a = queue_owner_or_report(handle, "ndisshm_queue_create", &owner);
    return a != nullptr ? a->runtime->create_queue(a, queue_id, nullptr, true, owner) : NDIS_STATUS_INVALID_PARAMETER;
}

void ndisshm_queue_params_init(ndisshm_queue_params* params) {
    if (params == nullptr) return;
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
}

void ndisshm_provider_ops_init(ndisshm_provider_ops* ops) {
    if (ops == nullptr) return;
    std::memset(ops, 0, sizeof(*ops));
    ops->struct_size = sizeof(*ops);
}

NDIS_STATUS ndisshm_queue_allocate(NDIS_HANDLE handle, NDIS_RECEIVE_QUEUE_ID queue_id, const ndisshm_queue_params* params) {
    Binding* owner = nullptr;
    Adapter* a = queue_owner_or_report(handle, "ndisshm_queue_allocate", &owner);
    if (a == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    if (params != nullptr && params->struct_size != sizeof(ndisshm_queue_params)) {
        a->runtime->verifier().report(NDISSHM_VIOLATION_BAD_PARAMETERS, "ndisshm_queue_allocate", a, nullptr, {},
                                      "params.struct_size is " + std::to_string(params->struct_size) + ", expected " +
                                          std::to_string(sizeof(ndisshm_queue_params)) +
                                          " (ndisshm_queue_params_init sets it) on " +
                                          ndisshm::core::Runtime::describe(a));
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    return a->runtime->create_queue(a, queue_id, params, false, owner);
}

NDIS_STATUS ndisshm_queue_allocation_complete(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_queue_allocation_complete");
    return a != nullptr ? a->runtime->complete_queue(a, queue_id) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_queue_get_params(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id, ndisshm_queue_params* params,
                                     int* complete) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_queue_get_params");
    return a != nullptr ? a->runtime->queue_params(a, queue_id, params, complete) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_queue_free(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_queue_free");
    return a != nullptr ? a->runtime->free_queue(a, queue_id) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_binding_create(NDIS_HANDLE adapter, const char* name, NDIS_HANDLE* binding) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_binding_create");
    if (a == nullptr || binding == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    Binding* b = nullptr;
    NDIS_STATUS s = a->runtime->create_binding(a, name, &b);
    *binding = b;
    return s;
}

void ndisshm_binding_destroy(NDIS_HANDLE binding) {
    Binding* b = ndisshm::core::find_binding(binding);
    if (b == nullptr) {
        Verifier::global().report(NDISSHM_VIOLATION_BAD_HANDLE, "ndisshm_binding_destroy", nullptr, binding, {},
                                  "handle is not a live provider binding");
        return;
    }
    b->adapter->runtime->destroy_binding(b);
}

NDIS_STATUS ndisshm_binding_register_provider(NDIS_HANDLE binding, const ndisshm_provider_ops* ops) {
    constexpr const char* kCall = "ndisshm_binding_register_provider";
    // As NdisSetOptionalHandlers: a binding's handle, or the adapter's own.
    Binding* b = ndisshm::core::find_binding(binding);
    if (b == nullptr) {
        if (Adapter* a = ndisshm::core::find_adapter(binding)) b = a->runtime->adapter_binding(a);
    }
    if (b == nullptr) {
        Verifier::global().report(NDISSHM_VIOLATION_BAD_HANDLE, kCall, nullptr, binding, {},
                                  "handle is neither a live provider binding nor a miniport adapter");
        return NDIS_STATUS_NOT_SUPPORTED;
    }
    auto& v = b->adapter->runtime->verifier();
    // The same rule as NdisSetOptionalHandlers, whose table this is a superset of.
    if (v.enabled() && ndisshm::core::current_irql() != PASSIVE_LEVEL) {
        v.report(NDISSHM_VIOLATION_IRQL, kCall, b->adapter, binding, {},
                 "called at IRQL " + std::to_string(ndisshm::core::current_irql()) + " by binding '" + b->name +
                     "'; it must be called at PASSIVE_LEVEL");
        return NDIS_STATUS_FAILURE;
    }
    if (ops == nullptr || ops->struct_size != sizeof(ndisshm_provider_ops) || ops->allocate == nullptr ||
        ops->free == nullptr) {
        v.report(NDISSHM_VIOLATION_BAD_REGISTRATION, kCall, b->adapter, binding, {},
                 "ops must be non-NULL, with struct_size = sizeof(ndisshm_provider_ops) and both allocate and free "
                 "set (binding '" + b->name + "')");
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    return b->adapter->runtime->register_provider(b, kCall, std::make_unique<ndisshm::core::OpsProvider>(*ops, b->name));
}

NDIS_STATUS ndisshm_adapter_set_limit(NDIS_HANDLE adapter, uint64_t max_bytes) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_adapter_set_limit");
    return a != nullptr ? a->runtime->set_limit(a, nullptr, max_bytes) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_queue_set_limit(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id, uint64_t max_bytes) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_queue_set_limit");
    return a != nullptr ? a->runtime->set_limit(a, &queue_id, max_bytes) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_adapter_get_stats(NDIS_HANDLE adapter, ndisshm_adapter_stats* stats) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_adapter_get_stats");
    return a != nullptr ? a->runtime->adapter_stats(a, stats) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_queue_get_stats(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue_id, ndisshm_usage_stats* stats) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_queue_get_stats");
    return a != nullptr ? a->runtime->queue_stats(a, queue_id, stats) : NDIS_STATUS_INVALID_PARAMETER;
}

NDIS_STATUS ndisshm_runtime_get_memory_stats(const ndisshm_runtime* runtime, ndisshm_memory_stats* out) {
    if (runtime == nullptr || out == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    const auto m = runtime->default_provider->memory_stats();
    *out = {};
    out->page_mode = static_cast<uint32_t>(m.page_mode);
    out->page_bytes = static_cast<uint32_t>(m.page_bytes);
    out->thp_advised = m.thp_advised ? 1 : 0;
    out->address_mode = static_cast<uint32_t>(m.address_mode);
    out->arenas = m.arenas;
    out->numa_nodes = m.numa_nodes;
    out->reserved_bytes = m.reserved_bytes;
    out->file_bytes = m.file_bytes;
    out->bytes_in_use = m.bytes_in_use;
    out->blocks_in_use = m.blocks_in_use;
    out->high_water_bytes = m.high_water_bytes;
    out->largest_free_bytes = m.largest_free_bytes;
    out->zeroed_by_memset_bytes = m.zeroed_by_memset_bytes;
    out->zeroed_by_release_bytes = m.zeroed_by_release_bytes;
    out->cache_hits = m.cache_hits;
    out->cache_misses = m.cache_misses;
    out->owner_reuses = m.owner_reuses;
    out->zeroed_ahead_bytes = m.zeroed_ahead_bytes;
    out->served_pre_zeroed = m.served_pre_zeroed;
    out->zero_ahead = m.zero_ahead ? 1 : 0;
    static_assert(providers_max_nodes() == NDISSHM_MAX_NODES, "node arrays agree");
    for (unsigned i = 0; i < NDISSHM_MAX_NODES; ++i) out->node_bytes_in_use[i] = m.node_bytes_in_use[i];
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS ndisshm_block_get_info(NDIS_HANDLE adapter, NDIS_HANDLE handle, ndisshm_block_info* info) {
    Adapter* a = adapter_or_report(adapter, "ndisshm_block_get_info");
    return a != nullptr ? a->runtime->block_info(a, handle, info) : NDIS_STATUS_INVALID_PARAMETER;
}

}  // extern "C"
