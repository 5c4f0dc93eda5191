// AfxdpHubNic: a hub (<ndisshm/hub.h>) whose guests' queues are fed by real
// kernel packets through AF_XDP: what `ndisshm demo --nic afxdp` runs on.
//
// It makes a private wire (os::VethLinks: one veth pair per guest queue,
// between two network namespaces of its own), and makes an AfxdpGuestDriver
// the hub's queue driver: guest queue first_queue_id + i is fed by AF_XDP on
// the receive end of link i, its UMEM carved out of that guest's memory.
// Senders on the transmit end of link i (sender()) then reach that guest:
// each UDP datagram becomes one Ethernet frame the kernel writes straight
// into the guest, which reads it in place; its payload starts
// kUdpPayloadOffset bytes into the packet.
//
// Order of calls (the hub's queue driver must exist before the hub starts
// and outlive its stop):
//   ndisshm_hub_create -> AfxdpHubNic::attach -> ndisshm_hub_start -> ...
//   -> ndisshm_hub_stop -> ~AfxdpHubNic -> ndisshm_hub_destroy
//
// Flow control: a frame is busy from the moment a datagram is sent until the
// guest gives its packet back, so a sender that keeps
//   sent - returned(queue) < frames_per_queue
// never finds the fill ring empty: no packet is lost.
#pragma once

#include <ndisshm/hub.h>

#include <memory>
#include <string>

#include "base/result.hpp"
#include "hub/afxdp_guest_driver.hpp"
#include "os/netns.hpp"

namespace ndisshm::nic {

struct AfxdpHubNicConfig {
    uint32_t links = 1;                // veth pairs: guest queues fed (at most the hub's max_guests)
    uint32_t frames_per_queue = 1024;  // UMEM frames of each guest queue
    uint32_t frame_bytes = 4096;       // 2048 or 4096
    std::string tag = "ndx";           // names: see os::VethLinks (1..8 of a-z0-9)
};

class AfxdpHubNic {
public:
    // Ethernet (14) + IPv4 (20, no options) + UDP (8) headers, before the payload.
    static constexpr uint32_t kUdpPayloadOffset = 42;
    static constexpr uint16_t kUdpPort = 50000;

    // Why it cannot run here ("" when it can): not root, namespaces or AF_XDP
    // refused, no iproute2.
    static std::string unavailable_reason();

    // After ndisshm_hub_create, before ndisshm_hub_start (fails otherwise).
    // The guest's memory must hold frames_per_queue * frame_bytes bytes more
    // than the hub's own blocks_per_queue * block_bytes.
    static Result<std::unique_ptr<AfxdpHubNic>> attach(ndisshm_hub* hub, const AfxdpHubNicConfig& config);
    ~AfxdpHubNic();  // after ndisshm_hub_stop: removes the namespaces and links
    AfxdpHubNic(const AfxdpHubNic&) = delete;
    AfxdpHubNic& operator=(const AfxdpHubNic&) = delete;

    // A UDP sender on the transmit end of the link that feeds guest queue `queue`.
    Result<std::unique_ptr<os::UdpSender>> sender(uint32_t queue) const;
    // Packets of `queue` the guest gave back so far (see flow control above).
    uint64_t returned(uint32_t queue) const;
    uint32_t frames_per_queue() const { return config_.frames_per_queue; }

    AfxdpGuestDriver& driver() { return *driver_; }
    const os::VethLinks& links() const { return *links_; }
    // Which link feeds `queue`, or -1.
    int link_of(uint32_t queue) const;

private:
    AfxdpHubNic() = default;
    AfxdpHubNicConfig config_;
    uint32_t first_queue_id_ = 1;
    std::unique_ptr<os::VethLinks> links_;
    std::unique_ptr<AfxdpGuestDriver> driver_;  // destroyed before links_: sockets go before their interfaces
};

}  // namespace ndisshm::nic
