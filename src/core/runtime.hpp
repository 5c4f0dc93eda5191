// The runtime: NDIS's side of the shared memory API, for one set of adapters.
//
// It validates each call, picks the provider (the one registered on the
// adapter through a binding, else the default), calls it synchronously,
// keeps one record per block, and routes each free back to the provider that
// made the block, exactly once. The C surface (src/api/) maps NDIS and host
// calls onto these methods one to one.
#pragma once

#include <ndisshm/host.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "base/result.hpp"
#include "core/block_table.hpp"
#include "core/books.hpp"
#include "core/verifier.hpp"
#include "providers/provider.hpp"

namespace ndisshm::core {

// The live adapter / binding a handle names, from any runtime, or nullptr.
Adapter* find_adapter(const void* handle);
Binding* find_binding(const void* handle);

struct CallSite {
    const char* file = nullptr;
    int line = 0;
};

class Runtime {
public:
    // Makes the provider that serves what no registered provider does, from
    // the config with its defaults filled in (NDIS's own memory).
    using DefaultProviderFactory =
        std::function<Result<std::unique_ptr<providers::Provider>>(const ndisshm_runtime_config& config)>;
    static Result<std::unique_ptr<Runtime>> create(const ndisshm_runtime_config& config,
                                                   const DefaultProviderFactory& make_default_provider);
    ~Runtime();  // tears down every adapter, reporting leaks
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    Verifier& verifier() { return verifier_; }
    const ndisshm_runtime_config& config() const { return config_; }

    NDIS_STATUS create_adapter(const char* name, Adapter** out);
    // `call` names who tore it down, for leak reports.
    void destroy_adapter(Adapter* adapter, const char* call = "ndisshm_adapter_destroy");
    // complete=false: allocated, waiting for complete_queue (the VMQ life cycle).
    // `owner`: the binding that allocates it (its provider serves the queue);
    // nullptr: the miniport's own.
    NDIS_STATUS create_queue(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id, const ndisshm_queue_params* params = nullptr,
                             bool complete = true, Binding* owner = nullptr);
    NDIS_STATUS complete_queue(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id);
    NDIS_STATUS queue_params(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id, ndisshm_queue_params* out, int* complete);
    NDIS_STATUS free_queue(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id);
    NDIS_STATUS create_binding(Adapter* adapter, const char* name, Binding** out);
    void destroy_binding(Binding* binding);
    NDIS_STATUS register_provider(Binding* binding, const char* call, std::unique_ptr<providers::Provider> provider);
    // The binding a provider registered with the adapter handle itself rides
    // on (NdisSetOptionalHandlers with the miniport's handle), made on first use.
    Binding* adapter_binding(Adapter* adapter);

    NDIS_STATUS allocate(Adapter* adapter, PNDIS_SHARED_MEMORY_PARAMETERS params, PNDIS_HANDLE out, CallSite site);
    void free(Adapter* adapter, NDIS_HANDLE handle);

    // The adapter's cap (queue_id NULL) or one queue's; 0 removes it.
    NDIS_STATUS set_limit(Adapter* adapter, const NDIS_RECEIVE_QUEUE_ID* queue_id, uint64_t max_bytes);
    NDIS_STATUS adapter_stats(Adapter* adapter, ndisshm_adapter_stats* out);
    NDIS_STATUS queue_stats(Adapter* adapter, NDIS_RECEIVE_QUEUE_ID id, ndisshm_usage_stats* out);
    NDIS_STATUS block_info(Adapter* adapter, NDIS_HANDLE handle, ndisshm_block_info* out);

    // Words for reports: "adapter 'eth0'", "block 0x… (queue 3, Receive, …)".
    static std::string describe(const Adapter* adapter);
    static std::string describe(const Block* block);

private:
    Runtime(const ndisshm_runtime_config& config, std::unique_ptr<providers::Provider> provider,
            Block* table, uint64_t table_bytes);

