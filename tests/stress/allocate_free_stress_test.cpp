// Stress: many threads allocating and freeing shared memory on one adapter.
//
// Two providers behind the same NDIS calls:
//  - a counting provider of our own, registered the NDIS way
//    (NdisSetOptionalHandlers on a provider binding), which remembers every
//    context it ever handed out and counts how often each comes back;
//  - the default (memfd arena) provider, whose blocks are filled whole by
//    their owner and checked whole before they are freed, so two live blocks
//    that overlap, or a block that does not arrive zeroed, cannot go unseen.
//
// Bounded by iteration counts (never by time), small enough for TSan/ASan.
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

uint64_t all_violations(const ndisshm_runtime* rt) {
    uint64_t n = 0;
    for (int k = NDISSHM_VIOLATION_BAD_HANDLE; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
        n += ndisshm_runtime_violation_count(rt, static_cast<ndisshm_violation_kind>(k));
    return n;
}

ndisshm_runtime* make_runtime() {
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

Allocation allocate(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                    ULONG length, ULONG flags, NODE_REQUIREMENT node) {
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

TEST(SharedMemoryStress, ManyThreadsAllocateAndFreeOnOneAdapterEveryContextFreedOnce) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    const uint64_t global_before = ndisshm_global_violation_count();
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "stress-nic", &adapter), NDIS_STATUS_SUCCESS);
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
            ASSERT_EQ(ndisshm_queue_create(adapter, q), NDIS_STATUS_SUCCESS);
        }
    }
    ASSERT_EQ(ndisshm_binding_create(adapter, "counting-vswitch", &binding), NDIS_STATUS_SUCCESS);
    CountingProvider provider;
    ASSERT_EQ(provider.register_on(binding), NDIS_STATUS_SUCCESS);

    Failures failures;
    std::atomic<uint64_t> successes{0}, refused{0}, frees{0};
    std::atomic<uint64_t> per_usage_allocs[NdisSharedMemoryUsageMax] = {};

    auto worker = [&](int tid) {
        std::mt19937_64 rng(0x5eed0000u + static_cast<unsigned>(tid));
        struct Held {
            NDIS_HANDLE handle;
            CountingProvider::Context* ctx;
            unsigned char* va;
            ULONG length;
            uint64_t stamp;
        };
        std::vector<Held> held;
        size_t target = 1;
        uint64_t serial = 0;
        auto release = [&](size_t i) {
            Held h = held[i];
            held[i] = held.back();
            held.pop_back();
            uint64_t head = 0, tail = 0;
            std::memcpy(&head, h.va, sizeof(head));
            std::memcpy(&tail, h.va + h.length - sizeof(tail), sizeof(tail));
            if (head != h.stamp || tail != ~h.stamp) failures.add("block contents changed while it was live");
            CountingProvider::t_expected_free = h.ctx;
            NdisFreeSharedMemory(adapter, h.handle);
            CountingProvider::t_expected_free = nullptr;
            if (h.ctx->frees.load() != 1)
                failures.add("NdisFreeSharedMemory did not free the block's own context");
            frees.fetch_add(1);
        };
        for (int it = 0; it < kIterations; ++it) {
            if (it % 64 == 0) target = 1 + rng() % 32;  // how many to keep outstanding for a while
            if (held.size() < target || (held.size() == target && rng() % 2 == 0)) {
                const ULONG length = kMinBytes + static_cast<ULONG>(rng() % (kMaxBytes - kMinBytes + 1));
                const auto usage = static_cast<NDIS_SHARED_MEMORY_USAGE>(rng() % NdisSharedMemoryUsageMax);
                const NDIS_RECEIVE_QUEUE_ID queue = kQueues[rng() % std::size(kQueues)];
                const ULONG flags = rng() % 4 == 0 ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
                CountingProvider::t_last_handed_out = nullptr;
                Allocation a = allocate(adapter, queue, usage, length, flags, MM_ANY_NODE_OK);
                CountingProvider::Context* ctx = CountingProvider::t_last_handed_out;
                if (a.status == NDIS_STATUS_RESOURCES && ctx == nullptr) {
                    refused.fetch_add(1);
                    continue;
                }
                if (a.status != NDIS_STATUS_SUCCESS) {
                    failures.add(std::string("NdisAllocateSharedMemory: ") + ndisshm_status_name(a.status));
                    continue;
                }
                if (ctx == nullptr || a.va != ctx->memory)
                    failures.add("VirtualAddress is not the provider's");
                else if (ctx->length != length || ctx->queue != queue || ctx->usage != usage ||
                         ctx->contiguous != (flags != 0))
                    failures.add("the provider saw other parameters than the caller gave");
                if (a.shared_memory_handle != a.handle)
                    failures.add("SharedMemoryHandle != *pAllocationHandle");
                if (a.first_address != reinterpret_cast<uintptr_t>(a.va)) failures.add("Elements[0].Address");
                if (a.described != length) failures.add("SG list does not describe Length bytes");
                const ULONG want_elements =
                    flags != 0 ? 1
                               : static_cast<ULONG>((length + CountingProvider::kSegmentBytes - 1) /
                                                    CountingProvider::kSegmentBytes);
                if (a.elements != want_elements)
                    failures.add("NumberOfElements is not what the provider wrote");
                if (ctx == nullptr) continue;
                const uint64_t stamp = (uint64_t(tid) << 56) | ++serial;
                std::memcpy(a.va, &stamp, sizeof(stamp));
                const uint64_t tail = ~stamp;
                std::memcpy(a.va + length - sizeof(tail), &tail, sizeof(tail));
                held.push_back({a.handle, ctx, a.va, length, stamp});
                successes.fetch_add(1);
                per_usage_allocs[usage].fetch_add(1);
            } else if (!held.empty()) {
                release(rng() % held.size());
            }
        }
        while (!held.empty()) release(held.size() - 1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
    for (auto& t : threads) t.join();

    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    EXPECT_GT(successes.load(), uint64_t{kThreads} * kIterations / 4);
    EXPECT_EQ(refused.load(), provider.injected_failures());
    EXPECT_EQ(frees.load(), successes.load());

    // The provider's view: every context handed out came back exactly once,
    // each to the thread that freed that block, nothing unknown.
    EXPECT_EQ(provider.handed_out(), successes.load());
    EXPECT_EQ(provider.contexts(), successes.load());
    EXPECT_EQ(provider.freed(), successes.load());
    EXPECT_EQ(provider.contexts_not_freed_exactly_once(), 0u);
    EXPECT_EQ(provider.double_frees(), 0u);
    EXPECT_EQ(provider.unknown_frees(), 0u);
    EXPECT_EQ(provider.unexpected_frees(), 0u);
    EXPECT_EQ(provider.wrong_provider_context(), 0u);

    // NDIS's books.
    ndisshm_adapter_stats stats{};
    ASSERT_EQ(ndisshm_adapter_get_stats(adapter, &stats), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats.total.blocks, 0u);
    EXPECT_EQ(stats.total.bytes, 0u);
    EXPECT_EQ(stats.total.allocations, successes.load());
    EXPECT_EQ(stats.total.frees, successes.load());
    EXPECT_EQ(stats.total.failures, refused.load());
    EXPECT_GE(stats.total.peak_blocks, 1u);
    EXPECT_LE(stats.total.peak_blocks, uint64_t{kThreads} * 33);  // a thread holds at most target + 1
    EXPECT_EQ(stats.has_provider, 1);
    for (int u = 0; u < NdisSharedMemoryUsageMax; ++u) {
        EXPECT_EQ(stats.by_usage[u].blocks, 0u) << "usage " << u;
        EXPECT_EQ(stats.by_usage[u].allocations, per_usage_allocs[u].load()) << "usage " << u;
        EXPECT_EQ(stats.by_usage[u].frees, per_usage_allocs[u].load()) << "usage " << u;
    }
    uint64_t queue_allocs = 0;
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        ndisshm_usage_stats qs{};
        ASSERT_EQ(ndisshm_queue_get_stats(adapter, q, &qs), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(qs.blocks, 0u) << "queue " << q;
        EXPECT_EQ(qs.allocations, qs.frees) << "queue " << q;
        queue_allocs += qs.allocations;
    }
    EXPECT_EQ(queue_allocs, successes.load());
    EXPECT_EQ(all_violations(rt), 0u);

    // Tearing down finds nothing left: no leak reports, no further frees.
    ndisshm_binding_destroy(binding);
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
            EXPECT_EQ(ndisshm_queue_free(adapter, q), NDIS_STATUS_SUCCESS);
        }
    }
    ndisshm_adapter_destroy(adapter);
    EXPECT_EQ(all_violations(rt), 0u);
    EXPECT_EQ(provider.freed(), successes.load());
    EXPECT_EQ(ndisshm_global_violation_count(), global_before);
    ndisshm_runtime_destroy(rt);
}

