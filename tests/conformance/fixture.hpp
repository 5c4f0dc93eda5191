// Shared helpers for the conformance suite: a runtime per test with its violations collected, the tests'
// provider (common/test_provider.hpp: registers through NdisSetOptionalHandlers, records every call, can
// be told to misbehave), and SG buffers with canary bytes behind them.
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

#include "common/test_provider.hpp"

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

// A quiet runtime with adapter "eth0"; runtime and global violations are collected. Providers made with
// new_provider() outlive the runtime (it may still free through them when it is torn down).
class NdisTest : public ::testing::Test {
protected:
    void SetUp() override {
        ndisshm_runtime_config config;
        ndisshm_runtime_config_init(&config);
        config.report_to_stderr = 0;
        configure(config);
        ASSERT_EQ(ndisshm_runtime_create(&config, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
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
    // A provider for the adapter's queues that no binding owns, queue 0
    // included: registered with the miniport adapter's own handle, the one
    // registration that serves them on Windows (spec section 7). Its blocks
    // name their provider "miniport". With `binding_out`, instead, a binding
    // named `name` registers it: it then serves only the queues that binding
    // allocates (ndisshm_queue_create with the binding's handle).
    TestProvider& provide(NDIS_HANDLE adapter, const char* name = "vswitch",
                          NDIS_HANDLE* binding_out = nullptr) {
        TestProvider& p = new_provider();
        if (binding_out == nullptr) {
            EXPECT_EQ(p.register_on(adapter), NDIS_STATUS_SUCCESS);
            return p;
        }
        NDIS_HANDLE b = new_binding(adapter, name);
        EXPECT_EQ(p.register_on(b), NDIS_STATUS_SUCCESS);
        *binding_out = b;
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
