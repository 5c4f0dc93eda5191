// The two hot paths: NdisAllocateSharedMemory and NdisFreeSharedMemory.
//
// Order of work, chosen so a bad call changes nothing: check the caller (IRQL,
// parameters) without touching the books; admit it (queue, caps) under this
// CPU's book lock; call the provider with no lock held; check what the
// provider gave; only then take the book lock again, take a record and link
// it. A free unlinks under the lock of the block's book, so whichever thread
// unlinks a block is the one that calls the provider: exactly once.
//
// One exception: NDIS's own memory, the default provider, is called with the
// book lock that admitted the call still held, and link goes on under it. It
// is our code: it never calls back into NDIS and takes only the memory
// layer's locks, which never wait for a book. So a pair has one locked
// instruction fewer (each costs 8-14 ns here, more right after the stores of
// a clear). Everything that reports or refuses lets the lock go first
// (let_go): the verifier's callback is the user's code.
//
// Past ~600 lines on purpose: both paths and their one undo path (refuse)
// read together, since a change to one order of work must change the others.
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

uint32_t raw_usage(const NDIS_SHARED_MEMORY_PARAMETERS* p) { return core::raw_usage(*p); }

// How much of the caller's structure NDIS reads: revision 1's fields always,
// VPortId too when the Header says revision 2 and is big enough for it.
size_t params_bytes(const NDIS_SHARED_MEMORY_PARAMETERS* p) {
    return p->Header.Revision >= NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2 &&
                   p->Header.Size >= NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2
               ? NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2
               : NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1;
}

