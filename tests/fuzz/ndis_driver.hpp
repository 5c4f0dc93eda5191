// The NDIS-calls fuzz target's driver: turns input bytes into calls and the
// handles a buggy driver may pass (live, stale, near misses, garbage, NULL).
// The calls themselves are in fuzz_ndis_calls.cpp.
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <cstdint>
#include <iterator>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "fuzz/ndis_model.hpp"

namespace ndisshm_fuzz {

class Driver {
public:
    Driver(ByteReader& in, ndisshm_runtime* rt, bool verifier) : in_(in), rt_(rt), verifier_(verifier) {
        ndisshm_runtime_set_violation_callback(rt_, &Driver::count_violation, &violations_);
    }

    void create_adapter();
    void step();
    // Teardown in an order the input picks, then the runtime; afterwards every provider must be whole.
    void teardown();

private:
    static void count_violation(void* context, const ndisshm_violation* v) {
        FUZZ_CHECK(v != nullptr && v->kind_name != nullptr && v->message != nullptr, "violation report incomplete");
        ++*static_cast<uint64_t*>(context);
    }

    // ---- handles ------------------------------------------------------------
    int live_adapter() {
        std::vector<int> live;
        for (int i = 0; i < static_cast<int>(m_.adapters.size()); ++i)
            if (m_.adapters[i].handle != nullptr) live.push_back(i);
        return live.empty() ? -1 : live[in_.below(static_cast<uint32_t>(live.size()))];
    }
    int live_binding() {
        std::vector<int> live;
        for (int i = 0; i < static_cast<int>(m_.bindings.size()); ++i)
            if (m_.bindings[i].handle != nullptr) live.push_back(i);
        return live.empty() ? -1 : live[in_.below(static_cast<uint32_t>(live.size()))];
    }
    NDIS_HANDLE stale() {
        return m_.dead.empty() ? nullptr : m_.dead[in_.below(static_cast<uint32_t>(m_.dead.size()))];
    }
    NDIS_HANDLE garbage() {
        switch (in_.below(4)) {
            case 0: return nullptr;
            case 1: return stale();
            case 2: {  // just past the start of a live object: in range, off its stride
                const int a = live_adapter();
                return a < 0 ? nullptr : static_cast<char*>(m_.adapters[a].handle) + 1 + in_.byte() % 64;
            }
            default: return reinterpret_cast<NDIS_HANDLE>(in_.take<uintptr_t>());
        }
    }
    // Which live adapter a handle is, whatever way it was made; -1: none.
    int adapter_index(NDIS_HANDLE h) const {
        for (int i = 0; i < static_cast<int>(m_.adapters.size()); ++i)
            if (h != nullptr && m_.adapters[i].handle == h) return i;
        return -1;
    }
    int binding_index(NDIS_HANDLE h) const {
        for (int i = 0; i < static_cast<int>(m_.bindings.size()); ++i)
            if (h != nullptr && m_.bindings[i].handle == h) return i;
        return -1;
    }
    NDIS_HANDLE adapter_handle() {
        if (in_.below(6) == 0) {
            const int b = live_binding();  // a binding is no adapter
            return in_.flag() && b >= 0 ? m_.bindings[b].handle : garbage();
        }
        const int a = live_adapter();
        return a < 0 ? nullptr : m_.adapters[a].handle;
    }
    NDIS_HANDLE binding_handle() {
        if (in_.below(6) == 0) {
            const int a = live_adapter();  // an adapter is no binding
            return in_.flag() && a >= 0 ? m_.adapters[a].handle : garbage();
        }
        const int b = live_binding();
        return b < 0 ? nullptr : m_.bindings[b].handle;
    }
    NDIS_HANDLE block_handle() {
        switch (in_.below(6)) {
            case 0: return garbage();
            case 1: return stale();
            case 2:
                if (m_.blocks.empty()) return nullptr;
                return static_cast<char*>(m_.blocks[in_.below(static_cast<uint32_t>(m_.blocks.size()))].handle) +
                       (in_.byte() | 1);  // inside a record, never its start
            default:
                if (m_.blocks.empty()) return stale();
                return m_.blocks[in_.below(static_cast<uint32_t>(m_.blocks.size()))].handle;
        }
    }
    NDIS_RECEIVE_QUEUE_ID queue_id(int adapter) {
        if (adapter >= 0 && in_.below(4) != 0) {
            const auto& qs = m_.adapters[adapter].queues;
            auto it = qs.begin();
            std::advance(it, in_.below(static_cast<uint32_t>(qs.size())));
            return it->first;
        }
        return in_.flag() ? in_.below(8) : in_.take<uint32_t>();
    }

    // ---- the calls (fuzz_ndis_calls.cpp) ---------------------------------------
    void allocate();
    void check_granted(int adapter, const NDIS_SHARED_MEMORY_PARAMETERS& p, NDIS_HANDLE handle, int binding);
    void free_block();
    void adapter_op();
    void binding_op();
    void register_provider();
    void queue_op();
    void irql_op();
    void limit_op();
    void query();
    void destroy_binding(int i) {
        ndisshm_binding_destroy(m_.bindings[i].handle);
        m_.drop_binding(i);
    }
    void destroy_adapter(int i) {
        ndisshm_adapter_destroy(m_.adapters[i].handle);
        m_.drop_adapter(i);
    }

    ByteReader& in_;
    ndisshm_runtime* rt_;
    bool verifier_;
    uint64_t violations_ = 0;
    Model m_;
};

}  // namespace ndisshm_fuzz
