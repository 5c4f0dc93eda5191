// VmqMiniport: the receive side of a VMQ miniport, as far as shared memory
// goes (spec section 4). Once a queue's allocation has completed, the miniport
// allocates that queue's receive buffers through NdisAllocateSharedMemory
// (QueueId = the queue, Usage = Receive); the NIC then "DMAs" each packet into
// a free slot of them and describes it by (SharedMemoryHandle, offset,
// length), as NET_BUFFER_SHARED_MEMORY does; the consumer gives slots back;
// before the queue is freed the miniport frees every buffer of it.
//
// It is a driver: it knows only the NDIS calls and the adapter's handle, not
// who provides the memory. With the guest provider registered the buffers are
// guest memory and receive() is the zero-copy write into the guest; with the
// default provider they are host memory. A later emulated NIC can drive it
// (or replace it) without the guest hub changing.
//
// Slots: each block of block_bytes is cut into block_bytes / slot_bytes slots
// of one packet each. A descriptor's cookie names the slot and a generation,
// so a stale or forged give_back is told from a real one.
//
// Lookahead split (NDISSHM_QUEUE_LOOKAHEAD_SPLIT) is the protocol's to ask
// for and is recorded on the queue; this miniport does not split packets and
// allocates Receive buffers either way.
//
// Thread-safe: receive and give_back may run on different threads; each queue
// has its own lock. stop_queue waits for a receive in progress on that queue
// and makes later ones fail, so memory is never written after it is freed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <ndis/ndis_shm.h>

namespace ndisshm::nic {

struct VmqMiniportConfig {
    uint32_t blocks_per_queue = 4;
    uint32_t block_bytes = 64 * 1024;
    uint32_t slot_bytes = 2048;  // largest packet (9216 for jumbo frames); a block's remainder stays unused
};

// One received packet: NET_BUFFER_SHARED_MEMORY's handle, offset, length,
// plus the miniport's cookie for the slot.
struct RxDescriptor {
    uint64_t handle = 0;
    uint32_t offset = 0;
    uint32_t length = 0;
    uint64_t cookie = 0;
};

struct RxBlock {
    uint64_t handle = 0;
    std::byte* address = nullptr;
    uint32_t length = 0;
};

struct VmqQueueStats {
    uint64_t received = 0;
    uint64_t ring_full = 0;   // no free slot: dropped
    uint64_t too_large = 0;   // longer than a slot: dropped
    uint64_t returned = 0;
    uint64_t outstanding = 0; // slots holding a packet not given back yet
    uint64_t slots = 0;
};

class VmqMiniport {
public:
    VmqMiniport(NDIS_HANDLE adapter, const VmqMiniportConfig& config);
    ~VmqMiniport();  // stops every queue still running
    VmqMiniport(const VmqMiniport&) = delete;
    VmqMiniport& operator=(const VmqMiniport&) = delete;

    // Allocates the queue's receive buffers. On failure, frees what it got and
    // returns NdisAllocateSharedMemory's status (`why` says which block).
    NDIS_STATUS start_queue(NDIS_RECEIVE_QUEUE_ID queue, std::string* why = nullptr);
    // Frees every buffer of the queue (NdisFreeSharedMemory). Slots still
    // held by the consumer are forgotten: the consumer has been stopped.
    void stop_queue(NDIS_RECEIVE_QUEUE_ID queue);

    // The NIC's write: copies `packet` into a free slot. nullopt when the queue
    // is not running, has no free slot, or the packet is larger than a slot.
    std::optional<RxDescriptor> receive(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::byte> packet);
    // Takes back a slot the consumer is done with. False, changing nothing,
    // unless `d` is exactly a descriptor receive gave and nobody gave back yet.
    bool give_back(NDIS_RECEIVE_QUEUE_ID queue, const RxDescriptor& d);

    std::vector<RxBlock> blocks(NDIS_RECEIVE_QUEUE_ID queue) const;
    VmqQueueStats stats(NDIS_RECEIVE_QUEUE_ID queue) const;
    const VmqMiniportConfig& config() const { return config_; }

private:
    struct Slot {
        uint32_t block = 0;
        uint32_t offset = 0;
        uint32_t generation = 0;
        bool held = false;
        uint32_t length = 0;
    };
    struct Queue {
        std::mutex mu;
        bool running = true;
        std::vector<RxBlock> blocks;
        std::vector<Slot> slots;
        std::vector<uint32_t> free;  // slot indexes, a stack: the last returned is the warmest in cache
        VmqQueueStats stats;
    };
    std::shared_ptr<Queue> find(NDIS_RECEIVE_QUEUE_ID queue) const;
    void free_blocks(std::vector<RxBlock>& blocks);

    NDIS_HANDLE adapter_;
    VmqMiniportConfig config_;
    mutable std::mutex mu_;
    std::map<NDIS_RECEIVE_QUEUE_ID, std::shared_ptr<Queue>> queues_;
};

}  // namespace ndisshm::nic
