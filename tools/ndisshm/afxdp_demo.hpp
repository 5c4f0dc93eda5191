// `ndisshm demo --nic afxdp`: the live demo on real kernel packets. The same
// host (a hub with the guest provider on its adapter) and the same guest
// processes as the emulated demo, but each guest's queue is fed by the AF_XDP
// miniport (nic::AfxdpHubNic): one veth pair per guest between two network
// namespaces of the demo's own, UDP datagrams sent on one end, and the kernel
// writes each frame (through an AF_XDP socket whose UMEM is a block of the
// guest's memory) straight into the guest, which checks the datagram's
// payload in place (`guest --verify --frame-offset 42`).
//
// Only the zero-copy path runs: the hub's copy path goes through host queues
// of the emulated miniport, which this NIC does not have. The summary keeps
// the emulated demo's shape (its copy row empty, no ratio); the AF_XDP
// against AF_PACKET-and-copy comparison is bench/afxdp_bench.cpp.
#pragma once

#include "live_summary.hpp"

namespace ndisshm::cli {

// 0 when every datagram sent reached its guest intact and in order, nothing
// leaked and the verifier found nothing; 1 otherwise (the problems on
// stderr), and 1 at once, with the reason, where root, network namespaces or
// AF_XDP are not available.
int run_afxdp_demo(const LiveDemoOptions& options);

}  // namespace ndisshm::cli
