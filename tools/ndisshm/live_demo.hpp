// `ndisshm demo`: the whole system working for real. A host with an emulated
// VMQ NIC (the hub's adapter, the guest provider registered on it), two or
// more guest processes (this binary's `guest --verify`), traffic for a few
// seconds through each guest's queue straight into its memory (zero copy),
// then the same traffic through host queues and a copy (the path VMQ exists
// to avoid), each guest checking every packet in place; a summary, and the
// teardown audited: nothing lost, nothing leaked, no verifier finding.
#pragma once

#include "live_summary.hpp"

namespace ndisshm::cli {

// 0 when every packet arrived intact and in order, nothing leaked and the
// verifier found nothing; 1 otherwise, with the problems on stderr.
int run_live_demo(const LiveDemoOptions& options);

// The slot size the demo's queues need for these packet sizes: 2048, or the
// largest size rounded up to 64 bytes.
uint32_t slot_bytes_for(const std::vector<uint32_t>& packet_sizes);

// The memory a demo with these options maps: each guest's memory and each
// host queue's buffers (options.queues resolved, not 0).
uint64_t demo_memory_bytes(const LiveDemoOptions& options);

}  // namespace ndisshm::cli
