// <ndisshm/afxdp.h> over nic::AfxdpHubNic: the AF_XDP NIC of a hub, in C,
// so that tools use it through a public header like any other user. Part of
// ndisshm_afxdp (src/CMakeLists.txt), not of libndisshm: it needs libxdp.
#include "ndisshm/afxdp.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "hub/afxdp_hub_nic.hpp"
#include "os/netns.hpp"

struct ndisshm_afxdp {
    ndisshm_hub* hub = nullptr;
    std::unique_ptr<ndisshm::nic::AfxdpHubNic> nic;
    // One sender per link, made at its first send (so that attach cannot
    // fail once the hub holds the NIC as its queue driver). A socket keeps
    // the namespace it was made in, so each may then send from any thread.
    std::mutex senders_mu;
    std::vector<std::unique_ptr<ndisshm::os::UdpSender>> senders;
};

namespace {

using ndisshm::nic::AfxdpHubNic;

static_assert(AfxdpHubNic::kUdpPort == NDISSHM_AFXDP_UDP_PORT);
static_assert(AfxdpHubNic::kUdpPayloadOffset == NDISSHM_AFXDP_UDP_PAYLOAD_OFFSET);

// As snprintf: at most `bytes` bytes with the NUL; the whole length.
size_t copy_out(const std::string& s, char* buffer, size_t bytes) {
    if (buffer != nullptr && bytes != 0) {
        const size_t n = std::min(s.size(), bytes - 1);
        std::memcpy(buffer, s.data(), n);
        buffer[n] = '\0';
    }
    return s.size();
}

NDIS_STATUS fail(NDIS_STATUS status, const std::string& why, char* error, size_t error_bytes) {
    copy_out(why, error, error_bytes);
    return status;
}

template <size_t N>
void set(char (&field)[N], const std::string& s) {
    copy_out(s, field, N);
}

}  // namespace

