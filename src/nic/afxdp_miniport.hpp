// AfxdpMiniport: a receive miniport whose "NIC" is a Linux interface queue
// read through AF_XDP, so the packets it indicates are real kernel packets.
//
// Per receive queue, as a VMQ miniport does it (spec section 4): once the
// queue's allocation has completed, it allocates the queue's receive memory
// with NdisAllocateSharedMemory (QueueId = the queue, Usage = Receive), one
// block for the whole UMEM; registers that block (VirtualAddress, Length)
// as the UMEM of an AF_XDP socket bound to one receive queue of an interface
// (os/xdp_socket); puts every frame of it on the fill ring; and indicates
// each packet the kernel wrote to the consumer by (SharedMemoryHandle,
// offset, length), as NET_BUFFER_SHARED_MEMORY describes it. The consumer
// gives each packet back (give_back) and its frame goes back on the fill
// ring. With the guest provider registered on the adapter and the queue
// assigned to a guest, the block is the guest's memory: the kernel writes
// each packet straight into the guest.
//
// Why one block and no CONTIGUOUS flag: a UMEM is one virtually contiguous
// range, which every block is (one VirtualAddress for Length bytes); the
// kernel pins and maps its pages one by one, so physical contiguity (what
// CONTIGUOUS asks of the SG list) is not needed, and asking it could only
// make the allocation fail where the default provider reports physical runs.
//
// Teardown (stop_queue, the destructor): the receive thread is stopped, then
// the socket closed, and only then is the block freed, so the kernel never
// writes into memory the provider has taken back. Frames the consumer still
// holds are forgotten: the consumer has been stopped.
//
// Threads: each running queue has one receive thread of its own (the NIC's
// interrupt and DPC, in Windows terms) that calls the consumer with each
// batch. give_back may run on any thread, also inside the callback. start and
// stop are for one thread at a time per queue, never the callback's own.
#pragma once

#include <ndis/ndis_shm.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "os/xdp_socket.hpp"

namespace ndisshm::nic {

struct AfxdpQueueConfig {
    std::string ifname;           // the interface whose receive queue this NDIS queue is
    uint32_t nic_queue = 0;       // that receive queue's index on the interface
    std::string netns;            // path of the interface's network namespace; "": the caller's
    uint32_t frames = 1024;       // UMEM frames, 64..16384: the block is frames * frame_bytes
    uint32_t frame_bytes = 4096;  // 2048 or 4096; a packet may be frame_bytes - 256 (kernel headroom)
    bool copy_mode = true;        // XDP_COPY (veth); false: the kernel picks
    // A VMQ's MAC filter: frames for another destination MAC are given back
    // at once, never indicated (what a NIC steers elsewhere). nullopt: all.
    std::optional<std::array<uint8_t, 6>> unicast_filter;
};

// One received packet. `data` is the host's view of it (VirtualAddress +
// offset), for consumers in this process.
struct AfxdpPacket {
    uint64_t handle = 0;  // SharedMemoryHandle of the queue's block
    uint32_t offset = 0;  // in the block
    uint32_t length = 0;
    uint64_t cookie = 0;  // the frame and its generation: give it back unchanged
    const std::byte* data = nullptr;
};

struct AfxdpUmem {
    uint64_t handle = 0;
    std::byte* address = nullptr;
    uint64_t length = 0;
};

struct AfxdpQueueStats {
    uint64_t frames = 0;
    uint64_t indicated = 0;        // packets handed to the consumer
    uint64_t filtered = 0;         // frames for another MAC, given back unseen
    uint64_t returned = 0;         // give_back accepted
    uint64_t refused = 0;          // give_back of something not held (stale, forged, twice)
    uint64_t outstanding = 0;      // held by the consumer now
    uint64_t bad_descriptors = 0;  // rx descriptors naming no frame of ours (should stay 0)
    os::XdpStats kernel;           // the socket's XDP_STATISTICS (0 once closed)
};

// Called on the queue's receive thread, with every packet of one rx ring
// poll; each must be given back sooner or later, else the fill ring runs dry
// and the kernel drops (kernel.fill_ring_empty), as a NIC with no buffers.
using AfxdpIndicate = std::function<void(NDIS_RECEIVE_QUEUE_ID queue, std::span<const AfxdpPacket> packets)>;

class AfxdpMiniport {
public:
    AfxdpMiniport(NDIS_HANDLE adapter, AfxdpIndicate indicate);
    // Stops every queue still running. Destroy it before its adapter: NDIS
    // would otherwise free the blocks (with a leak report) under live sockets.
    ~AfxdpMiniport();
    AfxdpMiniport(const AfxdpMiniport&) = delete;
    AfxdpMiniport& operator=(const AfxdpMiniport&) = delete;

    // Allocates, registers and fills as above, then starts receiving. On
    // failure undoes what it did and returns the NDIS status (the socket's
    // failure is NDIS_STATUS_FAILURE); `why` says what failed and errno's text.
    NDIS_STATUS start_queue(NDIS_RECEIVE_QUEUE_ID queue, const AfxdpQueueConfig& config,
                            std::string* why = nullptr);
    // Stops receiving, closes the socket, then frees the block. No-op for a
    // queue not running.
    void stop_queue(NDIS_RECEIVE_QUEUE_ID queue);

    // Takes a packet back. False, changing nothing, unless (handle, offset,
    // length, cookie) is exactly a packet indicated and not given back yet.
    bool give_back(NDIS_RECEIVE_QUEUE_ID queue, uint64_t handle, uint32_t offset, uint32_t length,
                   uint64_t cookie);

    std::optional<AfxdpUmem> umem(NDIS_RECEIVE_QUEUE_ID queue) const;
    AfxdpQueueStats stats(NDIS_RECEIVE_QUEUE_ID queue) const;

private:
    struct Queue;
    std::shared_ptr<Queue> find(NDIS_RECEIVE_QUEUE_ID queue) const;
    void receive_loop(const std::shared_ptr<Queue>& q);

    NDIS_HANDLE adapter_;
    AfxdpIndicate indicate_;
    mutable std::mutex mu_;  // the map only
    std::map<NDIS_RECEIVE_QUEUE_ID, std::shared_ptr<Queue>> queues_;
};

}  // namespace ndisshm::nic
