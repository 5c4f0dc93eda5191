// VmqMiniport: the receive side of a VMQ miniport, as far as shared memory
// goes (spec section 4). Once a queue's allocation has completed, the miniport
// allocates that queue's receive buffers through NdisAllocateSharedMemory
// (QueueId = the queue); the NIC then "DMAs" each packet into a free slot of
// them and describes it by (SharedMemoryHandle, offset, length), as
// NET_BUFFER_SHARED_MEMORY does; the consumer gives slots back; before the
// queue is freed the miniport frees every buffer of it.
//
// It is a driver: it knows only the NDIS calls and the adapter's handle, not
// who provides the memory. With the guest provider registered the buffers are
// guest memory and receive() is the zero-copy write into the guest; with the
// default provider they are host memory. A later emulated NIC can drive it
// (or replace it) without the guest hub changing.
//
// Slots: each block of block_bytes is cut into block_bytes / slot_bytes slots
// of one packet each, at most kMaxSlots a queue (start_queue refuses more). A
// descriptor's cookie names the slot (low 16 bits) and its generation (high
// 16), so a stale or forged give_back is told from a real one; it is 32 bits
// because the shared rings carry it as it is (ipc/protocol.hpp's RxEntry).
//
// Lookahead split: the miniport reads the queue's parameters
// (ndisshm_queue_get_params, as a miniport reads NDIS_RECEIVE_QUEUE_PARAMETERS)
// and, when the queue was allocated with NDISSHM_QUEUE_LOOKAHEAD_SPLIT, does
// what the Windows virtual miniport sample does (spec section 6): it
// allocates ReceiveLookahead blocks cut into slots of the lookahead size
// (rounded up to 64 bytes, a cache line) and ReceivePostLookahead blocks cut
// into slots of slot_bytes, as many of each as the queue has packet slots, and
// pairs them one to one. receive() writes a packet's first
// min(length, lookahead_size) bytes into the lookahead slot and the rest into
// its post-lookahead slot, and describes it by two chained segments
// (NextSharedMemorySegment); a packet no longer than the lookahead is one
// segment. Pairing keeps a packet's two halves one O(1) free-list entry, at
// the cost of idle post-lookahead slots under short packets. The largest
// packet is slot_bytes either way. Other queues get Receive blocks.
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

// The most packet slots a queue may have: the cookie's slot field is 16 bits.
inline constexpr uint32_t kMaxSlots = 1u << 16;

struct VmqMiniportConfig {
    uint32_t blocks_per_queue = 4;
    uint32_t block_bytes = 64 * 1024;
    uint32_t slot_bytes = 2048;  // largest packet (9216 for jumbo frames); a block's remainder stays unused
};

struct RxSegment {
    uint64_t handle = 0;
    uint32_t offset = 0;
    uint32_t length = 0;
    uint32_t block = 0;  // the block's index in blocks(queue): a consumer's own table can follow it
};

// One received packet: NET_BUFFER_SHARED_MEMORY's handle, offset, length of
// its first segment (with lookahead split: the lookahead), the miniport's
// cookie for the slot, and the second segment when there is one.
struct RxDescriptor {
    uint64_t handle = 0;
    uint32_t offset = 0;
    uint32_t length = 0;  // this segment's bytes; packet_length() is the whole packet's
    uint32_t cookie = 0;
    uint32_t block = 0;     // the block's index in blocks(queue)
    uint32_t segments = 1;  // 2: the packet goes on in `next` (its post-lookahead part)
    RxSegment next{};       // meaningful only when segments is 2 (receive leaves it as it was otherwise)

    uint32_t packet_length() const { return length + (segments > 1 ? next.length : 0); }
};

// One NdisAllocateSharedMemory call as a VMQ miniport makes it for a block
// of `queue` (spec section 6): revision 2 parameters, any node, an SG buffer
// of one element per page. The receive buffers and the rings of a guest's
// queue (hub/guest_session) and the AF_XDP miniport's UMEM are all
// allocated through it. On success
// `*handle` and `*address` are the block's.
NDIS_STATUS allocate_queue_block(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                                 ULONG length, NDIS_HANDLE* handle, void** address);

