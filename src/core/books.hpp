// NDIS's books: adapters, bindings, queues and one record per block.
//
// As ndis.sys does (NDIS_SHARED_MEMORY_BLOCK), each block is linked on three
// lists at once: its adapter's, its provider binding's and its queue's, so a
// queue or binding that goes can find all its blocks in O(its blocks).
//
// Unlike ndis.sys, an adapter's books are kept in several *books* (Book), one
// per CPU: a call writes the book of the CPU it runs on (book_here), under
// that book's own lock, so threads allocating on one adapter do not meet
// on one lock or on one set of counters (measured: with a single lock, two
// threads on one adapter completed fewer 4 KiB pairs than one thread). A block
// stays in the book that allocated it; whoever frees it locks that book.
//
// What is shared by all books (the queue map, the bindings, the caps, the
// peaks) is written only with every book's lock held, in index order (the
// AllBooks guard), and read with any one of them; so a hot path needs one lock,
// and control calls, which are rare, take them all.
//
// Figures stay exact. Counts (blocks, bytes, allocations, ...) are summed over
// the books when read. Peaks use the demarcation protocol: each book may grow a
// level's count up to its *allowance*, and the allowances of a level never add
// up to more than its peak, so while every book stays within its allowance the
// level cannot be at a new peak. A book that would go past its allowance takes
// all the locks, computes the level's true total, raises the peak to it if it
// is higher, and shares what is left below the peak out again. A thread in a
// steady state (free one, allocate one) stays within its allowance.
//
// Caps are exact as well (Cap): while a cap is set, the level's `charged` atomic
// holds its outstanding plus in-flight bytes, and an allocation is admitted
// by compare-and-swap on it. Without a cap nothing shared is written.
//
// Providers are never called with any of these locks held, but one: NDIS's own
// memory (the default provider) runs under the book lock that admitted the
// call (allocate.cpp says why it may).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/cpu_lock.hpp"
#include "core/intrusive_list.hpp"
#include "core/queue_map.hpp"
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>
#include "providers/provider.hpp"

namespace ndisshm::core {

class Runtime;
struct Adapter;
struct Binding;
struct Queue;

// The books' slot of a usage: an unknown value (Windows hands Usage to the
// provider as it is, spec section 7) is counted as Undefined.
inline uint32_t usage_slot(uint32_t usage) {
    return usage < NdisSharedMemoryUsageMax ? usage : static_cast<uint32_t>(NdisSharedMemoryUsageUndefined);
}

// Usage as the caller stored it: any 32-bit value, read as bits (through the
// C enum type a value outside it would be undefined behaviour in C++).
inline uint32_t raw_usage(const NDIS_SHARED_MEMORY_PARAMETERS& p) {
    uint32_t u;
    std::memcpy(&u, reinterpret_cast<const unsigned char*>(&p) + offsetof(NDIS_SHARED_MEMORY_PARAMETERS, Usage),
                sizeof(u));
    return u;
}

// The book a call made now writes, of `books`: the one of the CPU it runs on
// (as the arena's CPU caches do), so threads running at the same time on
// different CPUs never share one. Correctness never depends on it: a thread
// that moves on between two calls merely writes another book.
unsigned book_here(unsigned books);

// One level's counts (an adapter's total, one usage, one node, one queue) in
// one book. Under that book's lock.
struct Tally {
    uint64_t blocks = 0, bytes = 0, allocations = 0, frees = 0, failures = 0;
    // How far this book may take blocks / bytes before the level's peak must
    // be looked at (see the file comment).
    uint64_t allow_blocks = 0, allow_bytes = 0;
    // The most this book has held: what it asks for when allowances are
    // shared out, so a thread that cycles below its own high-water mark is
    // never sent to the slow path again.
    uint64_t high_blocks = 0, high_bytes = 0;

