// `ndisshm demo --nic afxdp`: the live demo on real kernel packets, over
// <ndisshm/afxdp.h>. The same host and guest processes as the emulated
// source, but each guest's queue is fed by the AF_XDP NIC: one veth pair per
// guest between two network namespaces of the demo's own, UDP datagrams sent
// on one end, and the kernel writes each frame (through an AF_XDP socket
// whose UMEM is a block of the guest's memory) straight into the guest, which
// checks the datagram's payload in place (`guest --verify --frame-offset 42`).
//
// Only the zero-copy path runs: the hub's copy path goes through host queues
// of the emulated miniport, which this NIC does not have. The summary keeps
// the emulated demo's shape (its copy row empty, no ratio); the AF_XDP
// against AF_PACKET-and-copy comparison is bench/afxdp_bench.cpp.
#pragma once

#include <memory>
#include <string>

#include "demo/traffic_source.hpp"

namespace ndisshm::cli {

// Why it cannot run here (root, network namespaces, AF_XDP), "" when it can.
std::string afxdp_unavailable_reason();

std::unique_ptr<TrafficSource> make_afxdp_source(const DemoOptions& options);

}  // namespace ndisshm::cli
