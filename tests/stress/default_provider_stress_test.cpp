// Stress: many threads on the default (memfd arena) provider. Each block is
// filled whole by its owner and checked whole before it is freed, so two
// live blocks that overlap, or a block that arrives with bytes its adapter
// did not write, cannot go unseen (a block may come back to the adapter that
// freed it as it was; to any other adapter it must arrive zeroed). Bounded by
// iteration counts, small enough for TSan/ASan.
#include "stress/stress_support.hpp"

namespace ndisshm::test {

namespace {

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

// Where each freed block was and what it held: a block that arrives not
// zeroed must be one its own adapter freed there, still holding that
// adapter's pattern (as far as the old Length went).
class FreedBlocks {
public:
    struct Was {
        NDIS_HANDLE adapter;
        size_t length;
        uint64_t a, b;  // its pattern
    };
    void note(uintptr_t va, const Was& was) {
        std::lock_guard lock(mu_);
        freed_[va] = was;
    }
    // Whether [va, va + length) is all zero or holds what `adapter` left there.
    bool acceptable(NDIS_HANDLE adapter, const unsigned char* va, size_t length) {
        if (all_zero(va, length)) return true;
        std::lock_guard lock(mu_);
        auto it = freed_.find(reinterpret_cast<uintptr_t>(va));
        if (it == freed_.end() || it->second.adapter != adapter) return false;
        const auto pages = [](size_t n) { return (n + PAGE_SIZE - 1) / PAGE_SIZE; };
        if (pages(it->second.length) != pages(length)) return false;
        return has_pattern(va, std::min(length, it->second.length), it->second.a, it->second.b);
    }

private:
    std::mutex mu_;
    std::map<uintptr_t, Was> freed_;
};

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

TEST(DefaultProviderStress, DefaultProviderBlocksNeverOverlapWhileLiveAndArriveAsTheirAdapterMayHaveThem) {
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
    FreedBlocks freed;
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
            freed.note(reinterpret_cast<uintptr_t>(h.va), {adapter, h.length, uint64_t(tid), h.serial});
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
                if (a.shared_memory_handle != nullptr)
                    failures.add("NDIS's own memory has a SharedMemoryHandle (it must stay NULL)");
                const uintptr_t end = va + (length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
                if (!live.insert(va, end)) {
                    failures.add("a new block overlaps a live block");
                    NdisFreeSharedMemory(adapter, a.handle);
                    continue;
                }
                if (!freed.acceptable(adapter, a.va, length))
                    failures.add("a block arrived neither zeroed nor as its own adapter left it");
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

// Threads each for an adapter of their own, with the background zeroer on:
// blocks go from one adapter to another through the CPUs' caches, the depot
// the zeroer works from and the page allocator, while the zeroer clears
// blocks beside them. A block from another adapter must arrive zeroed, one
// from its own adapter as it was left. Mostly cacheable sizes (4..64 KiB),
// and bursts that fill the caches so that they spill to the zeroer.
TEST(DefaultProviderStress, BlocksChangingAdaptersArriveZeroedWhileTheZeroerRuns) {
    ndisshm_runtime_config config;
    ndisshm_runtime_config_init(&config);
    config.report_to_stderr = 0;
    config.arena_capacity_bytes = uint64_t{1} << 30;
    config.max_blocks = uint64_t{1} << 16;
    config.zero_ahead = NDISSHM_ZERO_AHEAD_ON;
    ndisshm_runtime* rt = nullptr;
    ASSERT_EQ(ndisshm_runtime_create(&config, &rt, nullptr, 0), NDIS_STATUS_SUCCESS);
    std::vector<NDIS_HANDLE> adapters(kThreads);
    for (int t = 0; t < kThreads; ++t)
        ASSERT_EQ(ndisshm_adapter_create(rt, ("owner" + std::to_string(t)).c_str(), &adapters[t]), NDIS_STATUS_SUCCESS);
    constexpr int kSteps = 12000 / kSlowdown;
    LiveRanges live;
    FreedBlocks freed;
    Failures failures;
    std::atomic<uint64_t> not_zero{0};
    auto worker = [&](int tid) {
        const NDIS_HANDLE adapter = adapters[static_cast<size_t>(tid)];
        std::mt19937_64 rng(0x0e0e0000u + static_cast<unsigned>(tid));
        struct Held {
            NDIS_HANDLE handle;
            unsigned char* va;
            ULONG length;
            uint64_t serial;
        };
        std::vector<Held> held;
        uint64_t serial = 0;
        size_t target = 4;
        auto release = [&](size_t i) {
            const Held h = held[i];
            held[i] = held.back();
            held.pop_back();
            if (!has_pattern(h.va, h.length, uint64_t(tid), h.serial))
                failures.add("a live block was written by someone else (overlap or stray write)");
            live.erase(reinterpret_cast<uintptr_t>(h.va));
            freed.note(reinterpret_cast<uintptr_t>(h.va), {adapter, h.length, uint64_t(tid), h.serial});
            NdisFreeSharedMemory(adapter, h.handle);
        };
        for (int step = 0; step < kSteps; ++step) {
            if (step % 200 == 0) target = rng() % 2 == 0 ? 2 : 48;  // bursts overflow the caches
            if (held.size() < target) {
                const ULONG pages = rng() % 16 == 0 ? 17 + static_cast<ULONG>(rng() % 48) : 1 + static_cast<ULONG>(rng() % 16);
                const ULONG length = pages * PAGE_SIZE - static_cast<ULONG>(rng() % 2 == 0 ? 0 : rng() % PAGE_SIZE);
                Allocation a = allocate(adapter, NDIS_DEFAULT_RECEIVE_QUEUE_ID, NdisSharedMemoryUsageReceive, length);
                if (a.status != NDIS_STATUS_SUCCESS) {
                    failures.add(std::string("NdisAllocateSharedMemory: ") + ndisshm_status_name(a.status));
                    continue;
                }
                const auto va = reinterpret_cast<uintptr_t>(a.va);
                if (!live.insert(va, va + (length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE))
                    failures.add("a new block overlaps a live block");
                if (!freed.acceptable(adapter, a.va, length))
                    failures.add("a block arrived holding bytes its adapter did not write");
                if (!all_zero(a.va, length)) not_zero.fetch_add(1);
                fill_pattern(a.va, length, uint64_t(tid), ++serial);
                held.push_back({a.handle, a.va, length, serial});
            } else {
                release(rng() % held.size());
            }
        }
        while (!held.empty()) release(held.size() - 1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.count.load(), 0u) << "first: " << failures.first;
    ndisshm_memory_stats m{};
    ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt, &m), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(m.zero_ahead, 1u);
    EXPECT_EQ(m.blocks_in_use, 0u);
    EXPECT_GT(m.owner_reuses, 0u) << "the same-owner path was taken too";
    EXPECT_LE(not_zero.load(), m.owner_reuses) << "only an owner's own blocks arrive not zeroed";
    EXPECT_EQ(all_violations(rt), 0u);
    ndisshm_runtime_destroy(rt);  // stops the zeroer, whatever it was doing
}

// ---------------------------------------------------------------------------
// A driver bug under concurrency: several threads free the same handles at
// once. The verifier promises that a double free is reported and frees and
// corrupts nothing: whichever thread wins reaches the provider, exactly once,
// and every other free of that handle is one double-free report.
}  // namespace

}  // namespace ndisshm::test