struct RxBlock {
    uint64_t handle = 0;
    std::byte* address = nullptr;
    uint32_t length = 0;
    uint32_t usage = NdisSharedMemoryUsageReceive;  // or ReceiveLookahead / ReceivePostLookahead
};

struct VmqQueueStats {
    uint64_t received = 0;
    uint64_t ring_full = 0;   // no free slot: dropped
    uint64_t too_large = 0;   // longer than a slot: dropped
    uint64_t returned = 0;
    uint64_t outstanding = 0; // slots holding a packet not given back yet
    uint64_t slots = 0;
    uint64_t split = 0;                  // packets received as two segments (lookahead split)
    uint32_t lookahead_size = 0;         // non-zero: the queue splits at this many bytes
    uint32_t lookahead_blocks = 0;       // ReceiveLookahead blocks
    uint32_t post_lookahead_blocks = 0;  // ReceivePostLookahead blocks
};

class VmqMiniport {
public:
    VmqMiniport(NDIS_HANDLE adapter, const VmqMiniportConfig& config);
    ~VmqMiniport();  // stops every queue still running
    VmqMiniport(const VmqMiniport&) = delete;
    VmqMiniport& operator=(const VmqMiniport&) = delete;

    // Allocates the queue's receive buffers: Receive blocks, or lookahead and
    // post-lookahead blocks when the queue was allocated with lookahead split
    // (its lookahead_size must then be 1..slot_bytes: INVALID_PARAMETER
    // otherwise). On failure, frees what it got and returns
    // NdisAllocateSharedMemory's status (`why` says which block).
    NDIS_STATUS start_queue(NDIS_RECEIVE_QUEUE_ID queue, std::string* why = nullptr);
    // Frees every buffer of the queue (NdisFreeSharedMemory). Slots still
    // held by the consumer are forgotten: the consumer has been stopped.
    void stop_queue(NDIS_RECEIVE_QUEUE_ID queue);

    // The NIC's write: copies `packet` into a free slot (split across its
    // lookahead and post-lookahead slots on a split queue). nullopt when the
    // queue is not running, has no free slot, or the packet is empty or
    // larger than a slot.
    std::optional<RxDescriptor> receive(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::byte> packet);
    // Takes back a slot (both halves of a split packet) the consumer is done
    // with. False, changing nothing, unless `d` is exactly a descriptor
    // receive gave, every segment included, and nobody gave back yet.
    bool give_back(NDIS_RECEIVE_QUEUE_ID queue, const RxDescriptor& d);

    // As receive() for each packet in turn, with one look-up and one lock for
    // them all (a NIC's interrupt handles a batch; per packet, the lock's
    // fence would wait for that packet's writes into the guest's memory):
    // appends each packet's descriptor to `out` and stops before the first
    // packet receive() would refuse, or whose segments would take those in
    // `out` from this call past `max_segments`. Returns how many it received.
    size_t receive_batch(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::span<const std::byte>> packets,
                         size_t max_segments, std::vector<RxDescriptor>& out);
    // The same into `out[0..]`, which must hold packets.size() descriptors:
    // the data path's, with storage it keeps (nothing to construct a batch).
    size_t receive_batch(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::span<const std::byte>> packets,
                         size_t max_segments, RxDescriptor* out);
    // As give_back() for each in turn, under one lock: stops at the first it
    // refuses (which changes nothing). Returns how many it took back.
    size_t give_back_batch(NDIS_RECEIVE_QUEUE_ID queue, std::span<const RxDescriptor> ds);
    // As give_back_batch for packets named by their cookies alone, as a
    // consumer of the shared rings returns them: a cookie is taken back when
    // it names a slot of the queue that is held now, with the generation
    // receive gave it (the whole packet, both segments, comes back). A slot
    // given back, reused since, or never received is refused, so each packet
    // comes back exactly once whatever the consumer writes. Stops at the first
    // it refuses (which changes nothing); returns how many it took back.
    size_t give_back_cookies(NDIS_RECEIVE_QUEUE_ID queue, std::span<const uint32_t> cookies);
    // Why give_back_cookies refuses `cookie` now, in words that complete
    // "cookie 0x...": for the report that ends a consumer's session.
    std::string why_refused(NDIS_RECEIVE_QUEUE_ID queue, uint32_t cookie) const;

