// AfxdpGuestDriver: the AF_XDP miniport as the GuestHub's queue driver, so
// that real kernel packets land in guest processes' memory with no copy.
//
// When a guest's queue starts, the driver asks `resolve` which interface
// queue feeds it (on a VMQ NIC: the hardware queue the guest's MAC filter
// steers to; here: one veth per guest, typically) and starts an
// AfxdpMiniport queue on it. The UMEM block is allocated for the guest's
// queue, so the guest provider carves it out of the guest's memory and the
// guest hears of it (BLOCK_ADDED). Each packet the kernel writes there is
// announced to the guest as it lies, (handle, offset, length), in its
// receive ring through GuestHub::announce, never a copy. Its completion gives
// the frame back to the kernel's fill ring. A guest whose ring is full is waited
// for (up to 200 ms a batch): its frames stay off the fill ring meanwhile,
// so the kernel drops at the wire, as a NIC with a full ring does; a batch
// it still cannot take, or one for a guest that is going, is given back:
// dropped.
//
// Guest death and host stop: the hub calls stop_queue before it frees the
// queue; the miniport closes the socket before it frees the block, so the
// kernel never writes into memory the guest provider has taken back.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "hub/guest_hub.hpp"
#include "nic/afxdp_miniport.hpp"

namespace ndisshm::nic {

struct AfxdpGuestDriverStats {
    uint64_t announced = 0;  // packets announced to guests
    uint64_t dropped = 0;    // indicated but not announced: the guest was gone or stayed full
    uint64_t returned = 0;   // given back by guests (their completion rings)
};

class AfxdpGuestDriver final : public ipc::QueueDriver {
public:
    // Which interface queue feeds guest queue `queue`; nullopt refuses it.
    using Resolve = std::function<std::optional<AfxdpQueueConfig>(uint32_t queue)>;

    // `adapter`: the hub's adapter (the one the guest provider is registered on).
    AfxdpGuestDriver(NDIS_HANDLE adapter, Resolve resolve);
    ~AfxdpGuestDriver();  // stops any queue still running (the hub stops them first)

    NDIS_STATUS start_queue(ipc::GuestHub& hub, uint32_t queue, std::string* why) override;
    void stop_queue(uint32_t queue) override;
    bool give_back(uint32_t queue, const ipc::PacketDescriptor& d) override;

    AfxdpMiniport& miniport() { return miniport_; }
    AfxdpGuestDriverStats stats() const;

private:
    void indicate(NDIS_RECEIVE_QUEUE_ID queue, std::span<const AfxdpPacket> packets);

    Resolve resolve_;
    mutable std::mutex mu_;
    std::map<uint32_t, ipc::GuestHub*> hubs_;  // running queues
    std::atomic<uint64_t> announced_{0}, dropped_{0}, returned_{0};
    AfxdpMiniport miniport_;  // last: its receive threads use the members above until it stops them
};

}  // namespace ndisshm::nic
