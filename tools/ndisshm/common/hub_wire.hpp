// The hub's emulated VMQ NIC as the traffic generator's wire: zero copy
// (ndisshm_hub_deliver_batch: the NIC writes each packet straight into a slot
// of the guest's queue, in the guest's memory) or copy
// (ndisshm_hub_deliver_copy_batch: into a host queue's slot, then the host
// copies it into the guest). A full ring takes fewer: the generator offers the
// rest again.
#pragma once

#include <ndisshm/hub.hpp>

#include "common/traffic.hpp"

namespace ndisshm::cli {

class HubWire final : public Wire {
public:
    explicit HubWire(ndisshm::Hub& hub) : hub_(hub) {}
    size_t send(Path path, Stream& s, std::span<const ndisshm_hub_packet> packets) override;

private:
    ndisshm::Hub& hub_;
};

}  // namespace ndisshm::cli
