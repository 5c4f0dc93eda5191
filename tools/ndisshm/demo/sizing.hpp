// What the live demo's queues and guests need, for its sources and for the
// checks on its flags (common/options.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "demo/summary.hpp"

namespace ndisshm::cli {

// The slot size the demo's queues need for these packet sizes: 2048, or the
// largest size rounded up to 64 bytes.
uint32_t slot_bytes_for(const std::vector<uint32_t>& packet_sizes);

// One guest process's memory: twice what its queue's buffers and
// `extra_bytes` (a NIC's own blocks in it) need, so carving never runs
// short; at least 8 MiB, in whole MiB.
uint64_t guest_memory_bytes(const DemoOptions& options, uint64_t extra_bytes = 0);

// The memory a demo with these options maps: each guest's memory and each
// host queue's buffers (options.queues resolved, not 0).
uint64_t demo_memory_bytes(const DemoOptions& options);

}  // namespace ndisshm::cli
