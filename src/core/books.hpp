// NDIS's books: adapters, bindings, queues and one record per block.
//
// As ndis.sys does (NDIS_SHARED_MEMORY_BLOCK), each block is linked on three
// lists at once: its adapter's, its provider binding's and its queue's, so a
// queue or binding that goes can find all its blocks in O(its blocks). All
// of an adapter's books are guarded by that adapter's lock; providers are
// never called with it held.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/intrusive_list.hpp"
#include "ndis/ndis_shm.h"
#include "ndisshm/host.h"
#include "providers/provider.hpp"

namespace ndisshm::core {

class Runtime;
struct Adapter;
struct Binding;
struct Queue;

struct UsageStats {
    uint64_t blocks = 0, bytes = 0, peak_blocks = 0, peak_bytes = 0, allocations = 0, frees = 0, failures = 0;

    void on_allocate(uint64_t length) {
        ++blocks;
        bytes += length;
        ++allocations;
        if (blocks > peak_blocks) peak_blocks = blocks;
        if (bytes > peak_bytes) peak_bytes = bytes;
    }
    void on_free(uint64_t length) {
        --blocks;
        bytes -= length;
        ++frees;
    }
    ndisshm_usage_stats to_c() const { return {blocks, bytes, peak_blocks, peak_bytes, allocations, frees, failures}; }
};

enum class BlockState : uint32_t { Unused = 0, Live = 1, Freeing = 2, Freed = 3 };

struct Block {
    std::atomic<BlockState> state{BlockState::Unused};
    // Changes only when a destroyed adapter's spare records go to another
    // adapter; read without a lock by free(), then checked again under it.
    std::atomic<Adapter*> adapter{nullptr};
    Binding* binding = nullptr;                // nullptr: the default provider
    Queue* queue = nullptr;
    providers::Provider* provider = nullptr;  // who gets the free
    uint64_t token = 0;                        // the provider's context for this block
    NDIS_SHARED_MEMORY_PARAMETERS params{};   // as returned to the caller
    uint64_t first_address = 0;
    int32_t node = -1;  // where the provider placed it
    uint64_t serial = 0;
    const char* file = nullptr;  // where it was allocated (string literal from the caller)
    int line = 0;
    // Copied, not pointed to: reports about a freed block (double free) may
    // come after its binding is gone.
    char provider_name[32] = {};
    ListLink<Block> adapter_link, binding_link, queue_link;
};

using AdapterBlocks = IntrusiveList<Block, &Block::adapter_link>;
using BindingBlocks = IntrusiveList<Block, &Block::binding_link>;
using QueueBlocks = IntrusiveList<Block, &Block::queue_link>;

struct Queue {
    explicit Queue(NDIS_RECEIVE_QUEUE_ID queue_id) : id(queue_id) {}
    NDIS_RECEIVE_QUEUE_ID id;
    bool closing = false;  // being freed: no block may be linked to it any more
    bool complete = true;  // allocation completed: shared memory may be allocated for it
    uint32_t flags = 0;    // NDISSHM_QUEUE_LOOKAHEAD_SPLIT
    uint32_t lookahead_size = 0;
    QueueBlocks blocks;
    UsageStats stats;
    uint64_t limit_bytes = 0;    // 0: no cap
    uint64_t pending_bytes = 0;  // admitted against the cap, inside a provider call now
};

struct Binding {
    Binding(Adapter* a, std::string n) : adapter(a), name(std::move(n)) {}
    Adapter* adapter;
    std::string name;
    std::unique_ptr<providers::Provider> provider;  // set once registered
    bool native = false;  // provider is an OpsProvider: its NDIS status is passed through as is
    BindingBlocks blocks;
    // Calls into this binding's provider under way right now (allocate, free,
    // attach, detach): the binding, and its provider, outlive every one.
    std::atomic<int> in_flight{0};
};

struct Adapter {
    Adapter(Runtime* r, std::string n, uint64_t i) : runtime(r), name(std::move(n)), index(i) {}
    Runtime* runtime;
    std::string name;
    uint64_t index;

    std::mutex mu;
    std::unordered_map<NDIS_RECEIVE_QUEUE_ID, std::unique_ptr<Queue>> queues;
    std::vector<Binding*> bindings;
    Binding* provider_binding = nullptr;  // the one whose provider serves this adapter
    AdapterBlocks blocks;
    uint64_t serial = 0;  // allocations ever made on this adapter: names blocks in reports
    UsageStats total;
    UsageStats by_usage[NdisSharedMemoryUsageMax];
    UsageStats by_node[NDISSHM_MAX_NODES];
    uint64_t limit_bytes = 0;    // 0: no cap
    uint64_t pending_bytes = 0;  // admitted against the cap, inside a provider call now
    // Freed block records wait here before reuse, so a stale handle freed
    // again is still recognised as a double free for a long while.
    std::deque<Block*> quarantine;
};

}  // namespace ndisshm::core