    bool fits(uint64_t length) const { return blocks < allow_blocks && bytes + length <= allow_bytes; }
    void on_allocate(uint64_t length) {
        ++blocks;
        bytes += length;
        ++allocations;
        if (blocks > high_blocks) high_blocks = blocks;
        if (bytes > high_bytes) high_bytes = bytes;
    }
    void on_free(uint64_t length) {
        --blocks;
        bytes -= length;
        ++frees;
    }
};

// A level's peak, over all books: written with every book's lock held.
struct Peak {
    uint64_t blocks = 0, bytes = 0;
};

// Sums a level over its books (all locked) into what the C surface reports.
template <class TallyOf>
ndisshm_usage_stats sum_level(unsigned books, const Peak& peak, TallyOf&& tally_of) {
    ndisshm_usage_stats s{};
    for (unsigned i = 0; i < books; ++i) {
        const Tally& t = tally_of(i);
        s.blocks += t.blocks;
        s.bytes += t.bytes;
        s.allocations += t.allocations;
        s.frees += t.frees;
        s.failures += t.failures;
    }
    s.peak_blocks = peak.blocks;
    s.peak_bytes = peak.bytes;
    return s;
}

// All books locked: raises the level's peak to its true total if that is
// higher, then shares the room below the peak out again. Each book gets its
// own high-water mark when those fit under the peak together (a steady state
// then never comes back here); otherwise each keeps what it holds and the
// caller, the one that needs room, gets all of it.
template <class TallyOf>
void settle_level(unsigned books, unsigned caller, Peak& peak, TallyOf&& tally_of) {
    uint64_t blocks = 0, bytes = 0, want_blocks = 0, want_bytes = 0;
    for (unsigned i = 0; i < books; ++i) {
        const Tally& t = tally_of(i);
        blocks += t.blocks;
        bytes += t.bytes;
        want_blocks += t.high_blocks;
        want_bytes += t.high_bytes;
    }
    if (blocks > peak.blocks) peak.blocks = blocks;
    if (bytes > peak.bytes) peak.bytes = bytes;
    const bool highs_blocks = want_blocks <= peak.blocks, highs_bytes = want_bytes <= peak.bytes;
    for (unsigned i = 0; i < books; ++i) {
        Tally& t = tally_of(i);
        t.allow_blocks = highs_blocks ? t.high_blocks : t.blocks;
        t.allow_bytes = highs_bytes ? t.high_bytes : t.bytes;
    }
    Tally& c = tally_of(caller);
    c.allow_blocks += peak.blocks - (highs_blocks ? want_blocks : blocks);
    c.allow_bytes += peak.bytes - (highs_bytes ? want_bytes : bytes);
}

// A cap on a level's bytes: an adapter's or a queue's. `limit` is written
// with every book locked and read with any one; `charged` (outstanding plus
// in-flight bytes) is kept only while a limit is set.
struct Cap {
    uint64_t limit = 0;  // 0: no cap
    std::atomic<uint64_t> charged{0};

    // Charges `length` if it fits under the limit (always, with no limit);
    // otherwise *used is what is charged now.
    bool admit(uint64_t length, uint64_t* used) {
        if (limit == 0) return true;
        uint64_t now = charged.load(std::memory_order_relaxed);
        do {
            if (now + length > limit) {
                *used = now;
                return false;
            }
        } while (!charged.compare_exchange_weak(now, now + length, std::memory_order_relaxed));
        return true;
    }
    // `length` is outstanding or in flight no more (a book's lock held).
    void uncharge(uint64_t length) {
        if (limit != 0) charged.fetch_sub(length, std::memory_order_relaxed);
    }
    // Every book locked: a new limit, charged from the exact figure of what
    // is outstanding and in flight now.
    void reset(uint64_t new_limit, uint64_t outstanding) {
        limit = new_limit;
        charged.store(outstanding, std::memory_order_relaxed);
    }
};

enum class BlockState : uint32_t { Unused = 0, Live = 1, Freeing = 2, Freed = 3 };

struct Block {
    std::atomic<BlockState> state{BlockState::Unused};
    // Change only when a destroyed adapter's spare records go to another
    // adapter; read without a lock by free(), then checked again under the
    // book's lock.
    std::atomic<Adapter*> adapter{nullptr};
    std::atomic<uint32_t> book{0};
    Binding* binding = nullptr;  // nullptr: the default provider
    Queue* queue = nullptr;
    providers::Provider* provider = nullptr;  // who gets the free
    uint64_t token = 0;                       // the provider's context for this block
    NDIS_SHARED_MEMORY_PARAMETERS params{};   // as returned to the caller
    uint64_t first_address = 0;
    int32_t node = -1;           // where the provider placed it
    uint64_t serial = 0;         // the allocation's number in its book
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

// A queue's part of one book: under that book's lock.
struct alignas(64) QueueBook {
    QueueBlocks blocks;
    Tally stats;
    uint64_t pending_bytes = 0;  // admitted, inside a provider call now
};

struct Queue {
    Queue(NDIS_RECEIVE_QUEUE_ID queue_id, unsigned book_count)
        : id(queue_id), books(new QueueBook[book_count]) {}
    NDIS_RECEIVE_QUEUE_ID id;
    // All books locked to write:
    bool closing = false;  // being freed: no block may be linked to it any more
    bool complete = true;  // allocation completed: shared memory may be allocated for it
    // The binding that allocated the queue (OID_RECEIVE_FILTER_ALLOCATE_QUEUE
    // on Windows): its provider serves the queue. nullptr: the miniport's own
    // queue (queue 0 always), served by the adapter's provider or NDIS.
    Binding* owner = nullptr;
    uint32_t flags = 0;    // NDISSHM_QUEUE_LOOKAHEAD_SPLIT
    uint32_t lookahead_size = 0;
    // Providers that stopped serving the queue while blocks they gave for it
    // were live (another provider took it over): each is told detach_queue
    // when the queue goes, or when its own binding re-registers or goes,
    // whichever comes first, never while one of those blocks is live.
    // All books locked.
    std::vector<providers::Provider*> former;
    Cap cap;
    Peak peak;
    std::unique_ptr<QueueBook[]> books;
};

struct alignas(64) BindingBook {
    BindingBlocks blocks;  // under the book's lock
    // Calls into the binding's provider under way now that were counted in
    // this book: each book's on its own cache line, so that CPUs calling one
    // provider do not bounce one counter between them.
    std::atomic<int> in_flight{0};
};

struct Binding {
    Binding(Adapter* a, std::string n, unsigned books_)
        : adapter(a), name(std::move(n)), book_count(books_), books(new BindingBook[books_]) {}
    Adapter* adapter;
    std::string name;
    std::unique_ptr<providers::Provider> provider;  // set once registered
    bool native = false;  // provider is an OpsProvider: its NDIS status is passed through as is
    // The adapter's own: what a provider registered with the miniport adapter
    // handle rides on (not a handle anyone holds; it goes with the adapter).
    bool adapter_own = false;
    bool retired = false;  // being destroyed: it serves no queue any more (all books locked to write)
    const unsigned book_count;
    std::unique_ptr<BindingBook[]> books;

