// The two hot paths: NdisAllocateSharedMemory and NdisFreeSharedMemory.
//
// Order of work, chosen so a bad call changes nothing: check the caller (IRQL,
// parameters) without touching the books; admit it (queue, caps) under this
// CPU's book lock; call the provider with no lock held; check what the
// provider gave; only then take the book lock again, take a record and link
// it. A free unlinks under the lock of the block's book, so whichever thread
// unlinks a block is the one that calls the provider: exactly once.
#include <algorithm>
#include <cstdio>
#include <cstddef>
#include <cstring>

#include "core/irql.hpp"
#include "core/ops_provider.hpp"
#include "core/runtime.hpp"

namespace ndisshm::core {
namespace {

constexpr size_t kQuarantine = 4096;
constexpr const char* kAlloc = "NdisAllocateSharedMemory";
constexpr const char* kFree = "NdisFreeSharedMemory";

// Writes the provider's ranges into the caller's SG buffer, never past its
// capacity, and counts how many there were.
class BufferSink final : public providers::SgSink {
public:
    BufferSink(PSCATTER_GATHER_LIST list, ULONG capacity) : list_(list), capacity_(capacity) {}
    void add(uint64_t address, uint64_t length) override {
        used_ = true;
        if (count_ < capacity_) {
            SCATTER_GATHER_ELEMENT& e = list_->Elements[count_];
            e.Address.QuadPart = static_cast<LONGLONG>(address);
            e.Length = static_cast<ULONG>(length);
            e.Reserved = 0;
        }
        ++count_;
    }
    bool used() const { return used_; }
    ULONG count() const { return count_; }

private:
    PSCATTER_GATHER_LIST list_;
    ULONG capacity_;
    ULONG count_ = 0;
    bool used_ = false;
};

NDIS_STATUS to_ndis(providers::ProviderStatus s, bool native) {
    if (native) return OpsProvider::last_status();
    switch (s) {
        case providers::ProviderStatus::Success: return NDIS_STATUS_SUCCESS;
        case providers::ProviderStatus::Resources: return NDIS_STATUS_RESOURCES;
        case providers::ProviderStatus::InvalidParameter: return NDIS_STATUS_INVALID_PARAMETER;
        case providers::ProviderStatus::BufferTooShort: return NDIS_STATUS_BUFFER_TOO_SHORT;
        case providers::ProviderStatus::Failure: break;
    }
    return NDIS_STATUS_FAILURE;
}

// Usage as the caller stored it: any 32-bit value, read without going
// through the C++ enum type (a value outside it would be undefined there).
uint32_t raw_usage(const NDIS_SHARED_MEMORY_PARAMETERS* p) {
    uint32_t u;
    std::memcpy(&u, reinterpret_cast<const unsigned char*>(p) + offsetof(NDIS_SHARED_MEMORY_PARAMETERS, Usage),
                sizeof(u));
    return u;
}

std::string hexnum(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

NDIS_STATUS Runtime::validate(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, bool* readable,
                              ndisshm_violation_kind* kind, std::string* why) {
    *kind = NDISSHM_VIOLATION_BAD_PARAMETERS;
    *readable = false;
    if (p == nullptr) return *why = "SharedMemoryParameters is NULL", NDIS_STATUS_INVALID_PARAMETER;
    if (out == nullptr) return *why = "pAllocationHandle is NULL", NDIS_STATUS_INVALID_PARAMETER;
    const NDIS_OBJECT_HEADER& h = p->Header;
    if (h.Type != NDIS_OBJECT_TYPE_DEFAULT)
        return *why = "Header.Type is " + hexnum(h.Type) + ", expected NDIS_OBJECT_TYPE_DEFAULT (0x80)",
               NDIS_STATUS_INVALID_PARAMETER;
    if (h.Revision == NDIS_SHARED_MEMORY_PARAMETERS_REVISION_1) {
        if (h.Size < NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1)
            return *why = "Header.Size is " + std::to_string(h.Size) + ", revision 1 needs at least " +
                          std::to_string(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1),
                   NDIS_STATUS_INVALID_PARAMETER;
    } else if (h.Revision == NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2) {
        if (h.Size < NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2)
            return *why = "Header.Size is " + std::to_string(h.Size) + ", revision 2 needs at least " +
                          std::to_string(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2),
                   NDIS_STATUS_INVALID_PARAMETER;
    } else {
        return *why = "Header.Revision is " + std::to_string(h.Revision) + ", expected 1 or 2",
               NDIS_STATUS_INVALID_PARAMETER;
    }
    *readable = true;
    if ((p->Flags & ~static_cast<ULONG>(NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS)) != 0)
        return *why = "Flags " + hexnum(p->Flags) + " has bits other than NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS",
               NDIS_STATUS_INVALID_PARAMETER;
    if (raw_usage(p) >= NdisSharedMemoryUsageMax)
        return *why = "Usage " + std::to_string(raw_usage(p)) + " is not an NDIS_SHARED_MEMORY_USAGE",
               NDIS_STATUS_INVALID_PARAMETER;
    if (p->Length == 0 || p->Length > config_.max_block_bytes) {
        *kind = NDISSHM_VIOLATION_BAD_LENGTH;
        return *why = "Length " + std::to_string(p->Length) + " is outside 1.." + std::to_string(config_.max_block_bytes),
               NDIS_STATUS_INVALID_LENGTH;
    }
    if (p->SGListBuffer == nullptr) return *why = "SGListBuffer is NULL", NDIS_STATUS_INVALID_PARAMETER;
    if (p->SGListBufferLength < NDISSHM_SG_LIST_BYTES(1)) {
        // Every block needs at least one element; say so where the caller
        // gave room for the count.
        if (p->SGListBufferLength >= NDISSHM_SG_LIST_HEADER_BYTES) p->SGListBuffer->NumberOfElements = 1;
        *kind = NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT;
        return *why = "SGListBufferLength " + std::to_string(p->SGListBufferLength) +
                      " holds no element; at least 1 is needed (" + std::to_string(NDISSHM_SG_LIST_BYTES(1)) +
                      " bytes)",
               NDIS_STATUS_BUFFER_TOO_SHORT;
    }
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::allocate(Adapter* adapter, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, CallSite site) {
    const ViolationSite vsite{site.file, site.line};
    ndisshm_violation_kind kind{};
    std::string why;
    bool readable = false;
    NDIS_STATUS status = NDIS_STATUS_SUCCESS;
    // The book of the CPU this call starts on: everything the call counts is counted there, and the
    // block it makes stays there.
    const unsigned s = book_here(adapter->book_count);
    Book& book = adapter->books[s];
    // p->Length counted in pending_bytes of this book, for the adapter and for
    // admitted_queue. free_queue waits for a queue's pending bytes to go, so
    // admitted_queue lives while this is true.
    bool admitted = false;
    Queue* admitted_queue = nullptr;
    auto fail = [&](NDIS_STATUS st, bool report, ndisshm_violation_kind k, const std::string& msg) {
        {
            std::lock_guard lock(book.mu);
            if (admitted) {
                const uint64_t len = p->Length;
                book.pending_bytes -= len;
                adapter->cap.uncharge(len);
                admitted_queue->books[s].pending_bytes -= len;
                admitted_queue->cap.uncharge(len);
            }
            ++book.total.failures;
            if (readable && p->PreferredNode < NDISSHM_MAX_NODES) ++book.by_node[p->PreferredNode].failures;
            if (readable && raw_usage(p) < NdisSharedMemoryUsageMax) ++book.by_usage[raw_usage(p)].failures;
            if (readable) {
                auto it = adapter->queues.find(p->QueueId);
                if (it != adapter->queues.end()) ++it->second->books[s].stats.failures;
            }
        }
        if (report) verifier_.report(k, kAlloc, adapter, nullptr, vsite, msg + " on " + describe(adapter));
        return st;
    };
    if (verifier_.enabled() && current_irql() != PASSIVE_LEVEL) {
        // Counted as a failure like any refusal, by usage and queue where the
        // header says the structure holds them.
        readable = p != nullptr && p->Header.Type == NDIS_OBJECT_TYPE_DEFAULT &&
                   ((p->Header.Revision == NDIS_SHARED_MEMORY_PARAMETERS_REVISION_1 &&
                     p->Header.Size >= NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1) ||
                    (p->Header.Revision == NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2 &&
                     p->Header.Size >= NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2));
        return fail(NDIS_STATUS_FAILURE, true, NDISSHM_VIOLATION_IRQL,
                    "called at IRQL " + std::to_string(current_irql()) + "; it must be called at PASSIVE_LEVEL");
    }
    status = validate(p, out, &readable, &kind, &why);
    if (status != NDIS_STATUS_SUCCESS) return fail(status, true, kind, why);

    Binding* binding;
    providers::Provider* provider;
    {
        std::unique_lock lock(book.mu);
        auto q = adapter->queues.find(p->QueueId);
        if (q == adapter->queues.end() || q->second->closing) {
            lock.unlock();
            return fail(NDIS_STATUS_INVALID_PARAMETER, true, NDISSHM_VIOLATION_BAD_PARAMETERS,
                        "QueueId " + std::to_string(p->QueueId) + " is not a receive queue");
        }
        if (!q->second->complete) {
            lock.unlock();
            return fail(NDIS_STATUS_INVALID_PARAMETER, true, NDISSHM_VIOLATION_BAD_PARAMETERS,
                        "queue " + std::to_string(p->QueueId) +
                            " is allocated but its allocation has not completed; shared memory for a queue is "
                            "allocated after OID_RECEIVE_FILTER_QUEUE_ALLOCATION_COMPLETE");
        }
        // Caps count what is outstanding plus what other threads are being
        // given right now, so two racing calls cannot both slip under one.
        Queue& queue = *q->second;
        const uint64_t len = p->Length;
        const char* over = nullptr;
        uint64_t limit = 0, used = 0;
        if (!adapter->cap.admit(len, &used)) {
            over = "adapter";
            limit = adapter->cap.limit;
        } else if (!queue.cap.admit(len, &used)) {
            adapter->cap.uncharge(len);
            over = "queue";
            limit = queue.cap.limit;
        }
        if (over != nullptr) {
            lock.unlock();
            verifier_.log(kAlloc, "NDIS_STATUS_RESOURCES: " + std::to_string(len) + " bytes for queue " +
                                      std::to_string(p->QueueId) + " would exceed the " + over + " limit of " +
                                      std::to_string(limit) + " bytes (" + std::to_string(used) +
                                      " outstanding) on " + describe(adapter));
            return fail(NDIS_STATUS_RESOURCES, false, kind, {});
        }
        book.pending_bytes += len;
        queue.books[s].pending_bytes += len;
        admitted = true;
        admitted_queue = &queue;
        binding = adapter->provider_binding;
        if (binding != nullptr) binding->enter(s);
        provider = binding != nullptr ? binding->provider.get() : default_provider_.get();
    }
    const bool native = binding != nullptr && binding->native;
    static const std::string kDefaultName = "default";
    const std::string& provider_name = binding != nullptr ? binding->name : kDefaultName;
    auto done_in_flight = [&] {
        if (binding != nullptr) binding->leave(s);
    };

    p->SharedMemoryHandle = nullptr;
    p->VirtualAddress = nullptr;
    *out = nullptr;
    const ULONG capacity = NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength);
    BufferSink sink(p->SGListBuffer, capacity);
    providers::Request req;
    req.length = p->Length;
    req.contiguous = (p->Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) != 0;
    req.queue_id = p->QueueId;
    req.usage = static_cast<uint32_t>(p->Usage);
    req.preferred_node = p->PreferredNode;
    req.vport_id = p->Header.Revision >= NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2 ? p->VPortId : 0;
    req.native = p;
    providers::Grant grant;
    providers::ProviderStatus ps = provider->allocate(req, sink, grant);

    if (ps != providers::ProviderStatus::Success) {
        done_in_flight();
        status = to_ndis(ps, native);
        if (status >= 0) {
            // Success-class codes other than SUCCESS (PENDING above all) have
            // no meaning for a synchronous call: the caller gets FAILURE.
            return fail(NDIS_STATUS_FAILURE, true, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT,
                        "provider '" + provider_name + "' returned " + ndisshm_status_name(status) +
                            " from its synchronous allocate handler");
        }
        if (ps == providers::ProviderStatus::BufferTooShort)
            return fail(status, true, NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT,
                        "provider '" + provider_name + "' needs " + std::to_string(p->SGListBuffer->NumberOfElements) +
                            " SG elements, SGListBuffer holds " + std::to_string(capacity));
        if (!grant.error.empty() && ps == providers::ProviderStatus::InvalidParameter)
            return fail(status, true, NDISSHM_VIOLATION_BAD_PARAMETERS, grant.error);
        if (!grant.error.empty()) verifier_.log(kAlloc, ndisshm_status_name(status) + (": " + grant.error));
        return fail(status, false, kind, {});
    }
    if (grant.token == 0) {
        done_in_flight();
        return fail(NDIS_STATUS_FAILURE, true, NDISSHM_VIOLATION_PROVIDER_NO_CONTEXT,
                    "provider '" + provider_name + "' returned NDIS_STATUS_SUCCESS without a context; the block "
                    "cannot be freed and is lost to the provider");
    }
    // Check what the provider gave before anything is recorded.
    std::string bad;
    ULONG count = sink.used() ? sink.count() : p->SGListBuffer->NumberOfElements;
    if (sink.used() && count > capacity) {
        p->SGListBuffer->NumberOfElements = count;
        provider->free(grant.token);
        done_in_flight();
        return fail(NDIS_STATUS_BUFFER_TOO_SHORT, true, NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT,
                    "the block needs " + std::to_string(count) + " SG elements, SGListBuffer holds " +
                        std::to_string(capacity));
    }
    if (sink.used()) p->SGListBuffer->NumberOfElements = count;
    uint64_t described = 0;
    if (p->Length != req.length)
        bad = "it changed Length from " + std::to_string(req.length) + " to " + std::to_string(p->Length);
    else if (grant.virtual_address == nullptr) bad = "VirtualAddress is NULL";
    else if (count == 0 || count > capacity)
        bad = "SG list has " + std::to_string(count) + " elements, buffer holds " + std::to_string(capacity);
    else if (req.contiguous && count != 1)
        bad = "a CONTIGUOUS block is described by " + std::to_string(count) + " SG elements, not 1";
    else {
        for (ULONG i = 0; i < count; ++i) described += p->SGListBuffer->Elements[i].Length;
        if (described < p->Length)
            bad = "SG list describes " + std::to_string(described) + " bytes of the " + std::to_string(p->Length) +
                  " asked for";
    }
    if (!bad.empty()) {
        provider->free(grant.token);
        done_in_flight();
        p->VirtualAddress = nullptr;
        p->Length = static_cast<ULONG>(req.length);
        return fail(NDIS_STATUS_FAILURE, true, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT,
                    "provider '" + provider_name + "' returned success but " + bad + "; block freed back to it");
    }
    p->VirtualAddress = grant.virtual_address;

    // Links the block in this book. Without every lock (`all` false) it only
    // goes ahead while each level stays within this book's allowance and a
    // record is at hand; otherwise it asks to be run again with them all.
    enum class Link { Done, Refused, NeedAll };
    Block* b = nullptr;
    const uint64_t len = p->Length;
    const uint32_t usage = static_cast<uint32_t>(p->Usage);
    const int node = grant.node >= 0 && grant.node < NDISSHM_MAX_NODES ? grant.node : -1;
    auto link = [&](bool all) {
        // The queue admitted: free_queue waits for its pending bytes, so it is still there, if closing.
        Queue* queue = admitted_queue;
        if (queue->closing) return Link::Refused;
        QueueBook& qbook = queue->books[s];
        if (!all && (!book.total.fits(len) || !book.by_usage[usage].fits(len) ||
                     (node >= 0 && !book.by_node[node].fits(len)) || !qbook.stats.fits(len)))
            return Link::NeedAll;
        b = take_record(adapter, s, all);
        if (b == nullptr) return all ? Link::Refused : Link::NeedAll;
        b->binding = binding;
        b->queue = queue;
        b->provider = provider;
        b->token = grant.token;
        std::memcpy(&b->params, p, std::min<size_t>(p->Header.Size, sizeof(b->params)));
        b->params.SharedMemoryHandle = b;
        b->first_address = static_cast<uint64_t>(p->SGListBuffer->Elements[0].Address.QuadPart);
        b->node = grant.node;
        b->serial = ++book.serial;
        b->file = site.file;
        b->line = site.line;
        provider_name.copy(b->provider_name, sizeof(b->provider_name) - 1);
        b->provider_name[std::min(provider_name.size(), sizeof(b->provider_name) - 1)] = '\0';
        book.blocks.push_back(b);
        qbook.blocks.push_back(b);
        if (binding != nullptr) binding->books[s].blocks.push_back(b);
        book.pending_bytes -= len;
        qbook.pending_bytes -= len;
        admitted = false;
        book.total.on_allocate(len);
        book.by_usage[usage].on_allocate(len);
        if (node >= 0) book.by_node[node].on_allocate(len);
        qbook.stats.on_allocate(len);
        if (all) {
            const unsigned n = adapter->book_count;
            Book* books = adapter->books.get();
            settle_level(n, s, adapter->total_peak, [&](unsigned i) -> Tally& { return books[i].total; });
            settle_level(n, s, adapter->usage_peak[usage],
                         [&](unsigned i) -> Tally& { return books[i].by_usage[usage]; });
            if (node >= 0)
                settle_level(n, s, adapter->node_peak[node],
                             [&](unsigned i) -> Tally& { return books[i].by_node[node]; });
            settle_level(n, s, queue->peak, [&](unsigned i) -> Tally& { return queue->books[i].stats; });
        }
        b->state.store(BlockState::Live, std::memory_order_release);
        return Link::Done;
    };
    Link linked;
    {
        std::unique_lock lock(book.mu);
        linked = link(false);
        if (linked == Link::NeedAll) {
            lock.unlock();
            AllBooks all(adapter);
            linked = link(true);
        }
    }
    if (linked != Link::Done) {
        provider->free(grant.token);
        done_in_flight();
        p->VirtualAddress = nullptr;
        verifier_.log(kAlloc, "NDIS_STATUS_RESOURCES: no book-keeping record left (max_blocks " +
                                  std::to_string(table_.capacity()) + ") or queue " + std::to_string(p->QueueId) +
                                  " was freed during the call, on " + describe(adapter));
        return fail(NDIS_STATUS_RESOURCES, false, kind, {});
    }
    provider->committed(grant.token, b);
    done_in_flight();
    p->SharedMemoryHandle = b;
    *out = b;
    return NDIS_STATUS_SUCCESS;
}

void Runtime::free(Adapter* adapter, NDIS_HANDLE handle) {
    if (verifier_.enabled() && current_irql() != PASSIVE_LEVEL) {
        verifier_.report(NDISSHM_VIOLATION_IRQL, kFree, adapter, handle, {},
                         "called at IRQL " + std::to_string(current_irql()) + " on " + describe(adapter) +
                             "; it must be called at PASSIVE_LEVEL; the block was not freed");
        return;
    }
    Block* b = table_.find(handle);
    if (b == nullptr) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%p", handle);
        verifier_.report(NDISSHM_VIOLATION_GARBAGE_HANDLE, kFree, adapter, handle, {},
                         std::string("handle ") + buf + " was never returned by NdisAllocateSharedMemory (" +
                             describe(adapter) + "); nothing freed");
        return;
    }
    // A record keeps its adapter and book for life (records are only reused
    // by the book that freed them), so these reads need no lock.
    Adapter* owner = b->adapter.load(std::memory_order_acquire);
    const unsigned bk = b->book.load(std::memory_order_acquire);
    if (owner != adapter) {
        std::string words = "handle " + hexnum(reinterpret_cast<uint64_t>(handle));
        ViolationSite vs;
        if (owner != nullptr && find_adapter(owner) == owner && bk < owner->book_count) {
            std::lock_guard lock(owner->books[bk].mu);
            if (b->adapter.load() == owner && b->book.load() == bk && b->state.load() == BlockState::Live) {
                words = describe(b);
                vs = {b->file, b->line};
            }
            words += " belongs to " + describe(owner);
        } else {
            words += " belongs to an adapter that no longer exists";
        }
        verifier_.report(NDISSHM_VIOLATION_WRONG_ADAPTER, kFree, adapter, handle, vs,
                         words + ", not to " + describe(adapter) + "; nothing freed");
        return;
    }
    providers::Provider* provider;
    uint64_t token;
    Binding* binding;
    {
        std::unique_lock lock(adapter->books[bk < adapter->book_count ? bk : 0].mu);
        BlockState st = b->state.load(std::memory_order_acquire);
        if (b->adapter.load(std::memory_order_relaxed) != adapter || b->book.load(std::memory_order_relaxed) != bk)
            st = BlockState::Unused;  // moved meanwhile
        if (st != BlockState::Live) {
            std::string what = st == BlockState::Unused ? "handle is not a live block"
                                                        : "double free of " + describe(b);
            ViolationSite vs{b->file, b->line};
            lock.unlock();
            verifier_.report(st == BlockState::Unused ? NDISSHM_VIOLATION_GARBAGE_HANDLE : NDISSHM_VIOLATION_DOUBLE_FREE,
                             kFree, adapter, handle, vs, what + " on " + describe(adapter) + "; nothing freed");
            return;
        }
        binding = unlink(b);
        provider = b->provider;
        token = b->token;
        // The record may go back now: what the free needs is copied out, and
        // the Freed state already makes any second free of it a report.
        release_record(adapter, b);
    }
    provider->free(token);
    if (binding != nullptr) binding->leave(bk);
}

Block* Runtime::take_record(Adapter* adapter, unsigned book, bool all) {
    std::deque<Block*>& quarantine = adapter->books[book].quarantine;
    Block* b = nullptr;
    if (quarantine.size() > kQuarantine) {
        b = quarantine.front();
        quarantine.pop_front();
    } else if ((b = table_.carve()) == nullptr) {
        std::lock_guard lock(adapters_mu_);
        if (!spare_.empty()) {
            b = spare_.back();
            spare_.pop_back();
        }
    }
    if (b == nullptr && !quarantine.empty()) {
        b = quarantine.front();
        quarantine.pop_front();
    }
    // The table is full: records other books have freed are still records.
    for (unsigned i = 0; b == nullptr && all && i < adapter->book_count; ++i) {
        std::deque<Block*>& other = adapter->books[i].quarantine;
        if (!other.empty()) {
            b = other.front();
            other.pop_front();
        }
    }
    if (b == nullptr) return nullptr;
    b->adapter.store(adapter, std::memory_order_release);
    b->book.store(book, std::memory_order_release);
    b->adapter_link = b->binding_link = b->queue_link = {};
    return b;
}

void Runtime::release_record(Adapter* adapter, Block* b) {
    b->state.store(BlockState::Freed, std::memory_order_release);
    adapter->books[b->book.load(std::memory_order_relaxed)].quarantine.push_back(b);
}

Binding* Runtime::unlink(Block* b) {
    Adapter* a = b->adapter.load(std::memory_order_relaxed);
    const unsigned bk = b->book.load(std::memory_order_relaxed);
    Book& book = a->books[bk];
    QueueBook& qbook = b->queue->books[bk];
    const uint64_t len = b->params.Length;
    // The provider's free is about to be called: its binding must stay.
    if (b->binding != nullptr) b->binding->enter(bk);
    book.blocks.erase(b);
    qbook.blocks.erase(b);
    if (b->binding != nullptr) b->binding->books[bk].blocks.erase(b);
    book.total.on_free(len);
    book.by_usage[b->params.Usage].on_free(len);
    if (b->node >= 0 && b->node < NDISSHM_MAX_NODES) book.by_node[b->node].on_free(len);
    qbook.stats.on_free(len);
    a->cap.uncharge(len);
    b->queue->cap.uncharge(len);
    b->state.store(BlockState::Freeing, std::memory_order_release);
    return b->binding;
}

void Runtime::reclaim(Adapter* adapter, std::vector<Block*>& blocks, ndisshm_violation_kind kind, const char* call,
                      const std::string& why) {
    std::vector<std::pair<Block*, std::string>> mine;
    {
        AllBooks all(adapter);
        for (Block* b : blocks) {
            // Another thread may have freed it since it was collected.
            if (b->state.load(std::memory_order_acquire) != BlockState::Live) continue;
            mine.emplace_back(b, describe(b));
            unlink(b);
        }
    }
    for (auto& [b, words] : mine) {
        verifier_.report(kind, call, adapter, b, {b->file, b->line}, words + " " + why);
        b->provider->free(b->token);
        Binding* binding = b->binding;
        const unsigned bk = b->book.load(std::memory_order_relaxed);
        std::lock_guard lock(adapter->books[bk].mu);
        release_record(adapter, b);
        if (binding != nullptr) binding->leave(bk);
    }
}

}  // namespace ndisshm::core
