// Runtime life cycle and the host-side objects: adapters, queues, bindings.
// The allocation and free paths are in allocate.cpp.
#include "core/runtime.hpp"

#include <algorithm>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/ops_provider.hpp"
#include "core/slot_pool.hpp"
#include "os/os.hpp"

namespace ndisshm::core {
namespace {

constexpr size_t kMaxAdapters = 1024;
constexpr size_t kMaxBindings = 4096;

SlotPool<Adapter, kMaxAdapters>& adapter_pool() {
    static auto* pool = new SlotPool<Adapter, kMaxAdapters>();  // never destroyed: handles outlive statics
    return *pool;
}
SlotPool<Binding, kMaxBindings>& binding_pool() {
    static auto* pool = new SlotPool<Binding, kMaxBindings>();
    return *pool;
}

// Blocks a binding's provider made that are outstanding now (all books locked).
size_t binding_blocks(const Binding* binding) {
    size_t n = 0;
    for (unsigned i = 0; i < binding->book_count; ++i) n += binding->books[i].blocks.size();
    return n;
}

// A usage's name, or its number when it is none of NDIS_SHARED_MEMORY_USAGE's.
std::string usage_words(uint32_t usage) {
    return usage < NdisSharedMemoryUsageMax ? ndisshm_usage_name(static_cast<NDIS_SHARED_MEMORY_USAGE>(usage))
                                            : "Usage " + std::to_string(usage);
}

std::string hex(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%p", p);
    return buf;
}

}  // namespace

Adapter* find_adapter(const void* handle) { return adapter_pool().find(handle); }
Binding* find_binding(const void* handle) { return binding_pool().find(handle); }

unsigned book_here(unsigned books) { return os::current_cpu() % books; }

Result<std::unique_ptr<Runtime>> Runtime::create(const ndisshm_runtime_config& in,
                                                 const DefaultProviderFactory& make_default_provider) {
    ndisshm_runtime_config config = in;
    if (config.max_block_bytes == 0) config.max_block_bytes = 1u << 30;
    if (config.arena_capacity_bytes == 0) config.arena_capacity_bytes = uint64_t{16} << 30;
    if (config.max_blocks == 0) config.max_blocks = uint64_t{4} << 20;
    const uint64_t page = os::page_size();
    if (config.arena_capacity_bytes % page != 0)
        return Error{"ndisshm_runtime_create", EINVAL, "arena_capacity_bytes must be a multiple of the page size"};
    if (config.max_blocks > (uint64_t{1} << 32))
        return Error{"ndisshm_runtime_create", EINVAL, "max_blocks must be at most 2^32"};
    if (config.max_block_bytes > config.arena_capacity_bytes)
        return Error{"ndisshm_runtime_create", EINVAL, "max_block_bytes exceeds arena_capacity_bytes"};

    // The core knows providers only through their interface: which one serves
    // an adapter with none registered is the caller's choice (src/api/ makes
    // the default provider, host memory).
    auto provider = make_default_provider(config);
    if (!provider) return provider.error();

    const uint64_t table_bytes = config.max_blocks * sizeof(Block);
    auto table = os::reserve_anonymous(table_bytes);
    if (!table) return table.error();
    return std::unique_ptr<Runtime>(
        new Runtime(config, std::move(*provider), static_cast<Block*>(*table), table_bytes));
}

Runtime::Runtime(const ndisshm_runtime_config& config, std::unique_ptr<providers::Provider> provider,
                 Block* table, uint64_t table_bytes)
    : config_(config), verifier_(config.verifier != 0, config.report_to_stderr != 0),
      default_provider_(std::move(provider)), table_(table, config.max_blocks), table_bytes_(table_bytes),
      // At least 4 even on small machines, so what a book does alone is
      // exercised there too; at most 32, since control calls lock them all.
      book_count_(std::clamp(os::cpu_count(), 4u, 32u)), node_count_(os::numa_node_count()) {}

Runtime::~Runtime() {
    std::vector<Adapter*> adapters;
    {
        std::lock_guard lock(adapters_mu_);
        adapters = adapters_;
    }
    for (Adapter* a : adapters) destroy_adapter(a, "ndisshm_runtime_destroy");
    os::unmap(table_.base(), table_bytes_);
}

std::string Runtime::describe(const Adapter* adapter) {
    return "adapter '" + adapter->name + "' (#" + std::to_string(adapter->index) + ", handle " + hex(adapter) + ")";
}

std::string Runtime::describe(const Block* b) {
    std::string s = "block " + hex(b) + " (queue " + std::to_string(b->params.QueueId) + ", " +
                    usage_words(raw_usage(b->params)) + ", " + std::to_string(b->params.Length) +
                    " bytes, provider '" + std::string(b->provider_name) +
                    "', allocation #" + std::to_string(b->serial) +
                    (b->book.load(std::memory_order_relaxed) != 0
                         ? " of book " + std::to_string(b->book.load(std::memory_order_relaxed))
                         : std::string());
    if (b->file != nullptr) s += ", allocated at " + std::string(b->file) + ":" + std::to_string(b->line);
    return s + ")";
}

NDIS_STATUS Runtime::create_adapter(const char* name, Adapter** out) {
    if (out == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    std::lock_guard lock(adapters_mu_);
    uint64_t index = ++adapter_index_;
    Adapter* a = adapter_pool().create(this, name != nullptr ? name : "adapter" + std::to_string(index), index,
                                       book_count_);
    if (a == nullptr) return NDIS_STATUS_RESOURCES;
    Queue& q0 = a->queues.add(NDIS_DEFAULT_RECEIVE_QUEUE_ID,
                              std::make_unique<Queue>(NDIS_DEFAULT_RECEIVE_QUEUE_ID, book_count_));
    a->cap.limit = config_.adapter_limit_bytes;
    q0.cap.limit = config_.queue_limit_bytes;
    adapters_.push_back(a);
    *out = a;
    return NDIS_STATUS_SUCCESS;
}

void Runtime::destroy_adapter(Adapter* adapter, const char* call) {
    // Blocks first, as leaks, each through its own provider; then the
    // bindings and queues, which are empty by then.
    std::vector<Block*> leaked;
    {
        AllBooks all(adapter);
        for (unsigned i = 0; i < adapter->book_count; ++i)
            for (Block* b = adapter->books[i].blocks.front(); b != nullptr; b = AdapterBlocks::next(b))
                leaked.push_back(b);
    }
    reclaim(adapter, leaked, NDISSHM_VIOLATION_LEAK, call,
            "still allocated when " + describe(adapter) + " was torn down; freed through its provider");
    // Queues go with the adapter: the providing binding, destroyed below,
    // tells its provider of each (detach_queue); the default provider keeps
    // no per-queue state.
    std::vector<Binding*> bindings;
    {
        AllBooks all(adapter);
        bindings = adapter->bindings;
    }
    for (Binding* b : bindings) destroy_binding(b);
    if (adapter->own_binding) destroy_binding(adapter->own_binding.get());
    {
        // Its freed records serve other adapters from now on.
        AllBooks all(adapter);
        std::lock_guard lock(adapters_mu_);
        for (unsigned i = 0; i < adapter->book_count; ++i) {
            for (Block* b : adapter->books[i].quarantine) {
                b->adapter.store(nullptr, std::memory_order_release);
                spare_.push_back(b);
            }
            adapter->books[i].quarantine.clear();
        }
        adapters_.erase(std::remove(adapters_.begin(), adapters_.end(), adapter), adapters_.end());
    }
    adapter_pool().destroy(adapter);
}

Binding* Runtime::serving(const Adapter* adapter, const Queue* queue) {
    if (queue != nullptr && queue->owner != nullptr && queue->owner->provider && !queue->owner->retired)
        return queue->owner;
    Binding* own = adapter->own_binding.get();
    if (own != nullptr && own->provider && !own->retired) return own;
    return nullptr;
}

providers::Provider* Runtime::provider_for(Adapter* adapter, const Queue* queue, Binding** binding) {
    *binding = serving(adapter, queue);
    if (*binding == nullptr) return default_provider_.get();
    (*binding)->enter(0);
    return (*binding)->provider.get();
}

std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*> Runtime::queue_servers(const Adapter* adapter) {
    std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*> out;
    for (auto& [id, q] : adapter->queues) {
        if (id == NDIS_DEFAULT_RECEIVE_QUEUE_ID || !q->complete || q->closing) continue;
        Binding* b = serving(adapter, q.get());
        out[id] = b != nullptr ? b->provider.get() : default_provider_.get();
    }
    return out;
}

Runtime::QueueCalls Runtime::plan_queue_calls(Adapter* adapter, const QueueServers& before,
                                              const QueueServers& after) {
    // A provider sees each queue it serves in pairs: attach when it begins,
    // detach when it ends (a registration, a re-registration, a detach), and
    // the detach only once none of its blocks of the queue is live.
    // An allocation admitted for the queue and still inside a provider may
    // be this one's: waiting is always safe, so it counts as live.
    const auto gave_live_blocks = [&](const Queue& q, const providers::Provider* p) {
        for (unsigned i = 0; i < adapter->book_count; ++i) {
            if (q.books[i].pending_bytes != 0) return true;
            for (const Block* b = q.books[i].blocks.front(); b != nullptr; b = QueueBlocks::next(b))
                if (b->provider == p) return true;
        }
        return false;
    };
    QueueCalls calls;
    for (auto& [id, old] : before) {
        auto it = after.find(id);
        if (it != after.end() && it->second == old) continue;
        Queue* q = adapter->queues.find(id);
        if (q != nullptr && gave_live_blocks(*q, old)) {
            q->former.push_back(old);  // told when the queue, or the provider, goes
            continue;
        }
        calls.emplace_back(old, id, false);
    }
    for (auto& [id, now] : after) {
        auto it = before.find(id);
        if (it != before.end() && it->second == now) continue;
        // Back to a provider that was never told it had stopped: nothing to tell.
        Queue* q = adapter->queues.find(id);
        if (q != nullptr) {
            auto f = std::find(q->former.begin(), q->former.end(), now);
            if (f != q->former.end()) {
                q->former.erase(f);
                continue;
            }
        }
        calls.emplace_back(now, id, true);
    }
    return calls;
}

void Runtime::take_former(Adapter* adapter, const providers::Provider* provider, QueueCalls& calls) {
    if (provider == nullptr) return;
    for (auto& [id, q] : adapter->queues) {
        auto f = std::find(q->former.begin(), q->former.end(), provider);
        if (f == q->former.end()) continue;
        calls.emplace_back(*f, id, false);
        q->former.erase(f);
    }
}

void Runtime::announce(const QueueCalls& calls) {
    for (const auto& [provider, id, attach] : calls) {
        if (attach)
            provider->attach_queue(id);
        else
            provider->detach_queue(id);
    }
}

NDIS_STATUS Runtime::create_queue(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id, const ndisshm_queue_params* params,
                                  bool complete, Binding* owner) {
    if (params != nullptr && (params->flags & ~static_cast<uint32_t>(NDISSHM_QUEUE_LOOKAHEAD_SPLIT)) != 0)
        return NDIS_STATUS_INVALID_PARAMETER;
    {
        AllBooks all(adapter);
        if (id == NDIS_DEFAULT_RECEIVE_QUEUE_ID || adapter->queues.contains(id)) return NDIS_STATUS_INVALID_PARAMETER;
        Queue* q = &adapter->queues.add(id, std::make_unique<Queue>(id, adapter->book_count));
        q->cap.limit = config_.queue_limit_bytes;
        q->complete = false;
        q->owner = owner;
        if (params != nullptr) {
            q->flags = params->flags;
            q->lookahead_size = params->lookahead_size;
        }
    }
    return complete ? complete_queue(adapter, id) : NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::complete_queue(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id) {
    providers::Provider* provider;
    Binding* binding;
    {
        AllBooks all(adapter);
        Queue* q = adapter->queues.find(id);
        if (q == nullptr || q->complete || q->closing) return NDIS_STATUS_INVALID_PARAMETER;
        q->complete = true;
        provider = provider_for(adapter, q, &binding);
    }
    provider->attach_queue(id);
    if (binding != nullptr) binding->leave(0);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::queue_params(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id, ndisshm_queue_params* out,
                                  int* complete) {
    std::lock_guard lock(adapter->books[book_here(adapter->book_count)].mu);
    const Queue* q = adapter->queues.find(id);
    if (q == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    if (out != nullptr) *out = {sizeof(ndisshm_queue_params), q->flags, q->lookahead_size};
    if (complete != nullptr) *complete = q->complete ? 1 : 0;
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::free_queue(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id) {
    std::vector<Block*> left;
    QueueCalls former;
    {
        AllBooks all(adapter);
        Queue* q = adapter->queues.find(id);
        if (id == NDIS_DEFAULT_RECEIVE_QUEUE_ID || q == nullptr || q->closing) return NDIS_STATUS_INVALID_PARAMETER;
        // From here no allocation can link a block to this queue, so what we
        // collect now is all there will ever be.
        q->closing = true;
        for (unsigned i = 0; i < adapter->book_count; ++i)
            for (Block* b = q->books[i].blocks.front(); b != nullptr; b = QueueBlocks::next(b))
                left.push_back(b);
    }
    reclaim(adapter, left, NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS, "ndisshm_queue_free",
            "still allocated when queue " + std::to_string(id) + " of " + describe(adapter) +
                " was freed (the miniport must free a queue's shared memory first); freed through its provider");
    providers::Provider* provider;
    Binding* binding;
    {
        AllBooks all(adapter);
        // Frees on other threads may still be unlinking this queue's last
        // blocks, and allocations admitted for it may still be inside their
        // provider (they hold on to the queue); it goes once both are done.
        auto busy = [&] {
            const Queue& q = *adapter->queues.find(id);
            for (unsigned i = 0; i < adapter->book_count; ++i)
                if (!q.books[i].blocks.empty() || q.books[i].pending_bytes != 0) return true;
            return false;
        };
        while (busy()) {
            all.unlock();
            std::this_thread::yield();
            all.lock();
        }
        if (!adapter->queues.find(id)->complete) {
            adapter->queues.erase(id);
            return NDIS_STATUS_SUCCESS;  // the provider never heard of it
        }
        Queue* q = adapter->queues.find(id);
        // Set on every path that reaches the detach below: chosen under one
        // `if` and used after another, GCC -O2 could not tell (-Wmaybe-uninitialized).
        provider = provider_for(adapter, q, &binding);
        // Its blocks are all gone: the providers that served it before hear now.
        for (providers::Provider* p : q->former) former.emplace_back(p, id, false);
        adapter->queues.erase(id);
    }
    announce(former);
    provider->detach_queue(id);
    if (binding != nullptr) binding->leave(0);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::create_binding(Adapter* adapter, const char* name, Binding** out) {
    if (out == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    std::string n = name != nullptr ? name : "binding";
    Binding* b = binding_pool().create(adapter, n, adapter->book_count);
    if (b == nullptr) return NDIS_STATUS_RESOURCES;
    AllBooks all(adapter);
    adapter->bindings.push_back(b);
    *out = b;
    return NDIS_STATUS_SUCCESS;
}

void Runtime::destroy_binding(Binding* binding) {
    Adapter* adapter = binding->adapter;
    std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*> before;
    {
        AllBooks all(adapter);
        before = queue_servers(adapter);
        binding->retired = true;  // new calls: whoever serves its queues next
    }
    // Allocations already inside this provider finish and link their blocks
    // before we collect them.
    while (binding->in_flight() != 0) std::this_thread::yield();
    std::vector<Block*> left;
    {
        AllBooks all(adapter);
        for (unsigned i = 0; i < adapter->book_count; ++i)
            for (Block* b = binding->books[i].blocks.front(); b != nullptr; b = BindingBlocks::next(b))
                left.push_back(b);
    }
    reclaim(adapter, left, NDISSHM_VIOLATION_BINDING_DETACHED_WITH_BLOCKS, "ndisshm_binding_destroy",
            "still allocated when provider binding '" + binding->name + "' detached from " + describe(adapter) +
                "; freed through that provider");
    std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*> after;
    {
        AllBooks all(adapter);
        auto& v = adapter->bindings;
        v.erase(std::remove(v.begin(), v.end(), binding), v.end());
        // Queues it allocated stay, the miniport's now, as when a protocol
        // unbinds without freeing its queues.
        for (auto& [id, q] : adapter->queues)
            if (q->owner == binding) q->owner = nullptr;
        after = queue_servers(adapter);
    }
    // Frees of this binding's blocks racing the reclaim above may still be
    // inside its provider: it must outlive them.
    QueueCalls calls;
    for (;;) {
        {
            AllBooks all(adapter);
            if (binding_blocks(binding) == 0 && binding->in_flight() == 0) {
                calls = plan_queue_calls(adapter, before, after);
                take_former(adapter, binding->provider.get(), calls);  // it goes, its blocks gone
                break;
            }
        }
        std::this_thread::yield();
    }
    announce(calls);
    if (binding->adapter_own)
        adapter->own_binding.reset();
    else
        binding_pool().destroy(binding);
}

Binding* Runtime::adapter_binding(Adapter* adapter) {
    AllBooks all(adapter);
    if (!adapter->own_binding) {
        adapter->own_binding = std::make_unique<Binding>(adapter, "miniport", adapter->book_count);
        adapter->own_binding->adapter_own = true;
    }
    return adapter->own_binding.get();
}

NDIS_STATUS Runtime::register_provider(Binding* binding, const char* call,
                                       std::unique_ptr<providers::Provider> provider) {
    Adapter* adapter = binding->adapter;
    std::unique_ptr<providers::Provider> replaced;  // a re-registration's old provider
    std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*> before, after;
    QueueCalls calls;
    {
        AllBooks all(adapter);
        if (binding_blocks(binding) != 0 || binding->in_flight() != 0) {
            verifier_.report(NDISSHM_VIOLATION_BAD_REGISTRATION, call, adapter, binding, {},
                             "binding '" + binding->name + "' re-registered while " +
                                 std::to_string(binding_blocks(binding)) + " of its blocks are outstanding");
            return NDIS_STATUS_FAILURE;
        }
        before = queue_servers(adapter);
        binding->native = dynamic_cast<OpsProvider*>(provider.get()) != nullptr;
        replaced = std::move(binding->provider);
        binding->provider = std::move(provider);
        after = queue_servers(adapter);
        calls = plan_queue_calls(adapter, before, after);
        // The provider replaced has no block live (checked above) and goes.
        take_former(adapter, replaced.get(), calls);
    }
    announce(calls);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::set_limit(Adapter* adapter, const NDIS_RECEIVE_QUEUE_ID* queue_id, uint64_t max_bytes) {
    AllBooks all(adapter);
    // With every book locked nothing moves: what is charged against the cap
    // from now on starts from the exact figure.
    uint64_t charged = 0;
    if (queue_id == nullptr) {
        for (unsigned i = 0; i < adapter->book_count; ++i)
            charged += adapter->books[i].total.bytes + adapter->books[i].pending_bytes;
        adapter->cap.reset(max_bytes, charged);
        return NDIS_STATUS_SUCCESS;
    }
    Queue* found = adapter->queues.find(*queue_id);
    if (found == nullptr || found->closing) return NDIS_STATUS_INVALID_PARAMETER;
    Queue& q = *found;
    for (unsigned i = 0; i < adapter->book_count; ++i) charged += q.books[i].stats.bytes + q.books[i].pending_bytes;
    q.cap.reset(max_bytes, charged);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::adapter_stats(Adapter* adapter, ndisshm_adapter_stats* out) {
    if (out == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    AllBooks all(adapter);
    *out = {};
    const unsigned k = adapter->book_count;
    const Book* books = adapter->books.get();
    out->total = sum_level(k, adapter->total_peak, [&](unsigned i) -> const Tally& { return books[i].total; });
    for (int u = 0; u < NdisSharedMemoryUsageMax; ++u)
        out->by_usage[u] =
            sum_level(k, adapter->usage_peak[u], [&](unsigned i) -> const Tally& { return books[i].by_usage[u]; });
    for (int n = 0; n < NDISSHM_MAX_NODES; ++n)
        out->by_node[n] =
            sum_level(k, adapter->node_peak[n], [&](unsigned i) -> const Tally& { return books[i].by_node[n]; });
    out->limit_bytes = adapter->cap.limit;
    out->queues = static_cast<uint32_t>(adapter->queues.size());
    out->bindings = static_cast<uint32_t>(adapter->bindings.size());
    out->has_provider = adapter->own_binding && adapter->own_binding->provider ? 1 : 0;
    for (const Binding* b : adapter->bindings)
        if (b->provider) out->has_provider = 1;
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::queue_stats(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id, ndisshm_usage_stats* out) {
    if (out == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    AllBooks all(adapter);
    const Queue* found = adapter->queues.find(id);
    if (found == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    const Queue& q = *found;
    *out = sum_level(adapter->book_count, q.peak, [&](unsigned i) -> const Tally& { return q.books[i].stats; });
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::block_info(Adapter* adapter, NDIS_HANDLE handle, ndisshm_block_info* out) {
    Block* b = table_.find(handle);
    if (out == nullptr || b == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    const unsigned bk = b->book.load(std::memory_order_acquire);
    if (bk >= adapter->book_count) return NDIS_STATUS_INVALID_PARAMETER;
    std::lock_guard lock(adapter->books[bk].mu);
    if (b->state.load() != BlockState::Live || b->adapter.load() != adapter || b->book.load() != bk)
        return NDIS_STATUS_INVALID_PARAMETER;
    out->adapter = adapter;
    out->queue_id = b->params.QueueId;
    const uint32_t usage = raw_usage(b->params);  // as the caller stored it, any value
    std::memcpy(&out->usage, &usage, sizeof(usage));
    out->length = b->params.Length;
    out->virtual_address = b->params.VirtualAddress;
    out->first_address = b->first_address;
    out->node = b->node;
    out->provider = b->binding != nullptr ? b->binding->name.c_str() : "default";
    return NDIS_STATUS_SUCCESS;
}

}  // namespace ndisshm::core
