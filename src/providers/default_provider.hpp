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

struct DefaultProviderConfig {
    memory::ArenaConfig arena;
    uint64_t iova_base = 0;  // 0: IOVA = VA
};

class DefaultProvider final : public Provider {
public:
    static Result<std::unique_ptr<DefaultProvider>> create(const DefaultProviderConfig& config);

    ProviderStatus allocate(const Request& request, SgSink& sg, Grant& grant) override;
    void free(uint64_t token) override;
    std::string describe() const override;

    memory::Arena& arena() { return *arena_; }
    // Tokens free() refused (not a live block): should stay 0.
    uint64_t refused_frees() const { return refused_frees_.load(std::memory_order_relaxed); }

private:
    DefaultProvider(std::unique_ptr<memory::Arena> arena, uint64_t iova_base);

    std::unique_ptr<memory::Arena> arena_;
    uint64_t iova_base_;
    std::atomic<uint64_t> refused_frees_{0};
};

}  // namespace ndisshm::providers
