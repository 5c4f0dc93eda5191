// `ndisshm demo` (--nic emulated, the default): the hub's own emulated VMQ
// NIC feeds the guests' queues. Each guest's queue gets its packets straight
// into the guest's memory (zero copy), then, as long again, through a host
// queue (host memory) and a copy into the guest: the path VMQ exists to
// avoid. Queues guests + 1 .. options.queues are those host queues, shared
// round robin.
#pragma once

#include <memory>

#include "demo/traffic_source.hpp"

namespace ndisshm::cli {

std::unique_ptr<TrafficSource> make_emulated_source(const DemoOptions& options);

}  // namespace ndisshm::cli
