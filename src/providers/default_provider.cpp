#include "providers/default_provider.hpp"

#include "os/os.hpp"

namespace ndisshm::providers {
namespace {

// A block's token packs its place in the arena, so freeing needs no lookup
// table and no allocation per block: bit 0 is always set (tokens are never
// 0), pages in bits 1..21 (Length is a ULONG: at most 2^20 pages), the first
// page above. The arena refuses any token that is not a live block.
constexpr unsigned kPagesBits = 21;
constexpr uint64_t kPagesMask = (uint64_t{1} << kPagesBits) - 1;

uint64_t make_token(uint64_t first_page, uint64_t pages) {
    return 1 | (pages << 1) | (first_page << (kPagesBits + 1));
}
uint64_t token_pages(uint64_t token) { return (token >> 1) & kPagesMask; }
uint64_t token_first_page(uint64_t token) { return token >> (kPagesBits + 1); }

}  // namespace

Result<std::unique_ptr<DefaultProvider>> DefaultProvider::create(const DefaultProviderConfig& config) {
    auto arena = memory::Arena::create(config.arena);
    if (!arena) return arena.error();
    return std::unique_ptr<DefaultProvider>(new DefaultProvider(std::move(*arena), config.iova_base));
}

DefaultProvider::DefaultProvider(std::unique_ptr<memory::Arena> arena, uint64_t iova_base)
    : arena_(std::move(arena)), iova_base_(iova_base) {}

ProviderStatus DefaultProvider::allocate(const Request& request, SgSink& sg, Grant& grant) {
    constexpr uint32_t kAnyNode = 0x80000000u;
    if (request.preferred_node != kAnyNode && request.preferred_node >= os::numa_node_count()) {
        grant.error = "PreferredNode " + std::to_string(request.preferred_node) + " does not exist (this machine has " +
                      std::to_string(os::numa_node_count()) + " NUMA node(s))";
        return ProviderStatus::InvalidParameter;
    }
    auto block = arena_->allocate(request.length);
    if (!block) {
        grant.error = block.error().message();
        return ProviderStatus::Resources;
    }
    const uint64_t page = arena_->page_bytes();
    const uint64_t base = iova_base_ != 0 ? iova_base_ : reinterpret_cast<uint64_t>(arena_->base());
    sg.add(base + block->offset, request.length);
    grant.virtual_address = block->address;
    grant.node = 0;
    grant.token = make_token(block->offset / page, block->length / page);
    return ProviderStatus::Success;
}

void DefaultProvider::free(uint64_t token) {
    const uint64_t page = arena_->page_bytes();
    if ((token & 1) == 0 || !arena_->free(token_first_page(token) * page, token_pages(token) * page))
        refused_frees_.fetch_add(1, std::memory_order_relaxed);
}

MemoryStats DefaultProvider::memory_stats() const {
    auto a = arena_->stats();
    MemoryStats m;
    m.page_bytes = arena_->page_bytes();
    m.arenas = 1;
    m.numa_nodes = os::numa_node_count();
    m.reserved_bytes = a.capacity_bytes;
    m.file_bytes = a.file_bytes;
    m.bytes_in_use = a.bytes_in_use;
    m.blocks_in_use = a.blocks_in_use;
    m.high_water_bytes = a.high_water_bytes;
    m.zeroed_by_memset_bytes = a.zeroed_bytes;
    m.node_bytes_in_use[0] = a.bytes_in_use;
    return m;
}

std::string DefaultProvider::describe() const {
    auto s = arena_->stats();
    return "default (host memory, memfd arena '" + arena_->name() + "', " + std::to_string(s.bytes_in_use) +
           " bytes in " + std::to_string(s.blocks_in_use) + " blocks)";
}

}  // namespace ndisshm::providers
