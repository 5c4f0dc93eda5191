// The one shared memory provider of the tests (conformance, stress, fuzz): registered as a filter
// registers one (NdisSetOptionalHandlers, or the host's ops table), honest by default, told through its
// knobs to misbehave the ways a buggy filter does. It remembers every context it hands out and counts
// how each comes back, so a test can say that NDIS freed every block exactly once, through the provider
// that made it, with the context it gave.
//
// Thread-safe: the knobs are read without a lock, so set them before the calls they should affect (or
// from the only thread calling). Contexts are opaque numbers, never pointers to our memory: NDIS must
// hand back exactly what it got.
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace ndisshm::test {

class TestProvider {
public:
    // What a buggy filter does; each sets the knobs below (misbehave()). The fuzz target picks one per
    // call, so the order is part of its corpus's meaning: append only.
    enum class Misbehave : uint8_t {
        Honest,
        FailStatus,       // an honest refusal: `status`, nothing allocated
        FailWithContext,  // refuses, yet writes a context: NDIS must ignore it
        NoContext,        // success without a context
        NullAddress,      // success, VirtualAddress NULL
        ZeroElements,     // success, NumberOfElements 0
        Overclaim,        // success, NumberOfElements past the buffer's capacity
        ShortBytes,       // success, elements describe less than Length
        RewriteLength,    // rewrites Length (an input) and describes only that
        TooShort,         // BUFFER_TOO_SHORT with the count it would need
        kCount
    };

    struct AllocCall {
        std::thread::id thread;
        KIRQL irql = 0;
        NDIS_HANDLE provider_context = nullptr;
        PNDIS_SHARED_MEMORY_PARAMETERS params_ptr = nullptr;
        NDIS_SHARED_MEMORY_PARAMETERS params{};  // the first Header.Size bytes, as received
        NDIS_HANDLE context = nullptr;           // written to *pSharedMemoryProviderContext
        NDIS_STATUS status = 0;
    };
    struct FreeCall {
        std::thread::id thread;
        KIRQL irql = 0;
        NDIS_HANDLE provider_context = nullptr;
        NDIS_HANDLE context = nullptr;
    };

    // Knobs. Set them before the calls they should affect.
    NDIS_STATUS fail_with = NDIS_STATUS_SUCCESS;  // return this, allocating nothing
    NDIS_STATUS succeed_with = NDIS_STATUS_SUCCESS;  // what an allocation that worked returns (PENDING, say)
    bool fail_writes_context = false;             // ...and write a context all the same
    uint64_t fail_every = 0;                      // n > 0: refuse every n-th call with RESOURCES (counted)
    bool omit_context = false;                    // say success but write no context
    ULONG elements = 1;                           // SG elements per block (ignores CONTIGUOUS when > 1)
    ULONG segment_bytes = 0;  // > 0: a non-contiguous block is described in elements of this many bytes
    bool force_too_short = false;  // answer BUFFER_TOO_SHORT with NumberOfElements = capacity + 1
    ULONG short_bytes = 0;         // describe this many bytes fewer than Length
    bool null_virtual_address = false;
    bool zero_elements = false;       // say success with NumberOfElements = 0
    bool overclaim_elements = false;  // NumberOfElements = capacity + 1
    unsigned char fill = 0;           // initial content of each block
    ULONG rewrite_length = 0;         // overwrite the caller's Length and honour only that
    bool halve_length = false;        // overwrite the caller's Length with half of it
    bool record_calls = true;         // keep alloc_calls() and free_calls() (off for long stress runs)
    // The context of the n-th block (from 1), instead of a fresh one: garbage values, or one it gave
    // another block already (NDIS must treat contexts as opaque and hand each block's back once).
    std::function<uintptr_t(uintptr_t n)> context_for;
    // Called on entry to the free handler, outside the provider's lock (a provider that calls back into
    // NDIS from there).
    std::function<void(NDIS_HANDLE context)> on_free;

    // Sets the knobs for one of the misbehaviours above, every other knob back to honest. `status` is
    // what FailStatus and FailWithContext return (SUCCESS is taken as FAILURE: a refusal must refuse).
    void misbehave(Misbehave m, NDIS_STATUS status = NDIS_STATUS_RESOURCES) {
        fail_with = NDIS_STATUS_SUCCESS;
        fail_writes_context = omit_context = force_too_short = null_virtual_address = zero_elements =
            overclaim_elements = halve_length = false;
        short_bytes = 0;
        const NDIS_STATUS refusal = status == NDIS_STATUS_SUCCESS ? NDIS_STATUS_FAILURE : status;
        switch (m) {
            case Misbehave::FailStatus: fail_with = refusal; break;
            case Misbehave::FailWithContext:
                fail_with = NDIS_STATUS_RESOURCES;
                fail_writes_context = true;
                break;
            case Misbehave::NoContext: omit_context = true; break;
            case Misbehave::NullAddress: null_virtual_address = true; break;
            case Misbehave::ZeroElements: zero_elements = true; break;
            case Misbehave::Overclaim: overclaim_elements = true; break;
            case Misbehave::ShortBytes: short_bytes = 1; break;
            case Misbehave::RewriteLength: halve_length = true; break;
            case Misbehave::TooShort: force_too_short = true; break;
            case Misbehave::Honest:
            case Misbehave::kCount: break;
        }
        misbehaving_ = m != Misbehave::Honest;
    }
    bool misbehaving() const { return misbehaving_; }

    // Blocks come from one slab of `slots` slots of `slot_bytes` (page multiples) instead of the heap,
    // so the provider never calls mmap (sanitizers make that slow); a larger block, or none free, is
    // refused with RESOURCES. Before the first allocation.
    void use_slab(size_t slot_bytes, size_t slots) {
        slot_bytes_ = slot_bytes;
        slab_ = static_cast<unsigned char*>(std::aligned_alloc(PAGE_SIZE, slot_bytes * slots));
        for (size_t i = slots; i-- > 0;) free_slots_.push_back(slab_ + i * slot_bytes);
    }

    TestProvider() = default;
    TestProvider(const TestProvider&) = delete;
    TestProvider& operator=(const TestProvider&) = delete;
    ~TestProvider() {
        for (auto& [id, held] : live_) release(held.memory);
        for (void* mem : orphans_) release(mem);
        std::free(slab_);
    }

    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS characteristics() {
        NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS c;
        NdisZeroMemory(&c, sizeof(c));
        c.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
        c.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
        c.Header.Size = static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1);
        c.ProviderContext = this;
        c.AllocateSharedMemoryHandler = &TestProvider::Allocate;
        c.FreeSharedMemoryHandler = &TestProvider::Free;
        return c;
    }
    NDIS_STATUS register_on(NDIS_HANDLE binding) {
        auto c = characteristics();
        return NdisSetOptionalHandlers(binding, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(&c));
    }
    ndisshm_provider_ops ops() {
        ndisshm_provider_ops o{};
        o.struct_size = sizeof(o);
        o.context = this;
        o.allocate = &TestProvider::Allocate;
        o.free = &TestProvider::Free;
        o.attach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c)->note_queue(q, true); };
        o.detach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c)->note_queue(q, false); };
        return o;
    }

    // The context this thread's last allocate handed out (nullptr after a refusal): the handler runs
    // synchronously inside NdisAllocateSharedMemory, on the caller's thread.
    // Clear it before a call that may not reach the provider.
    static NDIS_HANDLE last_handed_out() { return t_last_handed_out; }
    static void clear_last_handed_out() { t_last_handed_out = nullptr; }
    // The context this thread's next free is expected to come back with (nullptr: any); a free of
    // another is counted in unexpected_frees().
    static void expect_free(NDIS_HANDLE context) { t_expected_free = context; }

    // Each observer reads under the provider's lock.
    template <class F>
    auto locked(F f) const {
        std::lock_guard lock(mu_);
        return f();
    }
    std::vector<AllocCall> alloc_calls() const {
        return locked([&] { return allocs_; });
    }
    std::vector<FreeCall> free_calls() const {
        return locked([&] { return frees_; });
    }
    size_t live() const {
        return locked([&] { return live_.size(); });
    }
    std::set<NDIS_RECEIVE_QUEUE_ID> attached() const {
        return locked([&] { return attached_; });
    }
    std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, bool>> queue_events() const {
        return locked([&] { return queue_events_; });
    }
    // Times the free handler got this context (0 for one it never handed out).
    int times_freed(NDIS_HANDLE context) const {
        return locked([&] {
            auto it = free_counts_.find(reinterpret_cast<uintptr_t>(context));
            return it == free_counts_.end() ? 0 : it->second;
        });
    }
    // The context of the n-th successful allocation (from 0).
    NDIS_HANDLE context_of(size_t n) const {
        return locked([&] { return n < contexts_.size() ? contexts_[n] : nullptr; });
    }
    // Contexts handed out whose free count is not exactly one.
    uint64_t contexts_not_freed_exactly_once() const {
        return locked([&] {
            uint64_t n = 0;
            for (NDIS_HANDLE c : contexts_) {
                auto it = free_counts_.find(reinterpret_cast<uintptr_t>(c));
                if (it == free_counts_.end() || it->second != 1) ++n;
            }
            return n;
        });
    }
    uint64_t contexts() const {
        return locked([&] { return static_cast<uint64_t>(contexts_.size()); });
    }

    uint64_t handed_out() const { return handed_out_.load(); }
    uint64_t freed() const { return freed_.load(); }
    uint64_t injected_failures() const { return injected_failures_.load(); }
    // Frees of a context never handed out; of one handed out and freed already.
    uint64_t unknown_frees() const { return unknown_frees_.load(); }
    uint64_t double_frees() const { return double_frees_.load(); }
    int bad_frees() const { return static_cast<int>(unknown_frees_.load() + double_frees_.load()); }
    // Frees not of the context this thread said it expected (expect_free).
    uint64_t unexpected_frees() const { return unexpected_frees_.load(); }
    // Handler calls whose ProviderContext was not this provider's.
    uint64_t wrong_provider_context() const { return wrong_provider_context_.load(); }
    // detach_queue calls while a block of that queue was still live (host.h: blocks go first).
    uint64_t detached_with_live_blocks() const { return detached_with_live_blocks_.load(); }

    // Whether `va` lies in one of its live blocks.
    bool owns_memory(const void* va) const {
        return locked([&] {
            for (const auto& [id, held] : live_)
                if (held.memory == va) return true;
            return false;
        });
    }
    // A live block as the provider handed it out, and what it was asked for.
    struct Held {
        void* memory = nullptr;
        ULONG length = 0;
        NDIS_RECEIVE_QUEUE_ID queue = 0;
        uint32_t usage = 0;  // as the caller stored it: any value (not read through the enum)
        bool contiguous = false;
    };
    // The live block of `context`; false if none is live under it.
    bool find_live(NDIS_HANDLE context, Held* out) const {
        return locked([&] {
            auto it = live_.find(reinterpret_cast<uintptr_t>(context));
            if (it == live_.end()) return false;
            *out = it->second;
            return true;
        });
    }

