// The default provider: host memory, as NDIS gives when no provider registered.
//
// Blocks come from memfd arenas (so even default blocks are shareable by fd + offset), one arena per
// NUMA node, made the first time a block is asked of that node: PreferredNode picks the node,
// MM_ANY_NODE_OK the node of the CPU the calling thread runs on. SG elements are what the address mode
// says (address_mode.hpp); a block is always one range of its arena.
//
// Pages (PageMode): Huge makes every arena of 2 MiB hugetlb pages and fails creation when the system
// has none free; Base makes them of 4 KiB pages (transparent huge pages advised); Auto is Huge when
// huge pages are free when the provider is made, else Base. In Auto, a node whose huge page arena
// cannot have more huge pages (the pool ran dry, or the arena is full) gets a second arena of 4 KiB
// pages and serves from it what the first cannot: Auto never fails for want of huge pages while the
// machine has memory. memory_stats().page_mode is the mode the primary arenas use.
//
// In Auto, a huge page arena that refused a block (its pool dry) is passed over for the node's 4 KiB
// arena until a huge page's worth of blocks has been freed back into it (or, per thread, every 1024th
// allocation asks it again): asking a dry pool first cost every allocation a failed trip through the
// huge arena (about 500 ns).
//
// Owners: a block goes back to the adapter that freed it as it was (memory/arena.hpp says which blocks);
// to anyone else, cleared. With zero_ahead, a background thread (memory/zeroer.hpp, SCHED_IDLE) clears
// freed blocks that are in no CPU's cache before they are asked for.
//
// Tokens pack the arena and the block's place in it, so freeing needs no lookup table and no
// allocation per block; the arena refuses any token that is not a live block of it.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.hpp"
#include "memory/arena.hpp"
#include "memory/zeroer.hpp"
#include "providers/address_mode.hpp"
#include "providers/provider.hpp"

namespace ndisshm::providers {

enum class PageMode : uint32_t { Auto = 0, Huge = 1, Base = 2 };             // = ndisshm_page_mode
enum class AddressMode : uint32_t { Iova = 0, Physical = 1, ArenaOffset = 2 };  // = ndisshm_address_mode

struct DefaultProviderConfig {
    memory::ArenaConfig arena;  // capacity per arena (one arena per NUMA node used); name is the prefix
    uint64_t iova_base = 0;     // 0: IOVA = VA
    PageMode page_mode = PageMode::Auto;
    AddressMode address_mode = AddressMode::Iova;
    uint64_t zero_by_release_bytes = 0;  // 0: the measured default; UINT64_MAX: always memset
    bool cpu_cache = true;               // per-CPU caches of freed small blocks (off: every call takes the lock)
    bool zero_ahead = false;             // a background thread clears freed blocks ahead of time (with cpu_cache)
};

// What `ndisshm stat` and ndisshm_runtime_get_memory_stats show.
struct MemoryStats {
    PageMode page_mode = PageMode::Base;  // in use: never Auto
    uint64_t page_bytes = 4096;
    bool thp_advised = false;
    AddressMode address_mode = AddressMode::Iova;
    uint32_t arenas = 0;
    uint32_t numa_nodes = 1;
    uint64_t reserved_bytes = 0, file_bytes = 0, bytes_in_use = 0, blocks_in_use = 0, high_water_bytes = 0;
    uint64_t largest_free_bytes = 0, zeroed_by_memset_bytes = 0, zeroed_by_release_bytes = 0;
    uint64_t cache_hits = 0, cache_misses = 0;
    uint64_t owner_reuses = 0, zeroed_ahead_bytes = 0, served_pre_zeroed = 0;
    bool zero_ahead = false;  // the zeroer runs
    static constexpr unsigned kMaxNodes = 64;
    uint64_t node_bytes_in_use[kMaxNodes] = {};
};

class DefaultProvider final : public Provider {
public:
    static Result<std::unique_ptr<DefaultProvider>> create(const DefaultProviderConfig& config);
    ~DefaultProvider() override;

    ProviderStatus allocate(const Request& request, SgSink& sg, Grant& grant) override;
    void free(uint64_t token) override;
    std::string describe() const override;

    // The first arena made: the one of the node of the thread that created the provider.
    memory::Arena& arena() { return *arena_at(first_slot_); }
    // The arena of `node`, nullptr until a block was asked of it. `overflow`: Auto's 4 KiB arena.
    memory::Arena* arena_of(unsigned node, bool overflow = false) const {
        return node < MemoryStats::kMaxNodes ? arena_at(node * 2 + (overflow ? 1 : 0)) : nullptr;
    }
    PageMode page_mode() const { return mode_; }
    MemoryStats memory_stats() const;
    // Tokens free() refused (not a live block): should stay 0.
    uint64_t refused_frees() const { return refused_frees_.load(std::memory_order_relaxed); }

private:
    static constexpr unsigned kSlots = MemoryStats::kMaxNodes * 2;  // [node * 2]: primary, [+1]: Auto's overflow

    DefaultProvider(const DefaultProviderConfig& config, PageMode mode, SgDescriber describer);
    memory::Arena* arena_at(unsigned slot) const { return arenas_[slot].load(std::memory_order_acquire); }
    // The arena in `slot`, made if it is not there yet. Errors are the arena's (OS errno and text).
    Result<memory::Arena*> arena_for(unsigned slot);
    Result<std::unique_ptr<memory::Arena>> make_arena(unsigned slot) const;

    DefaultProviderConfig config_;
    PageMode mode_;           // Huge or Base
    bool overflow_;           // Auto with huge pages: nodes may get a 4 KiB arena too
    SgDescriber describer_;
    unsigned first_slot_ = 0;
    std::array<std::atomic<memory::Arena*>, kSlots> arenas_{};
    std::array<std::atomic<bool>, MemoryStats::kMaxNodes> no_huge_{};  // Auto: this node's huge arena failed
    // Auto: this node's huge arena refused a block, and less than a huge page has been freed into it
    // since (huge_freed_: the bytes).
    std::array<std::atomic<bool>, MemoryStats::kMaxNodes> huge_dry_{};
    std::array<std::atomic<uint64_t>, MemoryStats::kMaxNodes> huge_freed_{};
    std::mutex create_mu_;  // making arenas
    std::vector<std::unique_ptr<memory::Arena>> owned_;  // under create_mu_
    std::atomic<uint64_t> refused_frees_{0};
    std::unique_ptr<memory::Zeroer> zeroer_;  // after owned_: stopped before any arena goes
};

}  // namespace ndisshm::providers
