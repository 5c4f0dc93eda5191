// `ndisshm demo`: the whole system working for real. A host (a hub whose
// adapter has the guest provider registered on it), two or more guest
// processes (this binary's `guest --verify`), checked traffic for a few
// seconds into each guest's queue, each guest checking every packet in
// place; a summary, and the teardown audited: nothing lost, nothing leaked,
// no verifier finding. What feeds the queues is a TrafficSource
// (traffic_source.hpp): the emulated VMQ NIC, zero copy then copy through
// host queues (--nic emulated), or the AF_XDP NIC on veth pairs (--nic afxdp).
#pragma once

#include "demo/summary.hpp"

namespace ndisshm::cli {

// 0 when every packet arrived intact and in order, nothing leaked and the
// verifier found nothing; 1 otherwise, with the problems on stderr, and 1 at
// once, with the reason, when the chosen NIC cannot run here (--nic afxdp:
// root, network namespaces, AF_XDP).
int run_demo(const DemoOptions& options);

}  // namespace ndisshm::cli
