// The NDIS-calls fuzz target's picture of the world: which adapters,
// bindings, queues and blocks are live, as the public API promised them, and
// the checks that hold the runtime's books to that picture after every call.
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "common/test_provider.hpp"
#include "fuzz/fuzz_support.hpp"

namespace ndisshm_fuzz {

using ndisshm::test::TestProvider;
using Misbehave = TestProvider::Misbehave;

// The provider's side of every call so far: no free of a context it never handed out or had back
// already, no queue detached while one of its blocks was live (host.h: the blocks go first).
inline void check_provider(const TestProvider& p, const char* when) {
    FUZZ_CHECK(p.unknown_frees() == 0, "%s: a free of a context the provider never handed out", when);
    FUZZ_CHECK(p.double_frees() == 0, "%s: a context freed twice", when);
    FUZZ_CHECK(p.wrong_provider_context() == 0, "%s: a handler called with another ProviderContext", when);
    FUZZ_CHECK(p.detached_with_live_blocks() == 0, "%s: a queue detached while its blocks were live", when);
}

struct ModelBlock {
    NDIS_HANDLE handle = nullptr;
    int adapter = -1;
    int binding = -1;  // whose provider made it; -1: the default provider
    NDIS_RECEIVE_QUEUE_ID queue = 0;
    ULONG usage = 0;
    ULONG length = 0;
    void* address = nullptr;
};

struct ModelQueue {
    bool complete = true;
    int owner = -1;  // the binding that allocated it (its provider serves it), or -1: the miniport's
};

struct ModelAdapter {
    NDIS_HANDLE handle = nullptr;  // nullptr once destroyed
    std::map<NDIS_RECEIVE_QUEUE_ID, ModelQueue> queues{{NDIS_DEFAULT_RECEIVE_QUEUE_ID, ModelQueue{}}};
    int own = -1;  // the entry of `bindings` a provider registered with the adapter's handle rides on
};

struct ModelBinding {
    NDIS_HANDLE handle = nullptr;  // nullptr once destroyed, and always for an adapter's own entry
    int adapter = -1;
    TestProvider* provider = nullptr;  // registered provider, if any
    bool adapter_own = false;          // the adapter's own registration (spec section 7)
};

struct Model {
    std::vector<ModelAdapter> adapters;
    std::vector<ModelBinding> bindings;
    std::vector<ModelBlock> blocks;  // live ones
    std::vector<NDIS_HANDLE> dead;   // freed blocks and destroyed adapters/bindings: stale handles
    std::vector<std::unique_ptr<TestProvider>> providers;  // every one made; they outlive the runtime

    // Blocks that die with something else (queue freed, binding or adapter destroyed).
    // Where the default provider's blocks were, and the adapter that had them last: a block may come
    // back to that adapter as it left it (host.h), to any other zeroed.
    std::map<void*, int> freed_by;

    template <class Pred>
    void drop_blocks(Pred dies) {
        for (const ModelBlock& b : blocks) {
            if (!dies(b)) continue;
            dead.push_back(b.handle);
            if (b.binding < 0) freed_by[b.address] = b.adapter;
        }
        blocks.erase(std::remove_if(blocks.begin(), blocks.end(), dies), blocks.end());
    }
    void drop_binding(int i) {
        ModelBinding& b = bindings[i];
        if (b.handle == nullptr && !b.adapter_own) return;
        drop_blocks([&](const ModelBlock& m) { return m.binding == i; });
        ModelAdapter& a = adapters[b.adapter];
        if (a.own == i) a.own = -1;
        for (auto& [id, q] : a.queues)
            if (q.owner == i) q.owner = -1;  // its queues stay, the miniport's now
        if (b.handle != nullptr) dead.push_back(b.handle);
        b.handle = nullptr;
        b.adapter_own = false;
        b.provider = nullptr;
    }
    void drop_adapter(int i) {
        ModelAdapter& a = adapters[i];
        if (a.handle == nullptr) return;
        drop_blocks([&](const ModelBlock& m) { return m.adapter == i; });
        for (int k = 0; k < static_cast<int>(bindings.size()); ++k)
            if (bindings[k].adapter == i) drop_binding(k);
        dead.push_back(a.handle);
        a.handle = nullptr;
    }
    // Spec section 7: a queue a binding allocated goes to that binding's provider; queue 0 and the
    // others to the adapter's own provider; else NDIS's own memory (-1).
    int serving(int ai, NDIS_RECEIVE_QUEUE_ID q) const {
        const ModelAdapter& a = adapters[ai];
        auto it = a.queues.find(q);
        if (it != a.queues.end() && it->second.owner >= 0 && bindings[it->second.owner].provider != nullptr)
            return it->second.owner;
        if (a.own >= 0 && bindings[a.own].provider != nullptr) return a.own;
        return -1;
    }
    bool has_provider(int ai) const {
        for (const ModelBinding& b : bindings)
            if (b.adapter == ai && b.provider != nullptr && (b.handle != nullptr || b.adapter_own)) return true;
        return false;
    }
    ModelBlock* find_block(NDIS_HANDLE h) {
        for (ModelBlock& b : blocks)
            if (b.handle == h) return &b;
        return nullptr;
    }