// ---------------------------------------------------------------------------
// The default provider under the same load. Every live block is recorded in a
// range map (an overlap with another live block fails at once), arrives
// zeroed, and is filled whole with its owner's (thread, serial) stamp and
// checked whole before it is freed.

// True when all `bytes` at p are zero. memcmp against itself shifted by one
// (a single intercepted range access under the sanitizers, not a loop).
bool all_zero(const unsigned char* p, size_t bytes) {
    return bytes == 0 || (p[0] == 0 && std::memcmp(p, p + 1, bytes - 1) == 0);
}

// Fills `bytes` at p with the 16-byte pattern {a, b} repeated (the tail gets
// a prefix of it), by doubling copies.
void fill_pattern(unsigned char* p, size_t bytes, uint64_t a, uint64_t b) {
    unsigned char unit[16];
    std::memcpy(unit, &a, 8);
    std::memcpy(unit + 8, &b, 8);
    size_t done = std::min<size_t>(bytes, sizeof(unit));
    std::memcpy(p, unit, done);
    while (done < bytes) {
        const size_t n = std::min(done, bytes - done);
        std::memcpy(p + done, p, n);
        done += n;
    }
}

// True when `bytes` at p are exactly what fill_pattern(p, bytes, a, b) wrote:
// the first 16 bytes are the unit and every byte equals the one 16 before it.
bool has_pattern(const unsigned char* p, size_t bytes, uint64_t a, uint64_t b) {
    unsigned char unit[16];
    std::memcpy(unit, &a, 8);
    std::memcpy(unit + 8, &b, 8);
    const size_t head = std::min<size_t>(bytes, sizeof(unit));
    if (std::memcmp(p, unit, head) != 0) return false;
    return bytes <= sizeof(unit) || std::memcmp(p, p + sizeof(unit), bytes - sizeof(unit)) == 0;
}

