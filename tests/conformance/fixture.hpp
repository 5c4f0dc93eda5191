// Shared helpers for the conformance suite: a runtime per test with its violations collected, a test
// provider that registers through NdisSetOptionalHandlers, records every call and can be told to
// misbehave, and SG buffers with canary bytes behind them.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// Comparison and printing of the C stats structs (global namespace, so that ADL finds them).
inline bool operator==(const ndisshm_usage_stats& a, const ndisshm_usage_stats& b) {
    return a.blocks == b.blocks && a.bytes == b.bytes && a.peak_blocks == b.peak_blocks &&
           a.peak_bytes == b.peak_bytes && a.allocations == b.allocations && a.frees == b.frees &&
           a.failures == b.failures;
}
inline void PrintTo(const ndisshm_usage_stats& s, std::ostream* os) {
    *os << "{blocks " << s.blocks << ", bytes " << s.bytes << ", peak_blocks " << s.peak_blocks
        << ", peak_bytes " << s.peak_bytes << ", allocations " << s.allocations << ", frees " << s.frees
        << ", failures " << s.failures << "}";
}

namespace ndisshm::test {

// The process-wide verifier prints to stderr unless NDISSHM_QUIET=1 when it is first used.
inline const bool kQuietProcess = [] { return ::setenv("NDISSHM_QUIET", "1", 0) == 0; }();

inline std::string hex(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%p", p);
    return buf;
}

struct Violation {
    ndisshm_violation_kind kind{};
    std::string kind_name, call, message;
    NDIS_HANDLE adapter = nullptr;
    NDIS_HANDLE handle = nullptr;
    std::string alloc_file;  // empty when the report had none
    int alloc_line = 0;
    std::thread::id thread;
};

class ViolationLog {
public:
    static void callback(void* context, const ndisshm_violation* v) {
        auto* log = static_cast<ViolationLog*>(context);
        const auto str = [](const char* s) { return std::string(s != nullptr ? s : ""); };
        Violation c{v->kind,   str(v->kind_name),  str(v->call),  str(v->message),           v->adapter,
                    v->handle, str(v->alloc_file), v->alloc_line, std::this_thread::get_id()};
        std::lock_guard lock(log->mu_);
        log->all_.push_back(std::move(c));
    }
    std::vector<Violation> all() const {
        std::lock_guard lock(mu_);
        return all_;
    }
    std::vector<Violation> of(ndisshm_violation_kind kind) const {
        std::vector<Violation> out;
        for (auto& v : all())
            if (v.kind == kind) out.push_back(v);
        return out;
    }
    size_t size() const { return all().size(); }
    void clear() {
        std::lock_guard lock(mu_);
        all_.clear();
    }

private:
    mutable std::mutex mu_;
    std::vector<Violation> all_;
};

// A caller-owned SG list buffer of exactly `bytes` bytes, followed by canary bytes that nobody may touch.
class SgBuffer {
public:
    static constexpr size_t kCanaryBytes = 64;
    static constexpr unsigned char kCanary = 0xA5;

    static SgBuffer for_elements(ULONG elements) { return SgBuffer(NDISSHM_SG_LIST_BYTES(elements)); }
    explicit SgBuffer(ULONG bytes) : bytes_(bytes), storage_((bytes + kCanaryBytes + 7) / 8 + 1) {
        std::memset(raw(), 0, bytes_);
        std::memset(raw() + bytes_, kCanary, kCanaryBytes);
    }
    PSCATTER_GATHER_LIST list() { return reinterpret_cast<PSCATTER_GATHER_LIST>(storage_.data()); }
    unsigned char* raw() { return reinterpret_cast<unsigned char*>(storage_.data()); }
    ULONG bytes() const { return bytes_; }
    bool canary_intact() {
        for (size_t i = 0; i < kCanaryBytes; ++i)
            if (raw()[bytes_ + i] != kCanary) return false;
        return true;
    }

private:
    ULONG bytes_;
    std::vector<uint64_t> storage_;
};

// Zeroed revision-2 parameters, as drivers fill them.
inline NDIS_SHARED_MEMORY_PARAMETERS make_params(
    ULONG length, SgBuffer& sg, ULONG queue = 0,
    NDIS_SHARED_MEMORY_USAGE usage = NdisSharedMemoryUsageReceive, ULONG flags = 0) {
    NDIS_SHARED_MEMORY_PARAMETERS p;
    NdisZeroMemory(&p, sizeof(p));
    p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Header.Size = static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2);
    p.Flags = flags;
    p.QueueId = queue;
    p.PreferredNode = MM_ANY_NODE_OK;
    p.Usage = usage;
    p.Length = length;
    p.SGListBufferLength = sg.bytes();
    p.SGListBuffer = sg.list();
    return p;
}