std::string hexnum(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

// What ndis.sys checks of the parameters (spec section 7): not the Header,
// not Usage (the provider gets it as it is), of Flags only CONTIGUOUS. What
// Windows lets through but the documentation forbids goes into `lenient`,
// one line each, for the verifier's findings; the call goes ahead.
NDIS_STATUS Runtime::validate(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, bool* readable,
                              ndisshm_violation_kind* kind, std::string* why, std::vector<std::string>* lenient) {
    *kind = NDISSHM_VIOLATION_BAD_PARAMETERS;
    *readable = false;
    if (p == nullptr) return *why = "SharedMemoryParameters is NULL", NDIS_STATUS_INVALID_PARAMETER;
    if (out == nullptr) return *why = "pAllocationHandle is NULL", NDIS_STATUS_INVALID_PARAMETER;
    *readable = true;
    // One finding for the Header, however many of its fields are off.
    const NDIS_OBJECT_HEADER& h = p->Header;
    std::string header;
    if (h.Type != NDIS_OBJECT_TYPE_DEFAULT) header += "Type " + hexnum(h.Type) + " is not NDIS_OBJECT_TYPE_DEFAULT (0x80)";
    const uint32_t needed = h.Revision == NDIS_SHARED_MEMORY_PARAMETERS_REVISION_1   ? NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1
                            : h.Revision == NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2 ? NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2
                                                                                     : 0;
    if (needed == 0)
        header += std::string(header.empty() ? "" : ", ") + "Revision " + std::to_string(h.Revision) + " is not 1 or 2";
    else if (h.Size < needed)
        header += std::string(header.empty() ? "" : ", ") + "Size " + std::to_string(h.Size) + " is below revision " +
                  std::to_string(h.Revision) + "'s " + std::to_string(needed);
    if (!header.empty()) lenient->push_back("Header." + header + " (ndis.sys does not check the Header)");
    if ((p->Flags & ~static_cast<ULONG>(NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS)) != 0)
        lenient->push_back("Flags " + hexnum(p->Flags) +
                           " has bits other than NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS (Windows ignores them)");
    if (raw_usage(p) >= NdisSharedMemoryUsageMax)
        lenient->push_back("Usage " + std::to_string(raw_usage(p)) +
                           " is not an NDIS_SHARED_MEMORY_USAGE (Windows hands it to the provider as it is)");
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

// One NdisAllocateSharedMemory call as it goes through its steps, so that
// whichever step refuses, refuse() knows exactly what to give back.
struct Runtime::AllocCall {
    AllocCall(Adapter* a, PNDIS_SHARED_MEMORY_PARAMETERS params, PNDIS_HANDLE handle_out, CallSite call_site,
              unsigned book_index)
        : adapter(a), p(params), out(handle_out), site(call_site), s(book_index), book(a->books[book_index]) {}
    Adapter* adapter;
    PNDIS_SHARED_MEMORY_PARAMETERS p;
    PNDIS_HANDLE out;
    CallSite site;
    // The book of the CPU this call starts on: everything the call counts is
    // counted there, and the block it makes stays there.
    unsigned s;
    Book& book;
    bool readable = false;  // p's fields can be read (for failure accounting)
    ndisshm_violation_kind kind{};
    // Admitted: `len` counted in pending_bytes of this book, for the adapter
    // and for `queue`. free_queue waits for a queue's pending bytes to go, so
    // `queue` lives while this is true.
    bool admitted = false;
    uint64_t len = 0;
    Queue* queue = nullptr;
    Binding* binding = nullptr;  // nullptr: the default provider
    providers::Provider* provider = nullptr;
    bool in_flight = false;  // a call counted on `binding`
    providers::Request req;
    providers::Grant grant;
    bool granted = false;  // the provider holds a block for grant.token
    ULONG capacity = 0;
    Block* block = nullptr;
    // The admitting book lock, still held while the default provider serves
    // the call (see the file comment); released by let_go at the latest.
    std::unique_lock<CpuLock> held;

    const std::string& provider_name() const {
        static const std::string kDefaultName = "default";
        return binding != nullptr ? binding->name : kDefaultName;
    }
};

// Gives back the book lock admit kept for the default provider, if it still holds it.
void Runtime::let_go(AllocCall& c) {
    if (c.held.owns_lock()) c.held.unlock();
}

// The one undo path: gives back what the steps so far took (the provider's
// block, the call counted on its binding, the admitted bytes), counts the
// failure and reports it.
NDIS_STATUS Runtime::refuse(AllocCall& c, NDIS_STATUS status, bool report, ndisshm_violation_kind kind,
                            const std::string& message) {
    let_go(c);
    PNDIS_SHARED_MEMORY_PARAMETERS p = c.p;
    if (c.granted) {
        c.provider->free(c.grant.token);
        p->VirtualAddress = nullptr;
        p->Length = static_cast<ULONG>(c.req.length);
    }
    if (c.in_flight) c.binding->leave(c.s);
    {
        std::lock_guard lock(c.book.mu);
        if (c.admitted) {
            c.book.pending_bytes -= c.len;
            c.adapter->cap.uncharge(c.len);
            c.queue->books[c.s].pending_bytes -= c.len;
            c.queue->cap.uncharge(c.len);
        }
        ++c.book.total.failures;
        if (c.readable && p->PreferredNode < NDISSHM_MAX_NODES) ++c.book.by_node[p->PreferredNode].failures;
        if (c.readable) ++c.book.by_usage[usage_slot(raw_usage(p))].failures;
        if (c.readable) {
            if (Queue* q = c.adapter->queues.find(p->QueueId)) ++q->books[c.s].stats.failures;
        }
    }
    if (report)
        verifier_.report(kind, kAlloc, c.adapter, nullptr, {c.site.file, c.site.line},
                         message + " on " + describe(c.adapter));
    return status;
}

NDIS_STATUS Runtime::allocate(Adapter* adapter, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, CallSite site) {
    const unsigned s = book_here(adapter->book_count);
    AllocCall c(adapter, p, out, site, s);
    NDIS_STATUS status = admit(c);
    if (status == NDIS_STATUS_SUCCESS) status = ask_provider(c);
    if (status == NDIS_STATUS_SUCCESS) status = check_grant(c);
    if (status == NDIS_STATUS_SUCCESS) status = link(c);
    return status;
}

// Step 1: the caller (IRQL, parameters) without touching the books, then the
// queue and the caps under this CPU's book lock, and the provider serving the
// adapter now, with the call counted on its binding.
NDIS_STATUS Runtime::admit(AllocCall& c) {
    PNDIS_SHARED_MEMORY_PARAMETERS p = c.p;
    if (verifier_.enabled() && current_irql() != PASSIVE_LEVEL) [[unlikely]] {
        // Counted as a failure like any refusal, by usage and queue where the
        // header says the structure holds them.
        c.readable = p != nullptr;
        return refuse(c, NDIS_STATUS_FAILURE, true, NDISSHM_VIOLATION_IRQL,
                      "called at IRQL " + std::to_string(current_irql()) + "; it must be called at PASSIVE_LEVEL");
    }
    std::string why;
    std::vector<std::string> lenient;
    const NDIS_STATUS status = validate(p, c.out, &c.readable, &c.kind, &why, &lenient);
    if (status != NDIS_STATUS_SUCCESS) [[unlikely]]
        return refuse(c, status, true, c.kind, why);
    for (const std::string& what : lenient) [[unlikely]]
        verifier_.report(NDISSHM_VIOLATION_LENIENT, kAlloc, c.adapter, nullptr, {c.site.file, c.site.line},
                         what + "; accepted, as Windows does, on " + describe(c.adapter));

    std::unique_lock lock(c.book.mu);
    Queue* const q = c.adapter->queues.find(p->QueueId);
    if (q == nullptr || q->closing) [[unlikely]] {
        lock.unlock();
        return refuse(c, NDIS_STATUS_INVALID_PARAMETER, true, NDISSHM_VIOLATION_BAD_PARAMETERS,
                      "QueueId " + std::to_string(p->QueueId) + " is not a receive queue");
    }
    if (!q->complete) [[unlikely]] {
        lock.unlock();
        return refuse(c, NDIS_STATUS_INVALID_PARAMETER, true, NDISSHM_VIOLATION_BAD_PARAMETERS,
                      "queue " + std::to_string(p->QueueId) +
                          " is allocated but its allocation has not completed; shared memory for a queue is "
                          "allocated after OID_RECEIVE_FILTER_QUEUE_ALLOCATION_COMPLETE");
    }
    // Caps count what is outstanding plus what other threads are being given
    // right now, so two racing calls cannot both slip under one.
    Queue& queue = *q;
    const uint64_t len = p->Length;
    const char* over = nullptr;
    uint64_t limit = 0, used = 0;
    if (!c.adapter->cap.admit(len, &used)) {
        over = "adapter";
        limit = c.adapter->cap.limit;
    } else if (!queue.cap.admit(len, &used)) {
        c.adapter->cap.uncharge(len);
        over = "queue";
        limit = queue.cap.limit;
    }
    if (over != nullptr) [[unlikely]] {
        lock.unlock();
        verifier_.log(kAlloc, "NDIS_STATUS_RESOURCES: " + std::to_string(len) + " bytes for queue " +
                                  std::to_string(p->QueueId) + " would exceed the " + over + " limit of " +
                                  std::to_string(limit) + " bytes (" + std::to_string(used) + " outstanding) on " +
                                  describe(c.adapter));
        return refuse(c, NDIS_STATUS_RESOURCES, false, c.kind, {});
    }
    c.book.pending_bytes += len;
    queue.books[c.s].pending_bytes += len;
    c.admitted = true;
    c.len = len;
    c.queue = &queue;
    c.binding = serving(c.adapter, &queue);
    if (c.binding != nullptr) {
        c.binding->enter(c.s);
        c.in_flight = true;
    }
    c.provider = c.binding != nullptr ? c.binding->provider.get() : default_provider_.get();
    if (c.binding == nullptr) c.held = std::move(lock);
    return NDIS_STATUS_SUCCESS;
}

// Step 2: the provider, with no lock held; its refusal comes back as its status.
NDIS_STATUS Runtime::ask_provider(AllocCall& c) {
    PNDIS_SHARED_MEMORY_PARAMETERS p = c.p;
    p->SharedMemoryHandle = nullptr;
    p->VirtualAddress = nullptr;
    *c.out = nullptr;
    c.capacity = NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength);
    c.req.length = p->Length;
    c.req.contiguous = (p->Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) != 0;
    c.req.queue_id = p->QueueId;
    c.req.usage = raw_usage(p);
    c.req.preferred_node = p->PreferredNode;
    if (c.req.preferred_node != MM_ANY_NODE_OK && c.req.preferred_node >= node_count_) [[unlikely]] {
        // Windows: a node past the last one means any node.
        let_go(c);
        verifier_.report(NDISSHM_VIOLATION_LENIENT, kAlloc, c.adapter, nullptr, {c.site.file, c.site.line},
                         "PreferredNode " + std::to_string(c.req.preferred_node) + " is past the last NUMA node (" +
                             std::to_string(node_count_ - 1) + "); taken as any node, as Windows does, on " +
                             describe(c.adapter));
        c.req.preferred_node = MM_ANY_NODE_OK;
    }
    c.req.vport_id = params_bytes(p) >= NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2 ? p->VPortId : 0;
    c.req.owner = c.adapter->index;
    c.req.native = p;
    BufferSink sink(p->SGListBuffer, c.capacity);
    const providers::ProviderStatus ps = c.provider->allocate(c.req, sink, c.grant);
    if (ps != providers::ProviderStatus::Success) [[unlikely]]
        return provider_refused(c, ps);
    if (c.binding != nullptr && c.binding->native && OpsProvider::last_status() != NDIS_STATUS_SUCCESS) [[unlikely]]
        verifier_.report(NDISSHM_VIOLATION_LENIENT, kAlloc, c.adapter, nullptr, {c.site.file, c.site.line},
                         "provider '" + c.provider_name() + "' returned " +
                             ndisshm_status_name(OpsProvider::last_status()) +
                             " from its synchronous allocate handler; a success-class status is success, as on "
                             "Windows, on " + describe(c.adapter));
    c.granted = c.grant.token != 0;
    if (!c.granted) [[unlikely]]
        return refuse(c, NDIS_STATUS_FAILURE, true, NDISSHM_VIOLATION_PROVIDER_NO_CONTEXT,
                      "provider '" + c.provider_name() + "' returned NDIS_STATUS_SUCCESS without a context; the block "
                      "cannot be freed and is lost to the provider");
    // The ranges it gave the sink, or, for a provider that wrote the SG list
    // itself (NDIS's handlers do), the count it wrote.
    const ULONG count = sink.used() ? sink.count() : p->SGListBuffer->NumberOfElements;
    if (sink.used() && count > c.capacity) [[unlikely]] {
        p->SGListBuffer->NumberOfElements = count;
        return refuse(c, NDIS_STATUS_BUFFER_TOO_SHORT, true, NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT,
                      "the block needs " + std::to_string(count) + " SG elements, SGListBuffer holds " +
                          std::to_string(c.capacity));
    }
    if (sink.used()) p->SGListBuffer->NumberOfElements = count;
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Runtime::provider_refused(AllocCall& c, providers::ProviderStatus ps) {
    let_go(c);
    const bool native = c.binding != nullptr && c.binding->native;
    const NDIS_STATUS status = to_ndis(ps, native);
    const std::string& name = c.provider_name();
    if (ps == providers::ProviderStatus::BufferTooShort)
        return refuse(c, status, true, NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT,
                      "provider '" + name + "' needs " + std::to_string(c.p->SGListBuffer->NumberOfElements) +
                          " SG elements, SGListBuffer holds " + std::to_string(c.capacity));
    if (!c.grant.error.empty() && ps == providers::ProviderStatus::InvalidParameter)
        return refuse(c, status, true, NDISSHM_VIOLATION_BAD_PARAMETERS, c.grant.error);
    if (!c.grant.error.empty()) verifier_.log(kAlloc, ndisshm_status_name(status) + (": " + c.grant.error));
    return refuse(c, status, false, c.kind, {});
}

// Step 3: what the provider gave, before anything is recorded.
NDIS_STATUS Runtime::check_grant(AllocCall& c) {
    PNDIS_SHARED_MEMORY_PARAMETERS p = c.p;
    const ULONG count = p->SGListBuffer->NumberOfElements;
    std::string bad;
    NDIS_STATUS status = NDIS_STATUS_FAILURE;
    uint64_t described = 0;
    if (p->Length != c.req.length)
        bad = "it changed Length from " + std::to_string(c.req.length) + " to " + std::to_string(p->Length);
    else if (c.grant.virtual_address == nullptr)
        bad = "VirtualAddress is NULL";
    else if (count == 0 || count > c.capacity)
        bad = "SG list has " + std::to_string(count) + " elements, buffer holds " + std::to_string(c.capacity);
    else if (c.req.contiguous && count != 1) {
        // ndis.sys frees it through the provider and says RESOURCES.
        bad = "a CONTIGUOUS block is described by " + std::to_string(count) + " SG elements, not 1";
        status = NDIS_STATUS_RESOURCES;
    }
    else {
        for (ULONG i = 0; i < count; ++i) described += p->SGListBuffer->Elements[i].Length;
        if (described < p->Length)
            bad = "SG list describes " + std::to_string(described) + " bytes of the " + std::to_string(p->Length) +
                  " asked for";
    }
    if (!bad.empty()) [[unlikely]]
        return refuse(c, status, true, NDISSHM_VIOLATION_PROVIDER_BAD_RESULT,
                      "provider '" + c.provider_name() + "' returned success but " + bad + "; block freed back to it");
    p->VirtualAddress = c.grant.virtual_address;
    return NDIS_STATUS_SUCCESS;
}

// Links the block in the call's book. Without every lock (`all` false) it
// only goes ahead while each level stays within this book's allowance and a
// record is at hand; otherwise it asks to be run again with them all.
Runtime::Link Runtime::link_in_book(AllocCall& c, bool all) {
    PNDIS_SHARED_MEMORY_PARAMETERS p = c.p;
    Adapter* adapter = c.adapter;
    Book& book = c.book;
    const unsigned s = c.s;
    const uint64_t len = p->Length;
    const uint32_t usage = usage_slot(raw_usage(p));
    const int node = c.grant.node >= 0 && c.grant.node < NDISSHM_MAX_NODES ? c.grant.node : -1;
    // The queue admitted: free_queue waits for its pending bytes, so it is still there, if closing.
    Queue* queue = c.queue;
    if (queue->closing) return Link::Refused;
    QueueBook& qbook = queue->books[s];
    if (!all && (!book.total.fits(len) || !book.by_usage[usage].fits(len) ||
                 (node >= 0 && !book.by_node[node].fits(len)) || !qbook.stats.fits(len)))
        return Link::NeedAll;
    Block* b = take_record(adapter, s, all);
    if (b == nullptr) return all ? Link::Refused : Link::NeedAll;
    b->binding = c.binding;
    b->queue = queue;
    b->provider = c.provider;
    b->token = c.grant.token;
    // As much of the structure as ndis.sys reads: revision 1's fields always
    // (the Header is not checked), VPortId when the Header says revision 2.
    // Two copies of fixed size, not one of params_bytes(p): a length known only
    // at run time made `rep movsq`, whose start-up was 18% of this function.
    constexpr size_t kRev1 = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1;
    constexpr size_t kRev2 = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    std::memcpy(&b->params, p, kRev1);
    if (params_bytes(p) == kRev2)
        std::memcpy(reinterpret_cast<unsigned char*>(&b->params) + kRev1,
                    reinterpret_cast<const unsigned char*>(p) + kRev1, kRev2 - kRev1);
    b->params.SharedMemoryHandle = b;
    b->first_address = static_cast<uint64_t>(p->SGListBuffer->Elements[0].Address.QuadPart);
    b->node = c.grant.node;
    b->serial = ++book.serial;
    b->file = c.site.file;
    b->line = c.site.line;
    const std::string& name = c.provider_name();
    name.copy(b->provider_name, sizeof(b->provider_name) - 1);
    b->provider_name[std::min(name.size(), sizeof(b->provider_name) - 1)] = '\0';
    book.blocks.push_back(b);
    qbook.blocks.push_back(b);
    if (c.binding != nullptr) c.binding->books[s].blocks.push_back(b);
    book.pending_bytes -= len;
    qbook.pending_bytes -= len;
    c.admitted = false;
    book.total.on_allocate(len);
    book.by_usage[usage].on_allocate(len);
    if (node >= 0) book.by_node[node].on_allocate(len);
    qbook.stats.on_allocate(len);
    if (all) {
        const unsigned n = adapter->book_count;
        Book* books = adapter->books.get();
        settle_level(n, s, adapter->total_peak, [&](unsigned i) -> Tally& { return books[i].total; });
        settle_level(n, s, adapter->usage_peak[usage], [&](unsigned i) -> Tally& { return books[i].by_usage[usage]; });
        if (node >= 0)
            settle_level(n, s, adapter->node_peak[node], [&](unsigned i) -> Tally& { return books[i].by_node[node]; });
        settle_level(n, s, queue->peak, [&](unsigned i) -> Tally& { return queue->books[i].stats; });
    }
    b->state.store(BlockState::Live, std::memory_order_release);
    c.block = b;
    return Link::Done;
}

// Step 4: into the books, under this CPU's book lock (or every book's, when a
// level reaches a new peak or the record table is full); then the provider
// learns the SharedMemoryHandle and the caller gets its handle.
NDIS_STATUS Runtime::link(AllocCall& c) {
    Link linked;
    {
        // Still held from admit when the default provider served the call.
        std::unique_lock lock = c.held.owns_lock() ? std::move(c.held) : std::unique_lock(c.book.mu);
        linked = link_in_book(c, false);
        if (linked == Link::NeedAll) [[unlikely]] {
            lock.unlock();
            AllBooks all(c.adapter);
            linked = link_in_book(c, true);
        }
    }
    if (linked != Link::Done) [[unlikely]] {
        verifier_.log(kAlloc, "NDIS_STATUS_RESOURCES: no book-keeping record left (max_blocks " +
                                  std::to_string(table_.capacity()) + ") or queue " + std::to_string(c.p->QueueId) +
                                  " was freed during the call, on " + describe(c.adapter));
        return refuse(c, NDIS_STATUS_RESOURCES, false, c.kind, {});
    }
    c.provider->committed(c.grant.token, c.block);
    if (c.in_flight) c.binding->leave(c.s);
    // NDIS's own memory has no SharedMemoryHandle (spec section 7): only a
    // provider's block is one that packets can name.
    c.p->SharedMemoryHandle = c.binding != nullptr ? c.block : nullptr;
    *c.out = c.block;
    return NDIS_STATUS_SUCCESS;
}

void Runtime::free(Adapter* adapter, NDIS_HANDLE handle) {
    if (handle == nullptr) return;  // ndis.sys: a silent no-op (spec section 7)
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
    book.by_usage[usage_slot(core::raw_usage(b->params))].on_free(len);
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