    // The runtime's books against the model: every count, every live block.
    void check(const ndisshm_runtime* rt) const {
        uint64_t default_blocks = 0;
        for (int i = 0; i < static_cast<int>(adapters.size()); ++i) {
            const ModelAdapter& a = adapters[i];
            if (a.handle == nullptr) continue;
            ndisshm_adapter_stats s{};
            FUZZ_CHECK(ndisshm_adapter_get_stats(a.handle, &s) == NDIS_STATUS_SUCCESS, "stats of adapter %d", i);
            uint64_t n = 0, bytes = 0;
            std::map<NDIS_RECEIVE_QUEUE_ID, uint64_t> per_queue;
            uint64_t per_usage[NdisSharedMemoryUsageMax] = {};
            for (const ModelBlock& b : blocks) {
                if (b.adapter != i) continue;
                ++n;
                bytes += b.length;
                ++per_queue[b.queue];
                ++per_usage[b.usage < NdisSharedMemoryUsageMax ? b.usage : 0];  // unknown: Undefined
                if (b.binding < 0) ++default_blocks;
                ndisshm_block_info info{};
                FUZZ_CHECK(ndisshm_block_get_info(a.handle, b.handle, &info) == NDIS_STATUS_SUCCESS,
                           "live block %p of adapter %d is unknown to the books", b.handle, i);
                ULONG info_usage;  // any value: read as bits, not through the enum
                std::memcpy(&info_usage, &info.usage, sizeof(info_usage));
                FUZZ_CHECK(info.adapter == a.handle && info.queue_id == b.queue && info.length == b.length &&
                               info_usage == b.usage && info.virtual_address == b.address,
                           "block %p: the books describe another block", b.handle);
            }
            FUZZ_CHECK(s.total.blocks == n, "adapter %d: books say %llu blocks, %llu are live", i,
                       static_cast<unsigned long long>(s.total.blocks), static_cast<unsigned long long>(n));
            FUZZ_CHECK(s.total.blocks == s.total.allocations - s.total.frees, "adapter %d: blocks != allocs - frees",
                       i);
            FUZZ_CHECK(s.total.bytes == bytes, "adapter %d: bytes", i);
            FUZZ_CHECK(s.total.peak_blocks >= s.total.blocks && s.total.peak_bytes >= s.total.bytes, "peaks");
            for (int u = 0; u < NdisSharedMemoryUsageMax; ++u)
                FUZZ_CHECK(s.by_usage[u].blocks == per_usage[u], "adapter %d usage %d", i, u);
            FUZZ_CHECK(s.queues == a.queues.size(), "adapter %d: %u queues, model %zu", i, s.queues, a.queues.size());
            FUZZ_CHECK((s.has_provider != 0) == has_provider(i), "adapter %d: has_provider", i);
            for (const auto& [q, mq] : a.queues) {
                ndisshm_usage_stats qs{};
                FUZZ_CHECK(ndisshm_queue_get_stats(a.handle, q, &qs) == NDIS_STATUS_SUCCESS, "queue %u stats", q);
                FUZZ_CHECK(qs.blocks == per_queue[q], "adapter %d queue %u: %llu blocks, model %llu", i, q,
                           static_cast<unsigned long long>(qs.blocks),
                           static_cast<unsigned long long>(per_queue[q]));
                FUZZ_CHECK(qs.blocks == qs.allocations - qs.frees, "queue %u: blocks != allocs - frees", q);
            }
        }
        ndisshm_memory_stats m{};
        FUZZ_CHECK(ndisshm_runtime_get_memory_stats(rt, &m) == NDIS_STATUS_SUCCESS, "memory stats");
        FUZZ_CHECK(m.blocks_in_use == default_blocks, "default provider has %llu blocks, model %llu",
                   static_cast<unsigned long long>(m.blocks_in_use), static_cast<unsigned long long>(default_blocks));
        // A provider holds exactly the live blocks the model says it made (a binding re-registers only with
        // no blocks outstanding, so a block's maker is its binding's current provider).
        for (const auto& p : providers) {
            size_t made = 0;
            for (const ModelBlock& b : blocks) made += b.binding >= 0 && bindings[b.binding].provider == p.get();
            FUZZ_CHECK(p->live() == made, "a provider holds %zu blocks, the model %zu", p->live(), made);
        }
    }
};

}  // namespace ndisshm_fuzz