// One NdisAllocateSharedMemory call and everything it returned.
struct Alloc {
    Alloc(ULONG length, ULONG sg_elements, ULONG queue, NDIS_SHARED_MEMORY_USAGE usage, ULONG flags)
        : sg(SgBuffer::for_elements(sg_elements)), params(make_params(length, sg, queue, usage, flags)) {}
    Alloc(const Alloc&) = delete;
    Alloc& operator=(const Alloc&) = delete;
    Alloc(Alloc&&) = default;  // the SG buffer's storage moves with it
    Alloc& operator=(Alloc&&) = default;

    bool ok() const { return status == NDIS_STATUS_SUCCESS; }
    SCATTER_GATHER_ELEMENT& element(ULONG i) { return sg.list()->Elements[i]; }
    unsigned char* bytes() { return static_cast<unsigned char*>(params.VirtualAddress); }

    SgBuffer sg;
    NDIS_SHARED_MEMORY_PARAMETERS params;
    NDIS_STATUS status = NDIS_STATUS_PENDING;  // a value no failed call may leave
    NDIS_HANDLE handle = nullptr;
};

// A shared memory provider, as a filter registers one: handlers through NdisSetOptionalHandlers (or the
// host ops table). Honest by default; the knobs below make it misbehave. Thread-safe.
class TestProvider {
public:
    struct AllocCall {
        std::thread::id thread;
        KIRQL irql = 0;
        NDIS_HANDLE provider_context = nullptr;
        PNDIS_SHARED_MEMORY_PARAMETERS params_ptr = nullptr;
        NDIS_SHARED_MEMORY_PARAMETERS params{};  // the first Header.Size bytes, as received
        NDIS_HANDLE context = nullptr;           // written to *pSharedMemoryProviderContext
        NDIS_STATUS status = 0;
    };
    struct FreeCall {
        std::thread::id thread;
        KIRQL irql = 0;
        NDIS_HANDLE provider_context = nullptr;
        NDIS_HANDLE context = nullptr;
    };

    // Knobs. Set them before the calls they should affect.
    NDIS_STATUS fail_with = NDIS_STATUS_SUCCESS;  // return this, allocating nothing
    bool omit_context = false;                    // say success but write no context
    ULONG elements = 1;                           // SG elements per block (ignores CONTIGUOUS when > 1)
    ULONG short_bytes = 0;                        // describe this many bytes fewer than Length
    bool null_virtual_address = false;
    bool zero_elements = false;       // say success with NumberOfElements = 0
    bool overclaim_elements = false;  // NumberOfElements = capacity + 1
    unsigned char fill = 0;           // initial content of each block
    ULONG rewrite_length = 0;         // overwrite the caller's Length and honour only that
    // The context of the n-th block (from 1), instead of a fresh one: garbage values, or one it gave
    // another block already (NDIS must treat contexts as opaque and hand each block's back once).
    std::function<uintptr_t(uintptr_t n)> context_for;
    // Called on entry to the free handler, outside the provider's lock (a provider that calls back into
    // NDIS from there).
    std::function<void(NDIS_HANDLE context)> on_free;

