#include "demo/sizing.hpp"

#include <algorithm>

namespace ndisshm::cli {

uint32_t slot_bytes_for(const std::vector<uint32_t>& sizes) {
    const uint32_t largest = sizes.empty() ? 0 : *std::max_element(sizes.begin(), sizes.end());
    return std::max<uint32_t>(2048, (largest + 63) & ~63u);
}

uint64_t guest_memory_bytes(const DemoOptions& o, uint64_t extra_bytes) {
    const uint64_t need = (uint64_t{o.blocks_per_queue} * o.block_bytes + extra_bytes) * 2;
    return std::max<uint64_t>(uint64_t{8} << 20, (need + (1 << 20) - 1) & ~uint64_t{(1 << 20) - 1});
}

uint64_t demo_memory_bytes(const DemoOptions& o) {
    const uint64_t host_queues = o.queues > o.guests ? o.queues - o.guests : 0;
    return o.guests * guest_memory_bytes(o) + host_queues * o.blocks_per_queue * uint64_t{o.block_bytes};
}

}  // namespace ndisshm::cli