private:

    static TestProvider* self(NDIS_HANDLE c) { return static_cast<TestProvider*>(c); }
    static NDIS_STATUS Allocate(NDIS_HANDLE pc, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        return self(pc)->allocate(pc, p, out);
    }
    static VOID Free(NDIS_HANDLE pc, NDIS_HANDLE context) { self(pc)->free(pc, context); }

    NDIS_STATUS allocate(NDIS_HANDLE pc, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        t_last_handed_out = nullptr;
        if (pc != this) wrong_provider_context_.fetch_add(1);
        AllocCall call;
        if (record_calls) {
            call.thread = std::this_thread::get_id();
            call.irql = KeGetCurrentIrql();
            call.provider_context = pc;
            call.params_ptr = p;
            std::memcpy(&call.params, p, std::min<size_t>(p->Header.Size, sizeof(call.params)));
        }
        call.status = decide(p, out, &call.context);
        if (call.status >= 0 && call.context != nullptr) t_last_handed_out = call.context;
        if (record_calls) {
            std::lock_guard lock(mu_);
            allocs_.push_back(call);
        }
        return call.status;
    }

    NDIS_STATUS decide(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, NDIS_HANDLE* recorded) {
        if (fail_every != 0 && calls_.fetch_add(1) % fail_every == fail_every - 1) {
            injected_failures_.fetch_add(1);
            return NDIS_STATUS_RESOURCES;
        }
        if (fail_with != NDIS_STATUS_SUCCESS) {
            if (fail_writes_context) *out = reinterpret_cast<NDIS_HANDLE>(next_id());  // never recorded
            return fail_with;
        }
        if (rewrite_length != 0) p->Length = rewrite_length;
        if (halve_length) p->Length = p->Length > 1 ? p->Length / 2 : 2;
        if (p->SGListBuffer == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
        const ULONG capacity = NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength);
        const bool contiguous = (p->Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) != 0;
        ULONG n = elements == 0 ? 1 : elements;
        if (segment_bytes != 0) n = contiguous ? 1 : static_cast<ULONG>((p->Length + segment_bytes - 1) / segment_bytes);
        if (p->Length < n) n = 1;
        if (force_too_short || (n > capacity && !overclaim_elements) || capacity == 0) {
            if (p->SGListBufferLength >= NDISSHM_SG_LIST_HEADER_BYTES)
                p->SGListBuffer->NumberOfElements = force_too_short ? capacity + 1 : n;
            return NDIS_STATUS_BUFFER_TOO_SHORT;
        }
        n = std::min(n, capacity);
        const size_t rounded = (static_cast<size_t>(p->Length) + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        void* mem = obtain(rounded);
        if (mem == nullptr) return NDIS_STATUS_RESOURCES;
        std::memset(mem, fill, rounded);
        const ULONG piece = segment_bytes != 0 && !contiguous ? segment_bytes : p->Length / n;
        for (ULONG i = 0; i < n; ++i) {
            SCATTER_GATHER_ELEMENT& e = p->SGListBuffer->Elements[i];
            e.Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(mem) + size_t{i} * piece);
            e.Length = i + 1 < n ? piece : p->Length - i * piece;
            e.Reserved = 0;
        }
        p->SGListBuffer->Elements[n - 1].Length -= std::min(short_bytes, p->SGListBuffer->Elements[n - 1].Length);
        p->SGListBuffer->NumberOfElements = zero_elements ? 0 : overclaim_elements ? capacity + 1 : n;
        p->VirtualAddress = null_virtual_address ? nullptr : mem;
        std::lock_guard lock(mu_);
        if (omit_context) {
            orphans_.push_back(mem);  // NDIS has no context to give it back with
            *out = nullptr;
            return NDIS_STATUS_SUCCESS;
        }
        const uintptr_t id = next_id_locked();
        uint32_t usage;
        std::memcpy(&usage, &p->Usage, sizeof(usage));
        live_.emplace(id, Held{mem, p->Length, p->QueueId, usage, contiguous});
        contexts_.push_back(reinterpret_cast<NDIS_HANDLE>(id));
        handed_out_.fetch_add(1);
        *out = *recorded = reinterpret_cast<NDIS_HANDLE>(id);
        return succeed_with;
    }

    uintptr_t next_id() {
        std::lock_guard lock(mu_);
        return next_id_locked();
    }
    uintptr_t next_id_locked() {
        ++serial_;
        return context_for ? context_for(serial_) : 0x10000 + 0x10 * serial_;  // opaque to NDIS
    }

    void free(NDIS_HANDLE pc, NDIS_HANDLE context) {
        if (on_free) on_free(context);
        if (pc != this) wrong_provider_context_.fetch_add(1);
        if (t_expected_free != nullptr && context != t_expected_free) unexpected_frees_.fetch_add(1);
        FreeCall call{std::this_thread::get_id(), KeGetCurrentIrql(), pc, context};
        void* memory = nullptr;
        {
            std::lock_guard lock(mu_);
            if (record_calls) frees_.push_back(call);
            const auto id = reinterpret_cast<uintptr_t>(context);
            const int before = free_counts_[id]++;
            auto it = live_.find(id);
            if (it == live_.end()) {
                (before > 0 ? double_frees_ : unknown_frees_).fetch_add(1);
                return;
            }
            memory = it->second.memory;
            live_.erase(it);
        }
        release(memory);
        freed_.fetch_add(1);
    }

    void note_queue(NDIS_RECEIVE_QUEUE_ID q, bool attached) {
        std::lock_guard lock(mu_);
        queue_events_.emplace_back(q, attached);
        if (attached) {
            attached_.insert(q);
            return;
        }
        for (auto& [id, held] : live_)
            if (held.queue == q) detached_with_live_blocks_.fetch_add(1);
        attached_.erase(q);
    }

    void* obtain(size_t bytes) {
        if (slab_ == nullptr) return std::aligned_alloc(PAGE_SIZE, bytes);
        std::lock_guard lock(slab_mu_);
        if (bytes > slot_bytes_ || free_slots_.empty()) return nullptr;
        void* mem = free_slots_.back();
        free_slots_.pop_back();
        return mem;
    }
    void release(void* mem) {
        if (slab_ == nullptr) {
            std::free(mem);
            return;
        }
        std::lock_guard lock(slab_mu_);
        free_slots_.push_back(static_cast<unsigned char*>(mem));
    }

    inline static thread_local NDIS_HANDLE t_last_handed_out = nullptr;
    inline static thread_local NDIS_HANDLE t_expected_free = nullptr;

    mutable std::mutex mu_;
    std::mutex slab_mu_;  // free_slots_
    bool misbehaving_ = false;
    uintptr_t serial_ = 0;
    std::multimap<uintptr_t, Held> live_;  // multi: a provider may give two blocks one context
    std::map<uintptr_t, int> free_counts_;
    std::vector<NDIS_HANDLE> contexts_;
    std::vector<void*> orphans_;
    std::vector<AllocCall> allocs_;
    std::vector<FreeCall> frees_;
    std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, bool>> queue_events_;
    std::set<NDIS_RECEIVE_QUEUE_ID> attached_;
    unsigned char* slab_ = nullptr;
    size_t slot_bytes_ = 0;
    std::vector<unsigned char*> free_slots_;
    std::atomic<uint64_t> calls_{0}, handed_out_{0}, freed_{0}, injected_failures_{0}, unknown_frees_{0},
        double_frees_{0}, unexpected_frees_{0}, wrong_provider_context_{0}, detached_with_live_blocks_{0};
};

}  // namespace ndisshm::test