    // A record for book `book` (its lock held; `all`: every book's lock is),
    // or nullptr. Only with every lock held does it take records parked in
    // other books.
    Block* take_record(Adapter* adapter, unsigned book, bool all);
    void release_record(Adapter* adapter, Block* block);  // the block's book locked
    // Every book locked (or the call's own, for reading): the binding whose
    // provider serves `queue` now (spec section 7: the owning binding's,
    // else the one registered with the adapter handle), or nullptr for NDIS's
    // own memory.
    static Binding* serving(const Adapter* adapter, const Queue* queue);
    // As serving(), with a call counted in flight on the binding (returned)
    // in book 0; the default provider when no binding serves.
    providers::Provider* provider_for(Adapter* adapter, const Queue* queue, Binding** binding);
    // Every book locked: which provider serves each completed queue but 0.
    std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*> queue_servers(const Adapter* adapter);
    // What each provider must hear of the queues it began or stopped serving:
    // attach_queue and detach_queue calls, made in this order.
    using QueueCalls = std::vector<std::tuple<providers::Provider*, NDIS_RECEIVE_QUEUE_ID, bool>>;
    // Every book locked: the calls that take the adapter from `before` to
    // `after`. A provider that stops serving a queue while blocks it gave
    // for the queue are live is not told now (host.h: a queue goes from a
    // provider after its blocks): it joins the queue's `former`, and one
    // that serves the queue again from there hears nothing either way.
    using QueueServers = std::map<NDIS_RECEIVE_QUEUE_ID, providers::Provider*>;
    QueueCalls plan_queue_calls(Adapter* adapter, const QueueServers& before, const QueueServers& after);
    // Every book locked: detach calls for every queue whose `former` holds
    // `provider`, which is then off those lists (it is about to go).
    static void take_former(Adapter* adapter, const providers::Provider* provider, QueueCalls& calls);
    // Makes the calls, no lock held.
    static void announce(const QueueCalls& calls);
    // The block's book locked. Takes the block off its lists and counts a
    // call in flight on its binding (returned; nullptr for the default
    // provider), which the caller ends once the provider's free has returned.
    Binding* unlink(Block* block);
    // Unlinks (all books locked) then frees through the provider (locks
    // released) all of `blocks`, each reported as `kind` first.
    void reclaim(Adapter* adapter, std::vector<Block*>& blocks, ndisshm_violation_kind kind, const char* call,
                 const std::string& why);
    // Checks everything a call carries, without any lock. *readable says
    // whether p's fields can be read (for failure accounting).
    NDIS_STATUS validate(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, bool* readable,
                         ndisshm_violation_kind* kind, std::string* why, std::vector<std::string>* lenient);

    // allocate() by step (allocate.cpp): admit the call, ask the provider,
    // check what it granted, link the block into the books. Each returns
    // SUCCESS to go on, or what refuse(), the one undo path, returned.
    struct AllocCall;
    enum class Link { Done, Refused, NeedAll };
    NDIS_STATUS admit(AllocCall& c);
    NDIS_STATUS ask_provider(AllocCall& c);
    NDIS_STATUS check_grant(AllocCall& c);
    static void let_go(AllocCall& c);
    NDIS_STATUS link(AllocCall& c);
    Link link_in_book(AllocCall& c, bool all);
    [[gnu::cold]] [[gnu::noinline]] NDIS_STATUS provider_refused(AllocCall& c, providers::ProviderStatus ps);
    [[gnu::cold]] [[gnu::noinline]] NDIS_STATUS refuse(AllocCall& c, NDIS_STATUS status, bool report,
                                                       ndisshm_violation_kind kind, const std::string& message);

    ndisshm_runtime_config config_;
    Verifier verifier_;
    std::unique_ptr<providers::Provider> default_provider_;
    BlockTable table_;
    uint64_t table_bytes_;
    std::mutex adapters_mu_;
    std::vector<Adapter*> adapters_;
    std::vector<Block*> spare_;  // freed records of destroyed adapters, for any adapter (adapters_mu_)
    unsigned book_count_;        // books per adapter (books.hpp): one per CPU, 4 to 32
    const unsigned node_count_;  // NUMA nodes online: a PreferredNode past them means any node
    uint64_t adapter_index_ = 0;
};

}  // namespace ndisshm::core