extern "C" {

void ndisshm_afxdp_config_init(ndisshm_afxdp_config* config) {
    if (config == nullptr) return;
    *config = ndisshm_afxdp_config{};
    config->struct_size = sizeof(ndisshm_afxdp_config);
    config->links = 1;
    config->frames_per_queue = 1024;
    config->frame_bytes = 4096;
    config->tag = "ndx";
}

size_t ndisshm_afxdp_unavailable_reason(char* buffer, size_t buffer_bytes) {
    return copy_out(AfxdpHubNic::unavailable_reason(), buffer, buffer_bytes);
}

NDIS_STATUS ndisshm_afxdp_attach(ndisshm_hub* hub, const ndisshm_afxdp_config* config, ndisshm_afxdp** nic,
                                 char* error, size_t error_bytes) {
    copy_out("", error, error_bytes);
    ndisshm_afxdp_config c;
    ndisshm_afxdp_config_init(&c);
    if (config != nullptr) {
        if (config->struct_size != sizeof(ndisshm_afxdp_config))
            return fail(NDIS_STATUS_INVALID_PARAMETER, "ndisshm_afxdp_config.struct_size is not sizeof(ndisshm_afxdp_config)",
                        error, error_bytes);
        if (config->links != 0) c.links = config->links;
        if (config->frames_per_queue != 0) c.frames_per_queue = config->frames_per_queue;
        if (config->frame_bytes != 0) c.frame_bytes = config->frame_bytes;
        if (config->tag != nullptr) c.tag = config->tag;
    }
    if (hub == nullptr || nic == nullptr)
        return fail(NDIS_STATUS_INVALID_PARAMETER, "no hub, or nowhere to put the NIC", error, error_bytes);
    if (c.frames_per_queue < 64 || c.frames_per_queue > 16384)
        return fail(NDIS_STATUS_INVALID_PARAMETER, "frames_per_queue must be 64..16384", error, error_bytes);
    if (c.frame_bytes != 2048 && c.frame_bytes != 4096)
        return fail(NDIS_STATUS_INVALID_PARAMETER, "frame_bytes must be 2048 or 4096", error, error_bytes);
    ndisshm::os::VethLinks::sweep_stale();  // namespaces a killed process left behind
    auto made = AfxdpHubNic::attach(hub, {.links = c.links,
                                          .frames_per_queue = c.frames_per_queue,
                                          .frame_bytes = c.frame_bytes,
                                          .tag = c.tag});
    if (!made) {
        const int err = made.error().err;
        return fail(err == EINVAL || err == EEXIST ? NDIS_STATUS_INVALID_PARAMETER : NDIS_STATUS_FAILURE,
                    made.error().message(), error, error_bytes);
    }
    auto n = std::make_unique<ndisshm_afxdp>();
    n->hub = hub;
    n->nic = std::move(*made);
    n->senders.resize(n->nic->links().count());
    *nic = n.release();
    return NDIS_STATUS_SUCCESS;
}

void ndisshm_afxdp_destroy(ndisshm_afxdp* nic) {
    if (nic == nullptr) return;
    // Its queues (and their sockets) stop with the hub, before the wire goes.
    ndisshm_hub_stop(nic->hub);
    delete nic;
}

size_t ndisshm_afxdp_links(const ndisshm_afxdp* nic, ndisshm_afxdp_link* links, size_t capacity) {
    if (nic == nullptr) return 0;
    const ndisshm::os::VethLinks& v = nic->nic->links();
    for (uint32_t i = 0; i < v.count() && i < capacity && links != nullptr; ++i) {
        ndisshm_afxdp_link& l = links[i];
        l = ndisshm_afxdp_link{};
        set(l.rx_ifname, v.rx(i).ifname);
        set(l.tx_ifname, v.tx(i).ifname);
        set(l.rx_address, v.rx(i).address);
        set(l.tx_address, v.tx(i).address);
        set(l.rx_netns, v.rx_netns());
        set(l.tx_netns, v.tx_netns());
    }
    return v.count();
}

int ndisshm_afxdp_link_of(const ndisshm_afxdp* nic, uint32_t queue_id) {
    return nic != nullptr ? nic->nic->link_of(queue_id) : -1;
}

NDIS_STATUS ndisshm_afxdp_send(ndisshm_afxdp* nic, uint32_t queue_id, const ndisshm_hub_packet* payloads, size_t count,
                               size_t* sent, char* error, size_t error_bytes) {
    if (sent != nullptr) *sent = 0;
    const int link = nic != nullptr ? nic->nic->link_of(queue_id) : -1;
    if (link < 0 || sent == nullptr)
        return fail(NDIS_STATUS_INVALID_PARAMETER, "no link feeds queue " + std::to_string(queue_id), error,
                    error_bytes);
    if (count == 0 || count > NDISSHM_AFXDP_MAX_BATCH || payloads == nullptr)
        return fail(NDIS_STATUS_INVALID_PARAMETER, "count must be 1.." + std::to_string(NDISSHM_AFXDP_MAX_BATCH),
                    error, error_bytes);
    std::span<const std::byte> batch[NDISSHM_AFXDP_MAX_BATCH];
    for (size_t i = 0; i < count; ++i) {
        if (payloads[i].length > NDISSHM_AFXDP_MAX_PAYLOAD || (payloads[i].data == nullptr && payloads[i].length != 0))
            return fail(NDIS_STATUS_INVALID_PARAMETER,
                        "a payload is at most " + std::to_string(NDISSHM_AFXDP_MAX_PAYLOAD) + " bytes", error,
                        error_bytes);
        batch[i] = {static_cast<const std::byte*>(payloads[i].data), payloads[i].length};
    }
    ndisshm::os::UdpSender* tx = nullptr;
    {
        std::lock_guard lock(nic->senders_mu);
        auto& slot = nic->senders[static_cast<size_t>(link)];
        if (!slot) {
            const ndisshm::os::VethLinks& v = nic->nic->links();
            const auto i = static_cast<uint32_t>(link);
            auto made = ndisshm::os::UdpSender::open(v.tx(i).netns, v.rx(i).address, AfxdpHubNic::kUdpPort);
            if (!made) return fail(NDIS_STATUS_FAILURE, made.error().message(), error, error_bytes);
            slot = std::move(*made);
        }
        tx = slot.get();
    }
    auto n = tx->send_batch({batch, count});
    if (!n) {
        // ENOBUFS/EAGAIN: the veth's transmit queue is full; the caller offers them again.
        if (n.error().err == ENOBUFS || n.error().err == EAGAIN) return NDIS_STATUS_RESOURCES;
        return fail(NDIS_STATUS_FAILURE, n.error().message(), error, error_bytes);
    }
    *sent = *n;
    return NDIS_STATUS_SUCCESS;
}

uint64_t ndisshm_afxdp_returned(const ndisshm_afxdp* nic, uint32_t queue_id) {
    if (nic == nullptr || nic->nic->link_of(queue_id) < 0) return 0;
    return nic->nic->returned(queue_id);
}

NDIS_STATUS ndisshm_afxdp_get_queue_stats(const ndisshm_afxdp* nic, uint32_t queue_id,
                                          ndisshm_afxdp_queue_stats* stats) {
    if (nic == nullptr || stats == nullptr || nic->nic->link_of(queue_id) < 0) return NDIS_STATUS_INVALID_PARAMETER;
    ndisshm::nic::AfxdpMiniport& m = nic->nic->driver().miniport();
    const ndisshm::nic::AfxdpQueueStats q = m.stats(queue_id);
    *stats = ndisshm_afxdp_queue_stats{};
    stats->running = m.umem(queue_id).has_value() ? 1 : 0;
    stats->frames = static_cast<uint32_t>(q.frames);
    stats->indicated = q.indicated;
    stats->filtered = q.filtered;
    stats->returned = q.returned;
    stats->refused = q.refused;
    stats->outstanding = q.outstanding;
    stats->bad_descriptors = q.bad_descriptors;
    stats->kernel_rx_dropped = q.kernel.rx_dropped;
    stats->kernel_rx_invalid = q.kernel.rx_invalid;
    stats->kernel_rx_ring_full = q.kernel.rx_ring_full;
    stats->kernel_fill_ring_empty = q.kernel.fill_ring_empty;
    return NDIS_STATUS_SUCCESS;
}

}  // extern "C"