    // A call into this binding's provider begins / ends, counted in `book`
    // (the same for both): the binding, and its provider, outlive every call
    // counted. Control calls count theirs in book 0.
    void enter(unsigned book) { books[book].in_flight.fetch_add(1, std::memory_order_acq_rel); }
    void leave(unsigned book) { books[book].in_flight.fetch_sub(1, std::memory_order_acq_rel); }
    // Calls under way now. A call that is counted stays counted until it
    // ends, so a zero here, once no new call can begin, means none is left.
    int in_flight() const {
        int n = 0;
        for (unsigned i = 0; i < book_count; ++i) n += books[i].in_flight.load(std::memory_order_acquire);
        return n;
    }
};

// One book of an adapter (see the file comment).
struct alignas(64) Book {
    CpuLock mu;
    AdapterBlocks blocks;
    Tally total;
    Tally by_usage[NdisSharedMemoryUsageMax];
    Tally by_node[NDISSHM_MAX_NODES];
    uint64_t pending_bytes = 0;  // admitted, inside a provider call now
    uint64_t serial = 0;         // allocations ever made in this book: names blocks in reports
    // Freed block records wait here before reuse, so a stale handle freed
    // again is still recognised as a double free for a long while.
    std::deque<Block*> quarantine;
};

struct Adapter {
    Adapter(Runtime* r, std::string n, uint64_t i, unsigned book_count)
        : runtime(r), name(std::move(n)), index(i), book_count(book_count), books(new Book[book_count]) {}
    Runtime* runtime;
    std::string name;
    uint64_t index;
    const unsigned book_count;
    std::unique_ptr<Book[]> books;

    // All books locked to write, any one to read:
    QueueMap<Queue> queues;
    std::vector<Binding*> bindings;  // the bindings created on it (not own_binding)
    // A provider registered with the adapter handle itself rides on this one:
    // it serves queue 0 and every queue no providing binding owns.
    std::unique_ptr<Binding> own_binding;
    Cap cap;
    Peak total_peak;
    Peak usage_peak[NdisSharedMemoryUsageMax];
    Peak node_peak[NDISSHM_MAX_NODES];
};

// Every book of an adapter locked, in index order, for as long as it lives.
class AllBooks {
public:
    explicit AllBooks(Adapter* adapter) : adapter_(adapter) { lock(); }
    ~AllBooks() {
        if (held_) unlock();
    }
    AllBooks(const AllBooks&) = delete;
    AllBooks& operator=(const AllBooks&) = delete;
    void lock() {
        for (unsigned i = 0; i < adapter_->book_count; ++i) adapter_->books[i].mu.lock();
        held_ = true;
    }
    void unlock() {
        for (unsigned i = adapter_->book_count; i-- > 0;) adapter_->books[i].mu.unlock();
        held_ = false;
    }

private:
    Adapter* adapter_;
    bool held_ = false;
};

}  // namespace ndisshm::core