    TestProvider() = default;
    TestProvider(const TestProvider&) = delete;
    TestProvider& operator=(const TestProvider&) = delete;
    ~TestProvider() {
        for (auto& [id, mem] : live_) std::free(mem);
        for (void* mem : orphans_) std::free(mem);
    }

    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS characteristics() {
        NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS c;
        NdisZeroMemory(&c, sizeof(c));
        c.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
        c.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
        c.Header.Size = static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1);
        c.ProviderContext = this;
        c.AllocateSharedMemoryHandler = &TestProvider::Allocate;
        c.FreeSharedMemoryHandler = &TestProvider::Free;
        return c;
    }
    NDIS_STATUS register_on(NDIS_HANDLE binding) {
        auto c = characteristics();
        return NdisSetOptionalHandlers(binding, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(&c));
    }
    ndisshm_provider_ops ops() {
        ndisshm_provider_ops o{};
        o.struct_size = sizeof(o);
        o.context = this;
        o.allocate = &TestProvider::Allocate;
        o.free = &TestProvider::Free;
        o.attach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c)->note_queue(q, true); };
        o.detach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c)->note_queue(q, false); };
        return o;
    }

    // Each observer reads under the provider's lock.
    template <class F>
    auto locked(F f) const {
        std::lock_guard lock(mu_);
        return f();
    }
    std::vector<AllocCall> alloc_calls() const {
        return locked([&] { return allocs_; });
    }
    std::vector<FreeCall> free_calls() const {
        return locked([&] { return frees_; });
    }
    size_t live() const {
        return locked([&] { return live_.size(); });
    }
    // Frees of contexts it never handed out, or handed out and freed already.
    int bad_frees() const {
        return locked([&] { return bad_frees_; });
    }
    std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, bool>> queue_events() const {
        return locked([&] { return queue_events_; });
    }
    // Times the free handler got this context (0 for one it never handed out).
    int times_freed(NDIS_HANDLE context) const {
        return locked([&] {
            auto it = free_counts_.find(reinterpret_cast<uintptr_t>(context));
            return it == free_counts_.end() ? 0 : it->second;
        });
    }
    // The context of the n-th successful allocation.
    NDIS_HANDLE context_of(size_t n) const {
        return locked([&] { return n < contexts_.size() ? contexts_[n] : nullptr; });
    }

