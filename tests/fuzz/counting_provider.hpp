// A shared memory provider for the NDIS-calls fuzz target that keeps the
// runtime honest: it counts every context it hands out and every free it gets
// back, so that after teardown it can say whether each block came back
// exactly once. Told before each allocation how to misbehave (the fuzzer's
// choice), it also produces the bad outputs a buggy filter would.
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "fuzz/fuzz_support.hpp"

namespace ndisshm_fuzz {

enum class Misbehave : uint8_t {
    Honest,
    FailStatus,         // an honest refusal: `status`, nothing allocated
    FailWithContext,    // refuses, yet writes a context: NDIS must ignore it
    NoContext,          // success without a context
    NullAddress,        // success, VirtualAddress NULL
    ZeroElements,       // success, NumberOfElements 0
    Overclaim,          // success, NumberOfElements past the buffer's capacity
    ShortBytes,         // success, elements describe less than Length
    RewriteLength,      // rewrites Length (an input) and describes only that
    TooShort,           // BUFFER_TOO_SHORT with the count it would need
    kCount
};

class CountingProvider {
public:
    // What the next allocation does (set by the harness before each call).
    Misbehave mode = Misbehave::Honest;
    NDIS_STATUS status = NDIS_STATUS_RESOURCES;  // for FailStatus
    uint32_t elements = 1;                       // SG elements an honest answer uses
    uint64_t context_salt = 0;                   // mixed into contexts, which are otherwise serials

    ~CountingProvider() {
        // Anything still here was never freed: the harness checks that before we go.
        for (auto& [ctx, b] : live_) std::free(b.memory);
    }

    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS characteristics() {
        NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS c;
        std::memset(&c, 0, sizeof(c));
        c.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
        c.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
        c.Header.Size = static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1);
        c.ProviderContext = this;
        c.AllocateSharedMemoryHandler = &CountingProvider::Allocate;
        c.FreeSharedMemoryHandler = &CountingProvider::Free;
        return c;
    }
    ndisshm_provider_ops ops() {
        ndisshm_provider_ops o{};
        o.struct_size = sizeof(o);
        o.context = this;
        o.allocate = &CountingProvider::Allocate;
        o.free = &CountingProvider::Free;
        o.attach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c)->attached_.insert(q); };
        o.detach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c)->detach(q); };
        return o;
    }

    size_t live() const { return live_.size(); }
    uint64_t handed_out() const { return handed_out_; }
    uint64_t freed() const { return freed_; }
    const std::set<NDIS_RECEIVE_QUEUE_ID>& attached() const { return attached_; }

    // After teardown: every context handed out came back exactly once (a
    // second free or a free of an unknown context aborts at once, in Free).
    void check_all_returned(const char* who) const {
        FUZZ_CHECK(live_.empty(), "%s: %zu block(s) never freed through their provider", who, live_.size());
        FUZZ_CHECK(handed_out_ == freed_, "%s: handed out %llu, freed %llu", who,
                   static_cast<unsigned long long>(handed_out_), static_cast<unsigned long long>(freed_));
    }

private:
    struct Held {
        void* memory;
        NDIS_RECEIVE_QUEUE_ID queue;
    };
    static CountingProvider* self(NDIS_HANDLE c) { return static_cast<CountingProvider*>(c); }
    static NDIS_STATUS Allocate(NDIS_HANDLE pc, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        return self(pc)->allocate(p, out);
    }
    static VOID Free(NDIS_HANDLE pc, NDIS_HANDLE context) { self(pc)->free(context); }

    NDIS_HANDLE next_context() {
        // Unique and never 0, but otherwise as odd as the fuzzer likes: NDIS must treat it as opaque.
        for (;;) {
            const auto v = reinterpret_cast<NDIS_HANDLE>((context_salt << 20) ^ (++serial_ << 1) ^ 1);
            if (live_.count(v) == 0) return v;
        }
    }

    NDIS_STATUS allocate(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        FUZZ_CHECK(p != nullptr && out != nullptr, "provider called with NULL parameters");
        FUZZ_CHECK(p->Header.Size >= NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1, "header size %u",
                   p->Header.Size);
        FUZZ_CHECK(p->Length != 0, "provider asked for 0 bytes");
        if (mode == Misbehave::FailStatus) return status == NDIS_STATUS_SUCCESS ? NDIS_STATUS_FAILURE : status;
        if (mode == Misbehave::FailWithContext) {
            *out = next_context();  // never recorded: a free of it would be a free of an unknown context
            return NDIS_STATUS_RESOURCES;
        }
        const ULONG capacity = NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength);
        if (p->SGListBuffer == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
        uint32_t n = elements == 0 ? 1 : elements;
        if (p->Length < n) n = 1;
        if (mode == Misbehave::TooShort || n > capacity) {
            if (p->SGListBufferLength >= NDISSHM_SG_LIST_HEADER_BYTES) p->SGListBuffer->NumberOfElements = capacity + 1;
            return NDIS_STATUS_BUFFER_TOO_SHORT;
        }
        if (mode == Misbehave::RewriteLength) p->Length = p->Length > 1 ? p->Length / 2 : 2;
        const size_t rounded = (size_t{p->Length} + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        void* mem = std::aligned_alloc(PAGE_SIZE, rounded);
        if (mem == nullptr) return NDIS_STATUS_RESOURCES;
        std::memset(mem, 0x5A, rounded);
        const ULONG piece = p->Length / n;
        for (ULONG i = 0; i < n; ++i) {
            SCATTER_GATHER_ELEMENT& e = p->SGListBuffer->Elements[i];
            e.Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(mem) + size_t{i} * piece);
            e.Length = i + 1 < n ? piece : p->Length - i * piece;
            e.Reserved = 0;
        }
        if (mode == Misbehave::ShortBytes) p->SGListBuffer->Elements[n - 1].Length -= 1;
        p->SGListBuffer->NumberOfElements =
            mode == Misbehave::ZeroElements ? 0 : mode == Misbehave::Overclaim ? capacity + 1 : n;
        p->VirtualAddress = mode == Misbehave::NullAddress ? nullptr : mem;
        if (mode == Misbehave::NoContext) {
            std::free(mem);  // NDIS has no context to give it back with: it is ours to drop
            *out = nullptr;
            return NDIS_STATUS_SUCCESS;
        }
        NDIS_HANDLE ctx = next_context();
        live_[ctx] = Held{mem, p->QueueId};
        ++handed_out_;
        *out = ctx;
        return NDIS_STATUS_SUCCESS;
    }

    void free(NDIS_HANDLE context) {
        auto it = live_.find(context);
        FUZZ_CHECK(it != live_.end(), "free of context %p, which is not live (never handed out, or freed already)",
                   context);
        std::free(it->second.memory);
        live_.erase(it);
        ++freed_;
    }

    void detach(NDIS_RECEIVE_QUEUE_ID q) {
        // "after its blocks are freed" (host.h): none of this provider's blocks of q may be live.
        for (auto& [ctx, b] : live_)
            FUZZ_CHECK(b.queue != q, "detach_queue(%u) while block %p of that queue is live", q, ctx);
        attached_.erase(q);
    }

    uint64_t serial_ = 0;
    uint64_t handed_out_ = 0, freed_ = 0;
    std::map<NDIS_HANDLE, Held> live_;
    std::set<NDIS_RECEIVE_QUEUE_ID> attached_;
};

}  // namespace ndisshm_fuzz
