// The default provider: host memory, as NDIS gives when no provider registered.
//
// Blocks come from one memfd arena (so even default blocks are shareable by
// fd + offset). SG addresses are IO virtual: iova_base + offset in the arena,
// with iova_base defaulting to the arena's address (DPDK's IOVA-as-VA).
// A block is one address range, so it is always described by one element.
#pragma once

#include <atomic>
#include <memory>

#include "base/result.hpp"
#include "memory/arena.hpp"
#include "providers/provider.hpp"

namespace ndisshm::providers {

enum class PageMode : uint32_t { Auto = 0, Huge = 1, Base = 2 };             // = ndisshm_page_mode
enum class AddressMode : uint32_t { Iova = 0, Physical = 1, ArenaOffset = 2 };  // = ndisshm_address_mode

struct DefaultProviderConfig {
    memory::ArenaConfig arena;  // capacity per arena (one arena per NUMA node used)
    uint64_t iova_base = 0;     // 0: IOVA = VA
    PageMode page_mode = PageMode::Auto;
    AddressMode address_mode = AddressMode::Iova;
    uint64_t zero_by_release_bytes = 0;  // 0: the measured default; UINT64_MAX: always memset
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
    static constexpr unsigned kMaxNodes = 64;
    uint64_t node_bytes_in_use[kMaxNodes] = {};
};

class DefaultProvider final : public Provider {
public:
    static Result<std::unique_ptr<DefaultProvider>> create(const DefaultProviderConfig& config);

    ProviderStatus allocate(const Request& request, SgSink& sg, Grant& grant) override;
    void free(uint64_t token) override;
    std::string describe() const override;

    memory::Arena& arena() { return *arena_; }
    MemoryStats memory_stats() const;
    // Tokens free() refused (not a live block): should stay 0.
    uint64_t refused_frees() const { return refused_frees_.load(std::memory_order_relaxed); }

private:
    DefaultProvider(std::unique_ptr<memory::Arena> arena, uint64_t iova_base);

    std::unique_ptr<memory::Arena> arena_;
    uint64_t iova_base_;
    std::atomic<uint64_t> refused_frees_{0};
};

}  // namespace ndisshm::providers