class LiveRanges {
public:
    // False if [begin, end) overlaps a live range.
    bool insert(uintptr_t begin, uintptr_t end) {
        std::lock_guard lock(mu_);
        auto next = ranges_.lower_bound(begin);
        if (next != ranges_.end() && next->first < end) return false;
        if (next != ranges_.begin() && std::prev(next)->second > begin) return false;
        ranges_.emplace(begin, end);
        return true;
    }
    void erase(uintptr_t begin) {
        std::lock_guard lock(mu_);
        ranges_.erase(begin);
    }
    size_t size() {
        std::lock_guard lock(mu_);
        return ranges_.size();
    }

private:
    std::mutex mu_;
    std::map<uintptr_t, uintptr_t> ranges_;
};

TEST(SharedMemoryStress, DefaultProviderBlocksNeverOverlapWhileLiveAndArriveZeroed) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    const uint64_t global_before = ndisshm_global_violation_count();
    NDIS_HANDLE adapter = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "stress-default", &adapter), NDIS_STATUS_SUCCESS);
    for (NDIS_RECEIVE_QUEUE_ID q : kQueues) {
        if (q != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
            ASSERT_EQ(ndisshm_queue_create(adapter, q), NDIS_STATUS_SUCCESS);
        }
    }

    // Whole-block passes cost more than the counting provider's two words.
    constexpr int kBlockIterations = 12000 / kSlowdown;
    LiveRanges live;
    Failures failures;
    std::atomic<uint64_t> successes{0};

    auto worker = [&](int tid) {
        std::mt19937_64 rng(0xdefa0000u + static_cast<unsigned>(tid));
        struct Held {
            NDIS_HANDLE handle;
            unsigned char* va;
            ULONG length;
            uint64_t serial;
        };
        std::vector<Held> held;
        size_t target = 1;
        uint64_t serial = 0;
        auto release = [&](size_t i) {
            Held h = held[i];
            held[i] = held.back();
            held.pop_back();
            if (!has_pattern(h.va, h.length, uint64_t(tid), h.serial))
                failures.add("a live block was written by someone else (overlap or stray write)");
            if (rng() % 8 == 0) {
                ndisshm_block_info info{};
                if (ndisshm_block_get_info(adapter, h.handle, &info) != NDIS_STATUS_SUCCESS ||
                    info.virtual_address != h.va || info.length != h.length ||
                    std::strcmp(info.provider, "default") != 0)
                    failures.add("ndisshm_block_get_info disagrees with the allocation");
            }
            live.erase(reinterpret_cast<uintptr_t>(h.va));  // before: the memory may be handed out at once
            NdisFreeSharedMemory(adapter, h.handle);
        };
        for (int it = 0; it < kBlockIterations; ++it) {
            if (it % 64 == 0) target = 1 + rng() % 32;
            if (held.size() < target || (held.size() == target && rng() % 2 == 0)) {
                ULONG length = kMinBytes + static_cast<ULONG>(rng() % (kMaxBytes - kMinBytes + 1));
                if (rng() % 2 == 0) length = (length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
                const auto usage = static_cast<NDIS_SHARED_MEMORY_USAGE>(rng() % NdisSharedMemoryUsageMax);
                const NDIS_RECEIVE_QUEUE_ID queue = kQueues[rng() % std::size(kQueues)];
                const ULONG flags = rng() % 4 == 0 ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
                const NODE_REQUIREMENT node = rng() % 2 == 0 ? MM_ANY_NODE_OK : 0;
                Allocation a = allocate(adapter, queue, usage, length, flags, node);
                if (a.status != NDIS_STATUS_SUCCESS) {
                    failures.add(std::string("NdisAllocateSharedMemory: ") + ndisshm_status_name(a.status));
                    continue;
                }
                const auto va = reinterpret_cast<uintptr_t>(a.va);
                if (va % PAGE_SIZE != 0) failures.add("VirtualAddress is not page-aligned");
                if (a.elements != 1 || a.first_address != va || a.described < length)
                    failures.add(
                        "the default provider's SG list is not one element at VirtualAddress (IOVA = VA)");
                if (a.shared_memory_handle != a.handle)
                    failures.add("SharedMemoryHandle != *pAllocationHandle");
                const uintptr_t end = va + (length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
                if (!live.insert(va, end)) {
                    failures.add("a new block overlaps a live block");
                    NdisFreeSharedMemory(adapter, a.handle);
                    continue;
                }
                if (!all_zero(a.va, length)) failures.add("a block did not arrive zeroed");
                ++serial;
                fill_pattern(a.va, length, uint64_t(tid), serial);
                held.push_back({a.handle, a.va, length, serial});
                successes.fetch_add(1);
            } else if (!held.empty()) {
                release(rng() % held.size());
            }
        }
        while (!held.empty()) release(held.size() - 1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
    for (auto& t : threads) t.join();

    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    EXPECT_EQ(live.size(), 0u);
    EXPECT_GT(successes.load(), uint64_t{kThreads} * kBlockIterations / 4);
    ndisshm_adapter_stats stats{};
    ASSERT_EQ(ndisshm_adapter_get_stats(adapter, &stats), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats.total.blocks, 0u);
    EXPECT_EQ(stats.total.bytes, 0u);
    EXPECT_EQ(stats.total.allocations, successes.load());
    EXPECT_EQ(stats.total.frees, successes.load());
    EXPECT_EQ(stats.total.failures, 0u);
    EXPECT_EQ(stats.has_provider, 0);
    EXPECT_EQ(all_violations(rt), 0u);
    ndisshm_adapter_destroy(adapter);
    EXPECT_EQ(all_violations(rt), 0u);
    EXPECT_EQ(ndisshm_global_violation_count(), global_before);
    ndisshm_runtime_destroy(rt);
}

// ---------------------------------------------------------------------------
// A driver bug under concurrency: several threads free the same handles at
// once. The verifier promises that a double free is reported and frees and
// corrupts nothing: whichever thread wins reaches the provider, exactly once,
// and every other free of that handle is one double-free report.
struct ViolationTally {
    std::atomic<uint64_t> by_kind[NDISSHM_VIOLATION_KIND_COUNT] = {};
    static void callback(void* context, const ndisshm_violation* v) {
        auto* self = static_cast<ViolationTally*>(context);
        if (v->kind > 0 && v->kind < NDISSHM_VIOLATION_KIND_COUNT) self->by_kind[v->kind].fetch_add(1);
    }
};

TEST(SharedMemoryStress, ConcurrentFreesOfTheSameHandlesReachTheProviderExactlyOnce) {
    ndisshm_runtime* rt = make_runtime();
    ASSERT_NE(rt, nullptr);
    ViolationTally tally;
    ndisshm_runtime_set_violation_callback(rt, &ViolationTally::callback, &tally);
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    ASSERT_EQ(ndisshm_adapter_create(rt, "double-free-nic", &adapter), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_binding_create(adapter, "counting-vswitch", &binding), NDIS_STATUS_SUCCESS);
    CountingProvider provider;
    ASSERT_EQ(provider.register_on(binding), NDIS_STATUS_SUCCESS);

    constexpr int kRounds = 240 / kSlowdown;
    constexpr int kPerRound = 8;
    struct Published {
        NDIS_HANDLE handle;
        CountingProvider::Context* ctx;
    };
    std::vector<Published> round(kPerRound);
    std::barrier sync(kThreads + 1);
    Failures failures;
    uint64_t allocated = 0;

    auto freer = [&](int tid) {
        std::mt19937_64 rng(0xd0b1e000u + static_cast<unsigned>(tid));
        std::vector<int> order(kPerRound);
        for (int r = 0; r < kRounds; ++r) {
            sync.arrive_and_wait();  // the round's blocks are published
            for (int i = 0; i < kPerRound; ++i) order[i] = i;
            std::shuffle(order.begin(), order.end(), rng);
            for (int i : order) {
                CountingProvider::t_expected_free = round[i].ctx;
                NdisFreeSharedMemory(adapter, round[i].handle);
                CountingProvider::t_expected_free = nullptr;
            }
            sync.arrive_and_wait();  // every thread has freed every block
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(freer, t);
    for (int r = 0; r < kRounds; ++r) {
        for (int i = 0; i < kPerRound; ++i) {
            Allocation a;
            do {  // the provider refuses every 61st call on purpose
                CountingProvider::t_last_handed_out = nullptr;
                a = allocate(adapter, NDIS_DEFAULT_RECEIVE_QUEUE_ID, NdisSharedMemoryUsageReceive,
                             2 * PAGE_SIZE, 0, MM_ANY_NODE_OK);
            } while (a.status == NDIS_STATUS_RESOURCES);
            if (a.status != NDIS_STATUS_SUCCESS || CountingProvider::t_last_handed_out == nullptr) {
                failures.add(std::string("allocation: ") + ndisshm_status_name(a.status));
                round[i] = {nullptr,
                            nullptr};  // the test has failed; the NULL frees add garbage-handle reports
                continue;
            }
            round[i] = {a.handle, CountingProvider::t_last_handed_out};
            ++allocated;
        }
        sync.arrive_and_wait();
        sync.arrive_and_wait();
        for (int i = 0; i < kPerRound; ++i)
            if (round[i].ctx != nullptr && round[i].ctx->frees.load() != 1)
                failures.add(
                    "a block freed by several threads at once did not reach the provider exactly once");
    }
    for (auto& t : threads) t.join();

    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    EXPECT_EQ(allocated, uint64_t{kRounds} * kPerRound);
    EXPECT_EQ(provider.freed(), allocated);
    EXPECT_EQ(provider.contexts_not_freed_exactly_once(), 0u);
    EXPECT_EQ(provider.double_frees(), 0u);
    EXPECT_EQ(provider.unknown_frees(), 0u);
    EXPECT_EQ(provider.unexpected_frees(), 0u);
    const uint64_t losers = allocated * (kThreads - 1);
    EXPECT_EQ(ndisshm_runtime_violation_count(rt, NDISSHM_VIOLATION_DOUBLE_FREE), losers);
    EXPECT_EQ(tally.by_kind[NDISSHM_VIOLATION_DOUBLE_FREE].load(), losers);
    EXPECT_EQ(all_violations(rt), losers) << "only double frees were expected";
    ndisshm_adapter_stats stats{};
    ASSERT_EQ(ndisshm_adapter_get_stats(adapter, &stats), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats.total.blocks, 0u);
    EXPECT_EQ(stats.total.allocations, allocated);
    EXPECT_EQ(stats.total.frees, allocated);
    ndisshm_binding_destroy(binding);
    ndisshm_adapter_destroy(adapter);
    EXPECT_EQ(all_violations(rt), losers) << "teardown found something left";
    ndisshm_runtime_destroy(rt);
}

}  // namespace
