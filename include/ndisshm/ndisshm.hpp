/// @file
/// ndisshm.hpp: the C++ API. RAII owners over <ndisshm/host.h> and the NDIS
/// calls of <ndis/ndis_shm.h>, header-only so it binds to the same exported C
/// ABI as C callers do.
///
/// @code
///   ndisshm::Runtime rt;                              // verifier on by default
///   ndisshm::Adapter nic(rt, "nic0");                 // a miniport adapter
///   ndisshm::ReceiveQueue q1(nic, 1);                 // VMQ queue 1
///   ndisshm::ProviderBinding vswitch(nic, "vswitch"); // a filter bound to it
///   vswitch.register_provider(my_provider);           // NdisSetOptionalHandlers
///   ndisshm::Allocation a(nic, {.length = 65536, .queue = 1});
///   a.data(); a.elements();                           // freed when `a` goes
/// @endcode
///
/// Objects must be destroyed children first (allocations, then queues and
/// bindings, then adapters, then the runtime); a parent destroyed early reports
/// its children's blocks as verifier violations and frees them itself.
/// Failures throw ndisshm::Error, which carries the NDIS_STATUS.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

namespace ndisshm {

class Error : public std::runtime_error {
public:
    Error(const std::string& what, NDIS_STATUS status)
        : std::runtime_error(what + ": " + ndisshm_status_name(status)), status_(status) {}
    NDIS_STATUS status() const { return status_; }

private:
    NDIS_STATUS status_;
};

inline void check(NDIS_STATUS s, const char* what) {
    if (s != NDIS_STATUS_SUCCESS) throw Error(what, s);
}

struct RuntimeOptions {
    bool verifier = true;
    bool report_to_stderr = true;
    uint32_t max_block_bytes = 0;       ///< 0: 1 GiB
    uint64_t arena_capacity_bytes = 0;  ///< 0: 16 GiB of address space
    uint64_t iova_base = 0;             ///< 0: IOVA = VA
    uint64_t max_blocks = 0;            ///< 0: 4M records
};

using ViolationHandler = std::function<void(const ndisshm_violation&)>;

class Runtime {
public:
    explicit Runtime(const RuntimeOptions& o = {}) {
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.verifier = o.verifier && c.verifier ? 1 : 0;  // NDISSHM_VERIFIER=0 wins, as for C callers
        c.report_to_stderr = o.report_to_stderr && c.report_to_stderr ? 1 : 0;
        c.max_block_bytes = o.max_block_bytes;
        c.arena_capacity_bytes = o.arena_capacity_bytes;
        c.iova_base = o.iova_base;
        c.max_blocks = o.max_blocks;
        check(ndisshm_runtime_create(&c, &rt_, nullptr, 0), "ndisshm_runtime_create");
    }
    ~Runtime() { ndisshm_runtime_destroy(rt_); }
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    ndisshm_runtime* get() const { return rt_; }

    /// Called on the offending thread for each violation; replaces any before.
    void on_violation(ViolationHandler handler) {
        handler_ = std::make_unique<ViolationHandler>(std::move(handler));
        ndisshm_runtime_set_violation_callback(rt_, &Runtime::trampoline, handler_.get());
    }
    uint64_t violations(ndisshm_violation_kind kind) const { return ndisshm_runtime_violation_count(rt_, kind); }
    uint64_t violations() const {
        uint64_t n = 0;
        for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k) n += violations(static_cast<ndisshm_violation_kind>(k));
        return n;
    }

private:
    static void trampoline(void* ctx, const ndisshm_violation* v) { (*static_cast<ViolationHandler*>(ctx))(*v); }
    ndisshm_runtime* rt_ = nullptr;
    std::unique_ptr<ViolationHandler> handler_;
};

class Adapter {
public:
    Adapter(Runtime& rt, const std::string& name) {
        check(ndisshm_adapter_create(rt.get(), name.c_str(), &h_), "ndisshm_adapter_create");
    }
    ~Adapter() { ndisshm_adapter_destroy(h_); }
    Adapter(const Adapter&) = delete;
    Adapter& operator=(const Adapter&) = delete;

    /// The miniport's NdisHandle.
    NDIS_HANDLE handle() const { return h_; }
    /// Registers `provider` with the adapter's own handle (NdisSetOptionalHandlers
    /// with the miniport's handle): it serves queue 0 and every queue no
    /// providing binding owns. `provider` must outlive the adapter.
    void register_provider(class Provider& provider);
    ndisshm_adapter_stats stats() const {
        ndisshm_adapter_stats s{};
        check(ndisshm_adapter_get_stats(h_, &s), "ndisshm_adapter_get_stats");
        return s;
    }

private:
    NDIS_HANDLE h_ = nullptr;
};

