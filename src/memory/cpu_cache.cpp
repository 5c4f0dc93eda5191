#include "memory/cpu_cache.hpp"

#include <algorithm>

#include "os/os.hpp"

namespace ndisshm::memory {

unsigned CpuCache::Slot::take_half(Kind k, uint64_t pages, uint64_t* out) {
    uint16_t& n = count_[k][pages];
    const unsigned take = std::max(1u, n / 2u);
    if (n == 0) return 0;
    // The oldest entries (the bottom of the stack) go: the newest are the ones still warm in cache.
    uint64_t* base = entries_[k].data() + cache_sizes::kOffset[pages];
    std::copy(base, base + take, out);
    std::copy(base + take, base + n, base);
    n = static_cast<uint16_t>(n - take);
    cached_pages -= take * pages;
    cached_blocks -= take;
    return take;
}

CpuCache::CpuCache() : slots_(os::cpu_count()), slot_(new Padded[slots_]) {}

CpuCache::Slot& CpuCache::local() {
    const unsigned cpu = os::current_cpu();  // below cpu_count(): the modulo (a division) only guards hotplug
    return slot_[cpu < slots_ ? cpu : cpu % slots_].s;
}

}  // namespace ndisshm::memory
