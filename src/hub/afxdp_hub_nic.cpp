#include "hub/afxdp_hub_nic.hpp"

#include "hub/hub_state.hpp"
#include "os/xdp_socket.hpp"

namespace ndisshm::nic {

std::string AfxdpHubNic::unavailable_reason() {
    if (std::string why = os::netns_unavailable_reason(); !why.empty()) return why;
    return os::xdp_unavailable_reason();
}

Result<std::unique_ptr<AfxdpHubNic>> AfxdpHubNic::attach(ndisshm_hub* hub, const AfxdpHubNicConfig& config) {
    const std::string what = "AF_XDP NIC for the hub";
    if (hub == nullptr) return Error{what, EINVAL, "no hub"};
    if (hub->started)
        return Error{what, EINVAL, "attach before ndisshm_hub_start: the hub's queue driver is fixed then"};
    if (hub->config.queue_driver != nullptr) return Error{what, EEXIST, "the hub has a queue driver already"};
    if (config.links == 0 || config.links > hub->config.max_guests)
        return Error{what, EINVAL,
                     "links must be 1..max_guests (" + std::to_string(hub->config.max_guests) + ")"};
    std::unique_ptr<AfxdpHubNic> nic(new AfxdpHubNic());
    nic->config_ = config;
    nic->first_queue_id_ = hub->config.first_queue_id;
    auto links = os::VethLinks::create(config.tag, config.links);
    if (!links) return links.error();
    nic->links_ = std::move(*links);

    AfxdpHubNic* self = nic.get();
    nic->driver_ = std::make_unique<AfxdpGuestDriver>(
        hub->adapter, [self](uint32_t queue) -> std::optional<AfxdpQueueConfig> {
            const int link = self->link_of(queue);
            if (link < 0) return std::nullopt;
            const os::VethEnd& end = self->links_->rx(static_cast<uint32_t>(link));
            AfxdpQueueConfig c;
            c.ifname = end.ifname;
            c.nic_queue = 0;  // a veth has one receive queue: the link is the guest's "VF"
            c.netns = end.netns;
            c.frames = self->config_.frames_per_queue;
            c.frame_bytes = self->config_.frame_bytes;
            c.copy_mode = true;
            std::array<uint8_t, 6> mac;
            std::copy(std::begin(end.mac), std::end(end.mac), mac.begin());
            c.unicast_filter =
                mac;  // the guest's MAC filter: only frames for it, never the wire's other chatter
            return c;
        });
    hub->config.queue_driver = nic->driver_.get();
    // A guest whose memory cannot hold the UMEM as well as the hub's own
    // blocks is refused at SET_MEMORY, with the reason, not later.
    const uint64_t need = uint64_t{hub->config.miniport.blocks_per_queue} * hub->config.miniport.block_bytes +
                          uint64_t{config.frames_per_queue} * config.frame_bytes;
    hub->config.memory_limits.min_bytes = std::max(hub->config.memory_limits.min_bytes, need);
    return nic;
}

AfxdpHubNic::~AfxdpHubNic() = default;

int AfxdpHubNic::link_of(uint32_t queue) const {
    if (queue < first_queue_id_ || queue - first_queue_id_ >= links_->count()) return -1;
    return static_cast<int>(queue - first_queue_id_);
}

Result<std::unique_ptr<os::UdpSender>> AfxdpHubNic::sender(uint32_t queue) const {
    const int link = link_of(queue);
    if (link < 0) return Error{"AF_XDP NIC sender", EINVAL, "no link feeds queue " + std::to_string(queue)};
    const auto i = static_cast<uint32_t>(link);
    return os::UdpSender::open(links_->tx(i).netns, links_->rx(i).address, kUdpPort);
}

uint64_t AfxdpHubNic::returned(uint32_t queue) const {
    return driver_->miniport().stats(queue).returned;
}

}  // namespace ndisshm::nic