private:
    static TestProvider* self(NDIS_HANDLE c) { return static_cast<TestProvider*>(c); }

    static NDIS_STATUS Allocate(NDIS_HANDLE pc, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        return self(pc)->allocate(pc, p, out);
    }
    static VOID Free(NDIS_HANDLE pc, NDIS_HANDLE context) { self(pc)->free(pc, context); }

    NDIS_STATUS allocate(NDIS_HANDLE pc, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        AllocCall call;
        call.thread = std::this_thread::get_id();
        call.irql = KeGetCurrentIrql();
        call.provider_context = pc;
        call.params_ptr = p;
        std::memcpy(&call.params, p, std::min<size_t>(p->Header.Size, sizeof(call.params)));
        call.status = decide(p, out, &call.context);
        std::lock_guard lock(mu_);
        allocs_.push_back(call);
        return call.status;
    }

    NDIS_STATUS decide(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, NDIS_HANDLE* recorded) {
        if (fail_with != NDIS_STATUS_SUCCESS) return fail_with;
        if (rewrite_length != 0) p->Length = rewrite_length;
        if (p->SGListBuffer == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
        const ULONG capacity = NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength);
        if (elements > capacity && !overclaim_elements) {
            if (p->SGListBufferLength >= NDISSHM_SG_LIST_HEADER_BYTES)
                p->SGListBuffer->NumberOfElements = elements;
            return NDIS_STATUS_BUFFER_TOO_SHORT;
        }
        if (capacity == 0) return NDIS_STATUS_BUFFER_TOO_SHORT;
        const size_t rounded = (static_cast<size_t>(p->Length) + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        void* mem = std::aligned_alloc(PAGE_SIZE, rounded);
        if (mem == nullptr) return NDIS_STATUS_RESOURCES;
        std::memset(mem, fill, rounded);
        const ULONG n = std::min(elements, capacity);
        const ULONG piece = p->Length / n;
        for (ULONG i = 0; i < n; ++i) {
            SCATTER_GATHER_ELEMENT& e = p->SGListBuffer->Elements[i];
            e.Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(mem) + i * piece);
            e.Length = i + 1 < n ? piece : p->Length - i * piece;
            e.Reserved = 0;
        }
        p->SGListBuffer->Elements[n - 1].Length -=
            std::min(short_bytes, p->SGListBuffer->Elements[n - 1].Length);
        p->SGListBuffer->NumberOfElements = zero_elements ? 0 : overclaim_elements ? capacity + 1 : n;
        p->VirtualAddress = null_virtual_address ? nullptr : mem;
        std::lock_guard lock(mu_);
        if (omit_context) {
            orphans_.push_back(mem);
            *out = nullptr;
            return NDIS_STATUS_SUCCESS;
        }
        ++serial_;
        const uintptr_t id = context_for ? context_for(serial_) : 0x10000 + 0x10 * serial_;  // opaque to NDIS
        live_.emplace(id, mem);
        contexts_.push_back(reinterpret_cast<NDIS_HANDLE>(id));
        *out = *recorded = reinterpret_cast<NDIS_HANDLE>(id);
        return NDIS_STATUS_SUCCESS;
    }

    void free(NDIS_HANDLE pc, NDIS_HANDLE context) {
        if (on_free) on_free(context);
        FreeCall call{std::this_thread::get_id(), KeGetCurrentIrql(), pc, context};
        std::lock_guard lock(mu_);
        frees_.push_back(call);
        const auto id = reinterpret_cast<uintptr_t>(context);
        ++free_counts_[id];
        auto it = live_.find(id);
        if (it == live_.end()) {
            ++bad_frees_;
            return;
        }
        std::free(it->second);
        live_.erase(it);
    }

    void note_queue(NDIS_RECEIVE_QUEUE_ID q, bool attached) {
        std::lock_guard lock(mu_);
        queue_events_.emplace_back(q, attached);
    }

    mutable std::mutex mu_;
    uintptr_t serial_ = 0;
    std::multimap<uintptr_t, void*> live_;  // multi: a provider may give two blocks one context
    std::map<uintptr_t, int> free_counts_;
    std::vector<NDIS_HANDLE> contexts_;
    std::vector<void*> orphans_;
    std::vector<AllocCall> allocs_;
    std::vector<FreeCall> frees_;
    std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, bool>> queue_events_;
    int bad_frees_ = 0;
};

// A quiet runtime with adapter "eth0"; runtime and global violations are collected. Providers made with
// new_provider() outlive the runtime (it may still free through them when it is torn down).
class NdisTest : public ::testing::Test {
protected:
    void SetUp() override {
        ndisshm_runtime_config config;
        ndisshm_runtime_config_init(&config);
        config.report_to_stderr = 0;
        configure(config);
        ASSERT_EQ(ndisshm_runtime_create(&config, &rt_), NDIS_STATUS_SUCCESS);
        ndisshm_runtime_set_violation_callback(rt_, &ViolationLog::callback, &log_);
        ndisshm_set_global_violation_callback(&ViolationLog::callback, &global_log_);
        adapter_ = new_adapter("eth0");
    }
    void TearDown() override {
        destroy_runtime();
        ndisshm_set_global_violation_callback(nullptr, nullptr);
    }
    virtual void configure(ndisshm_runtime_config& /*config*/) {}

