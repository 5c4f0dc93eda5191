// Shared by the allocate/free stress tests: the counting provider (registered
// the NDIS way, remembers every context it handed out and counts how often
// each comes back), sizes and iteration counts scaled for sanitizer builds.
#pragma once

#include <gtest/gtest.h>


#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "ndis/ndis_shm.h"
#include "ndisshm/host.h"

namespace ndisshm::test {

namespace {

// Sanitized builds run much slower (TSan several times more than ASan): the
// same test does proportionally less work there.
#if defined(__SANITIZE_THREAD__)
constexpr int kSlowdown = 8;
#elif defined(__SANITIZE_ADDRESS__)
constexpr int kSlowdown = 2;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kSlowdown = 8;
#elif __has_feature(address_sanitizer)
constexpr int kSlowdown = 2;
#else
constexpr int kSlowdown = 1;
#endif
#else
constexpr int kSlowdown = 1;
#endif

constexpr int kThreads = 4;
constexpr int kIterations = 20000 / kSlowdown;
constexpr uint32_t kMinBytes = 4 * 1024;
constexpr uint32_t kMaxBytes = 256 * 1024;
constexpr NDIS_RECEIVE_QUEUE_ID kQueues[] = {NDIS_DEFAULT_RECEIVE_QUEUE_ID, 1, 2, 3, 4};

inline uint64_t all_violations(const ndisshm_runtime* rt) {
    uint64_t n = 0;
    for (int k = NDISSHM_VIOLATION_BAD_HANDLE; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
        n += ndisshm_runtime_violation_count(rt, static_cast<ndisshm_violation_kind>(k));
    return n;
}

inline ndisshm_runtime* make_runtime() {
    ndisshm_runtime_config config;
    ndisshm_runtime_config_init(&config);
    config.report_to_stderr = 0;
    config.arena_capacity_bytes = uint64_t{1} << 30;  // plenty for 4 threads x 32 x 256 KiB
    config.max_blocks = uint64_t{1} << 16;
    ndisshm_runtime* rt = nullptr;
    EXPECT_EQ(ndisshm_runtime_create(&config, &rt), NDIS_STATUS_SUCCESS);
    return rt;
}

// One call the way a miniport makes it: its own SG buffer with room for one
// element per page, revision 2 header.
struct Allocation {
    NDIS_STATUS status = NDIS_STATUS_FAILURE;
    NDIS_HANDLE handle = nullptr;
    NDIS_HANDLE shared_memory_handle = nullptr;
    unsigned char* va = nullptr;
    ULONG length = 0;
    ULONG elements = 0;
    ULONG64 first_address = 0;
    ULONG64 described = 0;
};

inline Allocation allocate(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                           ULONG length, ULONG flags = 0, NODE_REQUIREMENT node = MM_ANY_NODE_OK) {
    const ULONG capacity = BYTES_TO_PAGES(length);
    std::vector<unsigned char> sg_storage(NDISSHM_SG_LIST_BYTES(capacity) + 16);
    auto* sg = reinterpret_cast<PSCATTER_GATHER_LIST>((reinterpret_cast<uintptr_t>(sg_storage.data()) + 15) &
                                                      ~uintptr_t{15});
    sg->NumberOfElements = capacity;
    NDIS_SHARED_MEMORY_PARAMETERS p;
    NdisZeroMemory(&p, sizeof(p));
    p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Flags = flags;
    p.QueueId = queue;
    p.PreferredNode = node;
    p.Usage = usage;
    p.Length = length;
    p.SGListBufferLength = NDISSHM_SG_LIST_BYTES(capacity);
    p.SGListBuffer = sg;
    Allocation a;
    a.status = NdisAllocateSharedMemory(adapter, &p, &a.handle);
    if (a.status != NDIS_STATUS_SUCCESS) return a;
    a.shared_memory_handle = p.SharedMemoryHandle;
    a.va = static_cast<unsigned char*>(p.VirtualAddress);
    a.length = length;
    a.elements = sg->NumberOfElements;
    a.first_address = static_cast<ULONG64>(sg->Elements[0].Address.QuadPart);
    for (ULONG i = 0; i < a.elements && i < capacity; ++i) a.described += sg->Elements[i].Length;
    return a;
}

// ---------------------------------------------------------------------------
// A provider that counts: every context it hands out stays known (and its
// record alive) until the test ends, so a context freed twice, never freed,
// or never handed out is seen. It fails every kFailEvery-th call with
// NDIS_STATUS_RESOURCES, to check that failures reach the caller and never
// come back as a free.
class CountingProvider {
public:
    static constexpr uint64_t kMagic = 0x434f554e54494e47ull;  // "COUNTING"
    static constexpr uint64_t kSegmentBytes = 64 * 1024;  // non-contiguous blocks: one element per 64 KiB
    static constexpr uint64_t kFailEvery = 61;

    struct Context {
        uint64_t magic = kMagic;
        CountingProvider* owner = nullptr;
        void* memory = nullptr;
        ULONG length = 0;
        NDIS_RECEIVE_QUEUE_ID queue = 0;
        NDIS_SHARED_MEMORY_USAGE usage = NdisSharedMemoryUsageUndefined;
        bool contiguous = false;
        std::atomic<int> frees{0};
    };

    // Memory comes from one slab of fixed 256 KiB slots (the largest block),
    // so the provider itself never calls mmap: sanitizers make that slow.
    static constexpr size_t kSlotBytes = 256 * 1024;
    static constexpr size_t kSlots = 192;  // more than 4 threads x 32 outstanding

    CountingProvider() {
        NdisZeroMemory(&chars_, sizeof(chars_));
        chars_.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
        chars_.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
        chars_.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
        chars_.ProviderContext = this;
        chars_.AllocateSharedMemoryHandler = &CountingProvider::allocate_handler;
        chars_.FreeSharedMemoryHandler = &CountingProvider::free_handler;
        slab_ = static_cast<unsigned char*>(std::aligned_alloc(PAGE_SIZE, kSlots * kSlotBytes));
        for (size_t i = kSlots; i-- > 0;) free_slots_.push_back(slab_ + i * kSlotBytes);
    }
    ~CountingProvider() { std::free(slab_); }
    CountingProvider(const CountingProvider&) = delete;
    CountingProvider& operator=(const CountingProvider&) = delete;

    NDIS_STATUS register_on(NDIS_HANDLE binding) {
        return NdisSetOptionalHandlers(binding, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(&chars_));
    }

    // What the allocate handler handed out last on this thread (the handler
    // runs synchronously inside NdisAllocateSharedMemory).
    static thread_local Context* t_last_handed_out;
    // The context the calling thread expects its next free to come back with.
    static thread_local Context* t_expected_free;

    uint64_t handed_out() const { return handed_out_.load(); }
    uint64_t injected_failures() const { return injected_failures_.load(); }
    uint64_t freed() const { return freed_.load(); }
    uint64_t unknown_frees() const { return unknown_frees_.load(); }
    uint64_t double_frees() const { return double_frees_.load(); }
    uint64_t unexpected_frees() const { return unexpected_frees_.load(); }
    uint64_t wrong_provider_context() const { return wrong_provider_context_.load(); }

    // Contexts whose free count is not exactly one.
    uint64_t contexts_not_freed_exactly_once() {
        std::lock_guard lock(mu_);
        uint64_t n = 0;
        for (auto& c : contexts_)
            if (c->frees.load() != 1) ++n;
        return n;
    }
    uint64_t contexts() {
        std::lock_guard lock(mu_);
        return contexts_.size();
    }

private:
    static NDIS_STATUS allocate_handler(NDIS_HANDLE provider_context, PNDIS_SHARED_MEMORY_PARAMETERS p,
                                        PNDIS_HANDLE out) {
        auto* self = static_cast<CountingProvider*>(provider_context);
        return self->allocate(p, out);
    }
    static VOID free_handler(NDIS_HANDLE provider_context, NDIS_HANDLE context) {
        auto* self = static_cast<CountingProvider*>(provider_context);
        self->free(context);
    }

    NDIS_STATUS allocate(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
        t_last_handed_out = nullptr;
        if (calls_.fetch_add(1) % kFailEvery == kFailEvery - 1) {
            injected_failures_.fetch_add(1);
            return NDIS_STATUS_RESOURCES;
        }
        const bool contiguous = (p->Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) != 0;
        const uint64_t bytes = (uint64_t{p->Length} + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        const ULONG needed =
            contiguous ? 1 : static_cast<ULONG>((p->Length + kSegmentBytes - 1) / kSegmentBytes);
        if (NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength) < needed) {
            p->SGListBuffer->NumberOfElements = needed;
            return NDIS_STATUS_BUFFER_TOO_SHORT;
        }
        if (bytes > kSlotBytes) return NDIS_STATUS_RESOURCES;
        void* memory;
        {
            std::lock_guard lock(mu_);
            if (free_slots_.empty()) return NDIS_STATUS_RESOURCES;
            memory = free_slots_.back();
            free_slots_.pop_back();
        }
        std::memset(memory, 0, bytes);
        auto ctx = std::make_unique<Context>();
        ctx->owner = this;
        ctx->memory = memory;
        ctx->length = p->Length;
        ctx->queue = p->QueueId;
        ctx->usage = p->Usage;
        ctx->contiguous = contiguous;
        ULONG n = 0;
        for (uint64_t off = 0; off < p->Length; ++n) {
            const uint64_t len = contiguous ? p->Length : std::min<uint64_t>(kSegmentBytes, p->Length - off);
            p->SGListBuffer->Elements[n].Address.QuadPart =
                static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(memory) + off);
            p->SGListBuffer->Elements[n].Length = static_cast<ULONG>(len);
            p->SGListBuffer->Elements[n].Reserved = 0;
            off += len;
        }
        p->SGListBuffer->NumberOfElements = n;
        p->VirtualAddress = memory;
        Context* raw = ctx.get();
        {
            std::lock_guard lock(mu_);
            known_.insert(raw);
            contexts_.push_back(std::move(ctx));
        }
        handed_out_.fetch_add(1);
        t_last_handed_out = raw;
        *out = raw;
        return NDIS_STATUS_SUCCESS;
    }

    void free(NDIS_HANDLE context) {
        auto* ctx = static_cast<Context*>(context);
        {
            std::lock_guard lock(mu_);
            if (known_.count(ctx) == 0) {
                unknown_frees_.fetch_add(1);
                return;
            }
        }
        if (ctx->magic != kMagic || ctx->owner != this) wrong_provider_context_.fetch_add(1);
        if (ctx != t_expected_free) unexpected_frees_.fetch_add(1);
        if (ctx->frees.fetch_add(1) != 0) {
            double_frees_.fetch_add(1);
            return;
        }
        {
            std::lock_guard lock(mu_);
            free_slots_.push_back(static_cast<unsigned char*>(ctx->memory));
        }
        freed_.fetch_add(1);
    }

    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS chars_;
    unsigned char* slab_ = nullptr;
    std::mutex mu_;
    std::vector<unsigned char*> free_slots_;
    std::unordered_set<Context*> known_;
    std::vector<std::unique_ptr<Context>> contexts_;
    std::atomic<uint64_t> calls_{0}, handed_out_{0}, injected_failures_{0}, freed_{0}, unknown_frees_{0},
        double_frees_{0}, unexpected_frees_{0}, wrong_provider_context_{0};
};

thread_local CountingProvider::Context* CountingProvider::t_last_handed_out = nullptr;
thread_local CountingProvider::Context* CountingProvider::t_expected_free = nullptr;

// The adapter's books once every thread has freed all it held: nothing
// outstanding, and each successful allocation counted once as an allocation
// and once as a free, each refusal once as a failure.
inline ndisshm_adapter_stats expect_books_settled(NDIS_HANDLE adapter, uint64_t successes, uint64_t refusals) {
    ndisshm_adapter_stats s{};
    EXPECT_EQ(ndisshm_adapter_get_stats(adapter, &s), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(s.total.blocks, 0u);
    EXPECT_EQ(s.total.bytes, 0u);
    EXPECT_EQ(s.total.allocations, successes);
    EXPECT_EQ(s.total.frees, successes);
    EXPECT_EQ(s.total.failures, refusals);
    return s;
}

struct Failures {
    std::atomic<uint64_t> count{0};
    std::mutex mu;
    std::string first;
    void add(const std::string& what) {
        if (count.fetch_add(1) == 0) {
            std::lock_guard lock(mu);
            first = what;
        }
    }
};

}  // namespace

}  // namespace ndisshm::test