class ReceiveQueue {
public:
    /// A VMQ queue of `adapter`, allocated by `owner` (a ProviderBinding's
    /// handle: the filter that sends OID_RECEIVE_FILTER_ALLOCATE_QUEUE, whose
    /// provider then serves the queue), or by the miniport itself (nullptr:
    /// the adapter's provider or NDIS's own memory serves it).
    ReceiveQueue(Adapter& adapter, NDIS_RECEIVE_QUEUE_ID id, NDIS_HANDLE owner = nullptr)
        : adapter_(adapter.handle()), id_(id) {
        check(ndisshm_queue_create(owner != nullptr ? owner : adapter_, id), "ndisshm_queue_create");
    }
    ~ReceiveQueue() { ndisshm_queue_free(adapter_, id_); }
    ReceiveQueue(const ReceiveQueue&) = delete;
    ReceiveQueue& operator=(const ReceiveQueue&) = delete;

    NDIS_RECEIVE_QUEUE_ID id() const { return id_; }
    ndisshm_usage_stats stats() const {
        ndisshm_usage_stats s{};
        check(ndisshm_queue_get_stats(adapter_, id_, &s), "ndisshm_queue_get_stats");
        return s;
    }

private:
    NDIS_HANDLE adapter_;
    NDIS_RECEIVE_QUEUE_ID id_;
};

/// A source of shared memory. Implement it and register it on a binding; the
/// runtime calls it as NDIS calls a provider (synchronously, PASSIVE_LEVEL).
class Provider {
public:
    virtual ~Provider() = default;
    /// Fill params.VirtualAddress and params.SGListBuffer (at most
    /// NDISSHM_SG_LIST_CAPACITY(params.SGListBufferLength) elements) and set
    /// `context` (non-null) on NDIS_STATUS_SUCCESS.
    virtual NDIS_STATUS allocate(NDIS_SHARED_MEMORY_PARAMETERS& params, NDIS_HANDLE& context) = 0;
    /// Exactly once per successful allocate, with its context.
    virtual void free(NDIS_HANDLE context) = 0;
    /// The SharedMemoryHandle NDIS gave the block `context` names, before
    /// NdisAllocateSharedMemory returns.
    virtual void committed(NDIS_HANDLE /*context*/, NDIS_HANDLE /*shared_memory_handle*/) {}
    virtual void attach_queue(NDIS_RECEIVE_QUEUE_ID) {}
    virtual void detach_queue(NDIS_RECEIVE_QUEUE_ID) {}
    virtual std::string describe() const = 0;

    ndisshm_provider_ops ops() {
        ndisshm_provider_ops o{};
        o.struct_size = sizeof(o);
        o.context = this;
        o.allocate = [](NDIS_HANDLE self, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE ctx) -> NDIS_STATUS {
            return static_cast<Provider*>(self)->allocate(*p, *ctx);
        };
        o.free = [](NDIS_HANDLE self, NDIS_HANDLE ctx) { static_cast<Provider*>(self)->free(ctx); };
        o.attach_queue = [](NDIS_HANDLE self, NDIS_RECEIVE_QUEUE_ID q) { static_cast<Provider*>(self)->attach_queue(q); };
        o.detach_queue = [](NDIS_HANDLE self, NDIS_RECEIVE_QUEUE_ID q) { static_cast<Provider*>(self)->detach_queue(q); };
        o.committed = [](NDIS_HANDLE self, NDIS_HANDLE ctx, NDIS_HANDLE handle) {
            static_cast<Provider*>(self)->committed(ctx, handle);
        };
        o.describe = [](NDIS_HANDLE self, char* buf, size_t n) {
            std::string d = static_cast<const Provider*>(self)->describe();
            if (n == 0) return;
            size_t k = d.size() < n - 1 ? d.size() : n - 1;
            d.copy(buf, k);
            buf[k] = '\0';
        };
        return o;
    }
};

class ProviderBinding {
public:
    ProviderBinding(Adapter& adapter, const std::string& name) {
        check(ndisshm_binding_create(adapter.handle(), name.c_str(), &h_), "ndisshm_binding_create");
    }
    ~ProviderBinding() { ndisshm_binding_destroy(h_); }
    ProviderBinding(const ProviderBinding&) = delete;
    ProviderBinding& operator=(const ProviderBinding&) = delete;

