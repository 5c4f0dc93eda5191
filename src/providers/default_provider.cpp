#include "providers/default_provider.hpp"

#include <algorithm>

#include "os/os.hpp"

namespace ndisshm::providers {
namespace {

constexpr uint32_t kAnyNode = 0x80000000u;  // MM_ANY_NODE_OK

// Token layout: bit 0 always set (tokens are never 0), the block's units (4 KiB) in bits 1..21 (Length
// is a ULONG: at most 2^20 units), its arena slot in bits 22..28, its first unit above (35 bits: arenas
// up to 128 TiB).
constexpr unsigned kPagesBits = 21, kSlotBits = 7;
constexpr unsigned kSlotShift = 1 + kPagesBits, kFirstShift = kSlotShift + kSlotBits;
constexpr uint64_t kPagesMask = (uint64_t{1} << kPagesBits) - 1;
constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;
static_assert(MemoryStats::kMaxNodes * 2 <= kSlotMask + 1, "every arena slot fits in a token");

uint64_t make_token(unsigned slot, uint64_t first_page, uint64_t pages) {
    return 1 | pages << 1 | uint64_t{slot} << kSlotShift | first_page << kFirstShift;
}
uint64_t token_pages(uint64_t token) { return (token >> 1) & kPagesMask; }
unsigned token_slot(uint64_t token) { return static_cast<unsigned>((token >> kSlotShift) & kSlotMask); }
uint64_t token_first_page(uint64_t token) { return token >> kFirstShift; }

bool huge_slot(PageMode mode, unsigned slot) { return mode == PageMode::Huge && slot % 2 == 0; }

}  // namespace

Result<std::unique_ptr<DefaultProvider>> DefaultProvider::create(const DefaultProviderConfig& config) {
    const uint64_t unit = os::page_size();
    if (config.arena.capacity_bytes / unit >= (uint64_t{1} << (64 - kFirstShift)))
        return Error{"default provider", EINVAL, "arena capacity above 128 TiB"};
    auto describer = SgDescriber::create(static_cast<uint32_t>(config.address_mode), config.iova_base);
    if (!describer) return describer.error();

    // The first arena now, on the creating thread's node: it settles Auto, and a Huge provider that
    // cannot have huge pages is refused here rather than at its first allocation.
    const unsigned node = std::min(os::current_node(), MemoryStats::kMaxNodes - 1);
    PageMode mode = config.page_mode == PageMode::Base ? PageMode::Base : PageMode::Huge;
    // Auto does not even try without free huge pages: the probe would only fail, more slowly.
    if (config.page_mode == PageMode::Auto && os::free_huge_pages() == 0) mode = PageMode::Base;
    std::unique_ptr<DefaultProvider> p(new DefaultProvider(config, mode, *describer));
    p->first_slot_ = node * 2;
    auto first = p->arena_for(p->first_slot_);
    if (!first && config.page_mode == PageMode::Auto && mode == PageMode::Huge) {
        p.reset(new DefaultProvider(config, PageMode::Base, *describer));
        p->first_slot_ = node * 2;
        first = p->arena_for(p->first_slot_);
    }
    if (!first) {
        Error e = first.error();
        if (config.page_mode == PageMode::Huge) e.operation = "page_mode HUGE: " + e.operation;
        return e;
    }
    return p;
}

DefaultProvider::DefaultProvider(const DefaultProviderConfig& config, PageMode mode, SgDescriber describer)
    : config_(config), mode_(mode), overflow_(config.page_mode == PageMode::Auto && mode == PageMode::Huge),
      describer_(describer) {
    if (config.zero_ahead && config.cpu_cache) zeroer_ = std::make_unique<memory::Zeroer>();
}

DefaultProvider::~DefaultProvider() {
    if (zeroer_) zeroer_->stop();  // before the arenas it clears go
}

Result<std::unique_ptr<memory::Arena>> DefaultProvider::make_arena(unsigned slot) const {
    memory::ArenaConfig c = config_.arena;
    const bool huge = huge_slot(mode_, slot);
    c.node = static_cast<int>(slot / 2);
    c.huge_pages = huge;
    c.cpu_cache = config_.cpu_cache;
    c.zero_by_release_bytes = config_.zero_by_release_bytes;
    c.zeroer = zeroer_.get();
    c.name = config_.arena.name + "-node" + std::to_string(slot / 2) + (huge ? "-2M" : "-4K");
    return memory::Arena::create(c);
}

Result<memory::Arena*> DefaultProvider::arena_for(unsigned slot) {
    if (memory::Arena* a = arena_at(slot)) return a;
    std::lock_guard lock(create_mu_);
    if (memory::Arena* a = arena_at(slot)) return a;  // made by another thread meanwhile
    auto made = make_arena(slot);
    if (!made) return made.error();
    memory::Arena* a = made->get();
    owned_.push_back(std::move(*made));
    if (zeroer_) zeroer_->add(a);
    arenas_[slot].store(a, std::memory_order_release);
    return a;
}

ProviderStatus DefaultProvider::allocate(const Request& request, SgSink& sg, Grant& grant) {
    const unsigned nodes = os::numa_node_count();
    if (request.preferred_node != kAnyNode && request.preferred_node >= nodes) {
        grant.error = "PreferredNode " + std::to_string(request.preferred_node) + " does not exist (this machine has " +
                      std::to_string(nodes) + " NUMA node(s))";
        return ProviderStatus::InvalidParameter;
    }
    const unsigned node = request.preferred_node == kAnyNode ? os::current_node() : request.preferred_node;
    if (node >= MemoryStats::kMaxNodes) {
        grant.error = "NUMA node " + std::to_string(node) + " is beyond the " +
                      std::to_string(MemoryStats::kMaxNodes) + " nodes the default provider serves";
        return ProviderStatus::Resources;
    }
    // The node's primary arena, then (Auto with huge pages only) its 4 KiB overflow arena.
    std::string why;
    for (unsigned slot = node * 2; slot < node * 2 + (overflow_ ? 2 : 1); ++slot) {
        const bool huge = huge_slot(mode_, slot);
        if (huge && overflow_) {
            if (no_huge_[node].load(std::memory_order_relaxed)) continue;
            // A dry pool is asked again when a block comes back to it, or now and then in case the
            // system's pool has grown (a counter per thread: no shared line written per allocation).
            thread_local unsigned skipped = 0;
            if (huge_dry_[node].load(std::memory_order_relaxed) && ++skipped % 1024 != 0) continue;
        }
        auto arena = arena_for(slot);
        if (!arena) {
            // Auto: a node whose huge page arena cannot be made is served by its 4 KiB arena from now on.
            if (huge && overflow_) no_huge_[node].store(true, std::memory_order_relaxed);
            why = arena.error().message();
            continue;
        }
        memory::Arena& a = **arena;
        auto block = a.allocate(request.length, request.contiguous, request.owner);
        if (!block) {
            if (huge && overflow_ && !huge_dry_[node].load(std::memory_order_relaxed)) {
                huge_freed_[node].store(0, std::memory_order_relaxed);
                huge_dry_[node].store(true, std::memory_order_relaxed);
            }
            why = block.error().message();
            continue;
        }
        // IOVAs of different arenas must not collide: with an iova_base, each
        // arena slot gets its own window of the IO address space (slot x
        // capacity); with IOVA = VA they are distinct already.
        const uint64_t window = config_.address_mode == AddressMode::Iova && config_.iova_base != 0
                                    ? uint64_t{slot} * config_.arena.capacity_bytes
                                    : 0;
        const SgBlock b{block->address, request.length, window + block->offset};
        const SgResult described = describer_.describe(b, request.contiguous, sg);
        if (!described.ok()) {
            a.free(block->offset, block->length);
            grant.error = described.error;
            return described.status;
        }
        grant.virtual_address = block->address;
        grant.node = static_cast<int32_t>(node);
        grant.token = make_token(slot, block->offset >> a.unit_shift(), block->length >> a.unit_shift());
        return ProviderStatus::Success;
    }
    grant.error = why;
    return ProviderStatus::Resources;
}

void DefaultProvider::free(uint64_t token) {
    memory::Arena* a = (token & 1) != 0 && token_slot(token) < kSlots ? arena_at(token_slot(token)) : nullptr;
    if (a != nullptr) {
        const uint64_t offset = token_first_page(token) << a->unit_shift();
        const uint64_t length = token_pages(token) << a->unit_shift();
        if (describer_.locks_pages() && a->is_live(offset, length))
            describer_.release(SgBlock{a->base() + offset, length, offset});
        if (a->free(offset, length)) {
            // Auto: memory came back to a huge page arena that had run dry. Once a huge page's worth has,
            // it may serve again. (Not at the first block: with threads on several CPUs, that block sits
            // in one CPU's cache, and the others would each pay a failed trip for it.)
            const unsigned slot = token_slot(token);
            if (overflow_ && slot % 2 == 0 && huge_dry_[slot / 2].load(std::memory_order_relaxed) &&
                huge_freed_[slot / 2].fetch_add(length, std::memory_order_relaxed) + length >= os::kHugePageBytes) {
                huge_freed_[slot / 2].store(0, std::memory_order_relaxed);
                huge_dry_[slot / 2].store(false, std::memory_order_relaxed);
            }
            return;
        }
    }
    refused_frees_.fetch_add(1, std::memory_order_relaxed);
}

MemoryStats DefaultProvider::memory_stats() const {
    MemoryStats m;
    m.page_mode = mode_;
    m.page_bytes = mode_ == PageMode::Huge ? os::kHugePageBytes : os::page_size();
    m.address_mode = config_.address_mode;
    m.numa_nodes = os::numa_node_count();
    m.zero_ahead = zeroer_ != nullptr;
    for (unsigned slot = 0; slot < kSlots; ++slot) {
        const memory::Arena* a = arena_at(slot);
        if (a == nullptr) continue;
        const memory::ArenaStats s = a->stats();
        ++m.arenas;
        m.thp_advised = m.thp_advised || a->thp_advised();
        m.reserved_bytes += s.capacity_bytes;
        m.file_bytes += s.file_bytes;
        m.bytes_in_use += s.bytes_in_use;
        m.blocks_in_use += s.blocks_in_use;
        m.high_water_bytes += s.high_water_bytes;
        m.largest_free_bytes = std::max(m.largest_free_bytes, s.largest_free_bytes);
        m.zeroed_by_memset_bytes += s.zeroed_by_memset_bytes;
        m.zeroed_by_release_bytes += s.zeroed_by_release_bytes;
        m.cache_hits += s.cache_hits;
        m.cache_misses += s.cache_misses;
        m.owner_reuses += s.owner_reuses;
        m.zeroed_ahead_bytes += s.zeroed_ahead_bytes;
        m.served_pre_zeroed += s.served_pre_zeroed;
        m.node_bytes_in_use[slot / 2] += s.bytes_in_use;
    }
    return m;
}

std::string DefaultProvider::describe() const {
    const MemoryStats m = memory_stats();
    return "default (host memory, " + std::to_string(m.arenas) + " memfd arena(s) '" + config_.arena.name + "-*' of " +
           (mode_ == PageMode::Huge ? "2 MiB" : "4 KiB") + " pages, " + std::to_string(m.bytes_in_use) + " bytes in " +
           std::to_string(m.blocks_in_use) + " blocks)";
}

}  // namespace ndisshm::providers
