#include "memory/cpu_cache.hpp"

#include <algorithm>

#include "os/os.hpp"

namespace ndisshm::memory {

bool CpuCache::Slot::pop(uint64_t pages, uint64_t& out) {
    uint16_t& n = count_[pages];
    if (n == 0) return false;
    // Last in, first out: the block freed most recently is the likeliest to be in this CPU's caches.
    out = entries_[offset(pages) + --n];
    cached_pages -= pages;
    --cached_blocks;
    return true;
}

bool CpuCache::Slot::push(uint64_t pages, uint64_t e) {
    uint16_t& n = count_[pages];
    if (n >= capacity(pages)) return false;
    entries_[offset(pages) + n++] = e;
    cached_pages += pages;
    ++cached_blocks;
    return true;
}

unsigned CpuCache::Slot::take_half(uint64_t pages, uint64_t* out) {
    uint16_t& n = count_[pages];
    const unsigned take = std::max(1u, n / 2u);
    if (n == 0) return 0;
    // The oldest entries (the bottom of the stack) go: the newest are the ones still warm in cache.
    uint64_t* base = entries_.data() + offset(pages);
    std::copy(base, base + take, out);
    std::copy(base + take, base + n, base);
    n = static_cast<uint16_t>(n - take);
    cached_pages -= take * pages;
    cached_blocks -= take;
    return take;
}

CpuCache::CpuCache() : slots_(os::cpu_count()), slot_(new Padded[slots_]) {}

CpuCache::Slot& CpuCache::local() { return slot_[os::current_cpu() % slots_].s; }

}  // namespace ndisshm::memory