    /// The filter's NdisHandle, for NdisSetOptionalHandlers.
    NDIS_HANDLE handle() const { return h_; }
    /// `provider` must outlive this binding.
    void register_provider(Provider& provider) {
        ndisshm_provider_ops o = provider.ops();
        check(ndisshm_binding_register_provider(h_, &o), "ndisshm_binding_register_provider");
    }

private:
    NDIS_HANDLE h_ = nullptr;
};

struct AllocationRequest {
    ULONG length = 0;
    NDIS_SHARED_MEMORY_USAGE usage = NdisSharedMemoryUsageReceive;
    NDIS_RECEIVE_QUEUE_ID queue = NDIS_DEFAULT_RECEIVE_QUEUE_ID;
    bool contiguous = false;
    ULONG preferred_node = MM_ANY_NODE_OK;
    ULONG max_sg_elements = 0;  ///< 0: BYTES_TO_PAGES(length), as drivers size it
};

/// Where a call was made, captured by default arguments. __builtin_FILE and
/// __builtin_LINE work in g++ and in clang 14 (whose libstdc++ pairing lacks
/// std::source_location).
struct CallSite {
    const char* file;
    int line;
    static constexpr CallSite here(const char* f = __builtin_FILE(), int l = __builtin_LINE()) { return {f, l}; }
};

struct SgElement {
    uint64_t address;
    ULONG length;
};

/// One block of shared memory, freed (NdisFreeSharedMemory) on destruction.
class Allocation {
public:
    Allocation() = default;
    /// Leak and double-free reports name `where` as the allocation site.
    Allocation(Adapter& adapter, const AllocationRequest& r, CallSite where = CallSite::here()) {
        check(try_allocate(adapter, r, where), "NdisAllocateSharedMemory");
    }
    ~Allocation() { reset(); }
    Allocation(Allocation&& o) noexcept { *this = std::move(o); }
    Allocation& operator=(Allocation&& o) noexcept {
        if (this != &o) {
            reset();
            adapter_ = std::exchange(o.adapter_, nullptr);
            handle_ = std::exchange(o.handle_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            length_ = std::exchange(o.length_, 0);
            elements_ = std::move(o.elements_);
        }
        return *this;
    }

    /// The non-throwing form: the NDIS status, and *this owns the block on success.
    NDIS_STATUS try_allocate(Adapter& adapter, const AllocationRequest& r, CallSite where = CallSite::here()) {
        reset();
        NDIS_SHARED_MEMORY_PARAMETERS p;
        NdisZeroMemory(&p, sizeof(p));
        p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Flags = r.contiguous ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
        p.QueueId = r.queue;
        p.PreferredNode = r.preferred_node;
        p.Usage = r.usage;
        p.Length = r.length;
        ULONG n = r.max_sg_elements != 0 ? r.max_sg_elements : BYTES_TO_PAGES(r.length);
        if (n == 0) n = 1;
        std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(n));
        auto* list = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
        list->NumberOfElements = n;
        p.SGListBufferLength = static_cast<ULONG>(sg.size());
        p.SGListBuffer = list;
        NDIS_HANDLE h = nullptr;
        NDIS_STATUS s = ndisshm_allocate_shared_memory_at(adapter.handle(), &p, &h, where.file, where.line);
        if (s != NDIS_STATUS_SUCCESS) return s;
        adapter_ = adapter.handle();
        handle_ = h;
        data_ = p.VirtualAddress;
        length_ = r.length;
        for (ULONG i = 0; i < list->NumberOfElements; ++i)
            elements_.push_back({static_cast<uint64_t>(list->Elements[i].Address.QuadPart), list->Elements[i].Length});
        return s;
    }

    void reset() {
        if (handle_ != nullptr) NdisFreeSharedMemory(adapter_, handle_);
        adapter_ = handle_ = data_ = nullptr;
        length_ = 0;
        elements_.clear();
    }

    explicit operator bool() const { return handle_ != nullptr; }
    NDIS_HANDLE handle() const { return handle_; }  ///< also the SharedMemoryHandle
    void* data() const { return data_; }
    ULONG size() const { return length_; }
    const std::vector<SgElement>& elements() const { return elements_; }

private:
    NDIS_HANDLE adapter_ = nullptr;
    NDIS_HANDLE handle_ = nullptr;
    void* data_ = nullptr;
    ULONG length_ = 0;
    std::vector<SgElement> elements_;
};

}  // namespace ndisshm