    // A queue looked up once, for a caller that calls on it every batch (the
    // hub's data path): the calls below on it skip the look-up by id, which
    // costs a lock and two reference counts. It keeps the queue's records
    // alive, not the queue running: after stop_queue, receive_batch on it
    // receives nothing and give_back_cookies takes nothing back.
    struct Queue;
    using QueueRef = std::shared_ptr<Queue>;
    // nullptr when the queue is not running.
    QueueRef queue_ref(NDIS_RECEIVE_QUEUE_ID queue) const;
    size_t receive_batch(const QueueRef& queue, std::span<const std::span<const std::byte>> packets,
                         size_t max_segments, RxDescriptor* out);
    size_t give_back_cookies(const QueueRef& queue, std::span<const uint32_t> cookies);

    std::vector<RxBlock> blocks(NDIS_RECEIVE_QUEUE_ID queue) const;
    // The bytes of buffers start_queue allocates for one queue, with lookahead
    // split at `lookahead_size` bytes (0: none): what a guest's memory must hold.
    uint64_t queue_bytes(uint32_t lookahead_size) const;
    VmqQueueStats stats(NDIS_RECEIVE_QUEUE_ID queue) const;
    const VmqMiniportConfig& config() const { return config_; }

private:
    struct Slot {
        uint32_t block = 0;  // the lookahead block with split
        uint32_t offset = 0;
        uint32_t post_block = 0;  // split only: the post-lookahead half
        uint32_t post_offset = 0;
        uint16_t generation = 0;  // the cookie's high half: wraps, as it does there
        bool held = false;
        uint32_t length = 0;       // in the first half
        uint32_t post_length = 0;  // in the second; 0: one segment
    };
    std::shared_ptr<Queue> find(NDIS_RECEIVE_QUEUE_ID queue) const;
    // receive and give_back on a queue whose lock the caller holds; receive
    // writes the descriptor into `d` (false: refused, `d` unspecified; its
    // caller counts what it received).
    bool receive_locked(Queue& q, std::span<const std::byte> packet, RxDescriptor& d);
    bool give_back_locked(Queue& q, const RxDescriptor& d);
    // The slot `cookie` names if it is held now, with that generation, on a
    // running queue: the check every give back makes first.
    static Slot* held_slot(Queue& q, uint32_t cookie);
    static void release_locked(Queue& q, Slot& s, uint32_t index);
    template <class T, class F>
    size_t give_back_each(const QueueRef& q, std::span<const T> items, F&& one);
    static uint32_t segments_of(const Queue& q, size_t length);
    void free_blocks(std::vector<RxBlock>& blocks);
    // `count` blocks of `usage` appended to q.blocks; the first failure's
    // status (what it got so far stays in q.blocks, for the caller to free).
    NDIS_STATUS allocate_blocks(NDIS_RECEIVE_QUEUE_ID queue, Queue& q, uint32_t count,
                                NDIS_SHARED_MEMORY_USAGE usage, std::string* why);
    uint32_t slots_per_queue() const;
    uint32_t lookahead_slot_bytes(uint32_t lookahead_size) const;
    uint32_t lookahead_block_count(uint32_t lookahead_size) const;

    NDIS_HANDLE adapter_;
    VmqMiniportConfig config_;
    mutable std::mutex mu_;
    std::map<NDIS_RECEIVE_QUEUE_ID, std::shared_ptr<Queue>> queues_;
};

}  // namespace ndisshm::nic