    void destroy_runtime() {
        if (rt_ != nullptr) ndisshm_runtime_destroy(rt_);
        rt_ = nullptr;
    }
    NDIS_HANDLE new_adapter(const char* name) {
        NDIS_HANDLE a = nullptr;
        EXPECT_EQ(ndisshm_adapter_create(rt_, name, &a), NDIS_STATUS_SUCCESS);
        return a;
    }
    NDIS_HANDLE new_binding(NDIS_HANDLE adapter, const char* name) {
        NDIS_HANDLE b = nullptr;
        EXPECT_EQ(ndisshm_binding_create(adapter, name, &b), NDIS_STATUS_SUCCESS);
        return b;
    }
    TestProvider& new_provider() {
        providers_.push_back(std::make_unique<TestProvider>());
        return *providers_.back();
    }
    // A binding named `name` on `adapter` whose provider is a new TestProvider, registered through
    // NdisSetOptionalHandlers. *binding_out receives the binding handle.
    TestProvider& provide(NDIS_HANDLE adapter, const char* name = "vswitch",
                          NDIS_HANDLE* binding_out = nullptr) {
        NDIS_HANDLE b = new_binding(adapter, name);
        TestProvider& p = new_provider();
        EXPECT_EQ(p.register_on(b), NDIS_STATUS_SUCCESS);
        if (binding_out != nullptr) *binding_out = b;
        return p;
    }
    Alloc allocate(NDIS_HANDLE adapter, ULONG length, ULONG queue = 0,
                   NDIS_SHARED_MEMORY_USAGE usage = NdisSharedMemoryUsageReceive, ULONG flags = 0,
                   ULONG sg_elements = 4) {
        Alloc a(length, sg_elements, queue, usage, flags);
        a.status = NdisAllocateSharedMemory(adapter, &a.params, &a.handle);
        return a;
    }
    static ndisshm_adapter_stats stats(NDIS_HANDLE adapter) {
        ndisshm_adapter_stats s{};
        EXPECT_EQ(ndisshm_adapter_get_stats(adapter, &s), NDIS_STATUS_SUCCESS);
        return s;
    }
    static ndisshm_usage_stats queue_stats(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID q) {
        ndisshm_usage_stats s{};
        EXPECT_EQ(ndisshm_queue_get_stats(adapter, q, &s), NDIS_STATUS_SUCCESS);
        return s;
    }
    // True when `handle` is a live block of `adapter`.
    static bool is_live(NDIS_HANDLE adapter, NDIS_HANDLE handle) {
        ndisshm_block_info info{};
        return ndisshm_block_get_info(adapter, handle, &info) == NDIS_STATUS_SUCCESS;
    }
    static std::string provider_of(NDIS_HANDLE adapter, NDIS_HANDLE handle) {
        ndisshm_block_info info{};
        if (ndisshm_block_get_info(adapter, handle, &info) != NDIS_STATUS_SUCCESS) return "<not live>";
        return info.provider != nullptr ? info.provider : "<null>";
    }

    ndisshm_runtime* rt_ = nullptr;
    NDIS_HANDLE adapter_ = nullptr;
    ViolationLog log_;
    ViolationLog global_log_;
    std::deque<std::unique_ptr<TestProvider>> providers_;
};

// The one violation the log holds, which must be of `kind` and from `call`.
inline Violation only_violation(const ViolationLog& log, ndisshm_violation_kind kind, const char* call) {
    auto all = log.all();
    EXPECT_EQ(all.size(), 1u) << "violations: " << all.size();
    if (all.empty()) return {};
    EXPECT_EQ(all[0].kind, kind) << all[0].kind_name << ": " << all[0].message;
    EXPECT_EQ(all[0].call, call);
    return all[0];
}

// Lowers the calling thread back to PASSIVE_LEVEL at scope exit.
struct IrqlGuard {
    ~IrqlGuard() {
        if (KeGetCurrentIrql() != PASSIVE_LEVEL) KeLowerIrql(PASSIVE_LEVEL);
    }
};

}  // namespace ndisshm::test
