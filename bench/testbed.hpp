// One runtime with its miniport adapters, as a benchmark's threads share it:
// quiet (report_to_stderr = 0), verifier on unless asked otherwise, and
// optionally a provider binding and blocks held outstanding for the whole run.
#pragma once

#include <string>
#include <vector>

#include "bench_support.hpp"

namespace bench {

constexpr NDIS_RECEIVE_QUEUE_ID kBindingQueue = 1;

struct TestbedOptions {
    bool verifier = true;
    int adapters = 1;  // "bench0", "bench1", ...; the binding and outstanding blocks are on bench0
    // Blocks of `outstanding_length` bytes allocated before the timed loop
    // and freed only when the testbed goes. Not touched: they stand for
    // receive buffers some other queue owns, not for memory this run uses.
    int64_t outstanding = 0;
    ULONG outstanding_length = 4096;
    // Non-empty: a provider binding of this name registers `provider` through
    // NdisSetOptionalHandlers and allocates queue kBindingQueue, so the
    // allocations on that queue go to it (the Hyper-V shape: queue 0 stays
    // NDIS's own memory, as on Windows).
    std::string binding_name;
    const NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS* provider = nullptr;
    // ndisshm_zero_ahead; -1: what ndisshm_runtime_config_init says (AUTO, or NDISSHM_ZERO_AHEAD).
    int zero_ahead = -1;
};

class Testbed {
public:
    explicit Testbed(const TestbedOptions& o) {
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.verifier = o.verifier ? 1 : 0;  // explicit, whatever NDISSHM_VERIFIER says
        c.report_to_stderr = 0;
        if (o.zero_ahead >= 0) c.zero_ahead = static_cast<uint32_t>(o.zero_ahead);
        check(ndisshm_runtime_create(&c, &rt_, nullptr, 0), "ndisshm_runtime_create");
        for (int i = 0; i < o.adapters; ++i) {
            NDIS_HANDLE a = nullptr;
            check(ndisshm_adapter_create(rt_, ("bench" + std::to_string(i)).c_str(), &a), "ndisshm_adapter_create");
            adapters_.push_back(a);
        }
        adapter_ = adapters_.front();
        if (!o.binding_name.empty()) {
            check(ndisshm_binding_create(adapter_, o.binding_name.c_str(), &binding_), "ndisshm_binding_create");
            auto* handlers = reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(
                const_cast<NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS*>(o.provider));
            check(NdisSetOptionalHandlers(binding_, handlers), "NdisSetOptionalHandlers");
            check(ndisshm_queue_create(binding_, kBindingQueue), "ndisshm_queue_create (the binding's queue)");
            queue_ = kBindingQueue;
        }
        DriverRequest req(o.outstanding_length);
        req.shape().QueueId = queue_;
        held_.reserve(static_cast<size_t>(o.outstanding));
        for (int64_t i = 0; i < o.outstanding; ++i) {
            NDIS_HANDLE h = nullptr;
            check(NdisAllocateSharedMemory(adapter_, req.fresh(), &h), "NdisAllocateSharedMemory (outstanding)");
            held_.push_back(h);
        }
    }

    ~Testbed() {
        for (NDIS_HANDLE h : held_) NdisFreeSharedMemory(adapter_, h);
        if (binding_ != nullptr) ndisshm_binding_destroy(binding_);
        for (NDIS_HANDLE a : adapters_) ndisshm_adapter_destroy(a);
        ndisshm_runtime_destroy(rt_);
    }

    Testbed(const Testbed&) = delete;
    Testbed& operator=(const Testbed&) = delete;

    NDIS_HANDLE adapter(int i = 0) const { return adapters_[static_cast<size_t>(i)]; }
    // The queue to allocate on: the binding's when there is one, else queue 0.
    NDIS_RECEIVE_QUEUE_ID queue() const { return queue_; }
    const ndisshm_runtime* runtime() const { return rt_; }
    ndisshm_memory_stats memory() const {
        ndisshm_memory_stats m{};
        check(ndisshm_runtime_get_memory_stats(rt_, &m), "ndisshm_runtime_get_memory_stats");
        return m;
    }
    uint64_t violations() const { return bench::violations(rt_); }

private:
    static void check(NDIS_STATUS s, const char* what) {
        if (s != NDIS_STATUS_SUCCESS) die(std::string(what) + " failed: " + ndisshm_status_name(s));
    }

    ndisshm_runtime* rt_ = nullptr;
    std::vector<NDIS_HANDLE> adapters_;
    NDIS_HANDLE adapter_ = nullptr;  // adapters_[0]
    NDIS_HANDLE binding_ = nullptr;
    NDIS_RECEIVE_QUEUE_ID queue_ = NDIS_DEFAULT_RECEIVE_QUEUE_ID;
    std::vector<NDIS_HANDLE> held_;
};

// After the loop, on thread 0: a run the verifier objected to is no figure.
inline void fail_on_violations(benchmark::State& state, const Testbed& bed) {
    if (state.thread_index() == 0 && bed.violations() != 0)
        state.SkipWithError(("the verifier reported " + std::to_string(bed.violations()) + " violation(s)").c_str());
}

}  // namespace bench
