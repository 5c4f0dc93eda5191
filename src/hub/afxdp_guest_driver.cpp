#include "hub/afxdp_guest_driver.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace ndisshm::nic {

namespace {
// How long a batch waits for a guest whose socket is full before it is
// dropped: long enough for a guest that is merely busy, short enough that one
// that stopped reading cannot hold the queue's receive thread.
constexpr auto kSlowGuest = std::chrono::milliseconds(200);
}  // namespace

AfxdpGuestDriver::AfxdpGuestDriver(NDIS_HANDLE adapter, Resolve resolve)
    : resolve_(std::move(resolve)),
      miniport_(adapter,
                [this](NDIS_RECEIVE_QUEUE_ID q, std::span<const AfxdpPacket> p) { indicate(q, p); }) {}

AfxdpGuestDriver::~AfxdpGuestDriver() = default;

NDIS_STATUS AfxdpGuestDriver::start_queue(ipc::GuestHub& hub, uint32_t queue, std::string* why) {
    const auto config = resolve_(queue);
    if (!config) {
        if (why != nullptr) *why = "no interface queue feeds guest queue " + std::to_string(queue);
        return NDIS_STATUS_RESOURCES;
    }
    {
        // Known before the first packet can be indicated.
        std::lock_guard lock(mu_);
        hubs_[queue] = &hub;
    }
    const NDIS_STATUS s = miniport_.start_queue(queue, *config, why);
    if (s != NDIS_STATUS_SUCCESS) {
        std::lock_guard lock(mu_);
        hubs_.erase(queue);
    }
    return s;
}

void AfxdpGuestDriver::stop_queue(uint32_t queue) {
    // The receive thread is joined inside: after this no indicate runs for
    // the queue, so its hub entry can go.
    miniport_.stop_queue(queue);
    std::lock_guard lock(mu_);
    hubs_.erase(queue);
}

bool AfxdpGuestDriver::give_back(uint32_t queue, const ipc::PacketDescriptor& d) {
    if (!miniport_.give_back(queue, d.handle, d.offset, d.length, d.cookie)) return false;
    returned_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void AfxdpGuestDriver::indicate(NDIS_RECEIVE_QUEUE_ID queue, std::span<const AfxdpPacket> packets) {
    ipc::GuestHub* hub = nullptr;
    {
        std::lock_guard lock(mu_);
        auto it = hubs_.find(queue);
        if (it != hubs_.end()) hub = it->second;
    }
    std::vector<ipc::PacketDescriptor> batch;
    batch.reserve(packets.size());
    for (const AfxdpPacket& p : packets) batch.push_back({p.handle, p.offset, p.length, p.cookie});
    // The packets are in the guest's memory already: only their place is sent.
    // A guest whose ring is full is slow, not gone: wait for it a little
    // (meanwhile these frames stay off the fill ring, so the kernel runs out
    // of frames and drops at the wire, as a NIC with a full ring does), and
    // drop only after kSlowGuest.
    size_t done = 0;
    const auto give_up = std::chrono::steady_clock::now() + kSlowGuest;
    while (hub != nullptr && done < batch.size()) {
        const size_t n = std::min(batch.size() - done, static_cast<size_t>(ipc::GuestHub::kMaxAnnounce));
        const ipc::Delivery d = hub->announce(queue, std::span(batch).subspan(done, n));
        if (d == ipc::Delivery::Delivered) {
            done += n;
        } else if (d == ipc::Delivery::NoGuest || std::chrono::steady_clock::now() >= give_up) {
            break;
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    }
    announced_.fetch_add(done, std::memory_order_relaxed);
    // What the guest could not take: its frames back to the kernel at once.
    for (size_t i = done; i < packets.size(); ++i)
        miniport_.give_back(queue, packets[i].handle, packets[i].offset, packets[i].length,
                            packets[i].cookie);
    dropped_.fetch_add(packets.size() - done, std::memory_order_relaxed);
}

AfxdpGuestDriverStats AfxdpGuestDriver::stats() const {
    return {announced_.load(std::memory_order_relaxed), dropped_.load(std::memory_order_relaxed),
            returned_.load(std::memory_order_relaxed)};
}

}  // namespace ndisshm::nic
