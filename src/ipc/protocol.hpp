// The host/guest protocol: every message either side may send, in one place.
//
// A guest (the "virtual machine") owns its memory as a memfd and hands it to
// the host over a Unix SOCK_SEQPACKET socket (one message per datagram) with
// SCM_RIGHTS, as vhost-user's SET_MEM_TABLE does. The host's guest provider
// carves receive-queue blocks out of that memory; the NIC writes packets into
// them; the guest reads each packet in place, named by (shared memory handle,
// offset, length) as NET_BUFFER_SHARED_MEMORY names it on Windows. A packet
// may lie in several segments (lookahead split: its first bytes in a
// ReceiveLookahead block, the rest in a ReceivePostLookahead block): one
// descriptor per segment, chained as NextSharedMemorySegment chains them.
//
// The socket carries the handshake and the life cycle only. Packets travel in
// shared rings in the guest's own memory (ring.hpp): one NDIS block per queue
// (Usage Other), announced by RINGS_ATTACHED with two eventfds, so that under
// load no system call is made per packet or per batch, as memif, virtio and
// AF_XDP do.
//
// Wire format: a 16-byte header, then `length` payload bytes; little-endian
// (both ends run on the same machine); every payload has a fixed size but
// ERROR's, whose reason takes the rest of its datagram (SEQPACKET keeps the
// boundary, so the length is the datagram's own and checked). Every
// message is length-checked against its type before a byte of it is used; a
// message that fails (bad magic, version, type, length, a file descriptor
// where none belongs) ends that guest's session with a logged reason and
// touches nothing else.
//
// Versions: 1 had 24-byte descriptors and one segment per packet; 2 had
// 32-byte descriptors with chains, sent in PACKETS / PACKETS_DONE messages; 3
// moved them into shared rings (types 9 and 10 are retired); 4 (this) gives
// ERROR a reason of any length up to kMaxReasonBytes instead of a fixed
// 120-byte field that cut long reasons short (a version-3 reader would refuse
// the new size, a version-4 one the old padding); 5 (this) halves the ring
// entries to 16 bytes (RxEntry: a block index from BLOCK_ADDED instead of the
// 8-byte handle, a 32-bit cookie) and the completions to 4, as memif's and
// AF_XDP's descriptors are 16 bytes: each packet costs the two cores a quarter
// of a cache line of ring instead of half. A peer speaking another version is
// refused at its first message with an ERROR naming both ("unsupported
// protocol version 4 (expected 5)"): no message of another version is ever
// read as ours.
//
// Conversation:
//   guest -> HELLO                      host -> HELLO_ACK (guest id)
//   guest -> SET_MEMORY + 1 fd          host -> MEMORY_ACK, or ERROR and close
//   host  -> QUEUE_ATTACHED             (a VMQ of the NIC now belongs to this guest)
//   host  -> BLOCK_ADDED                (shared memory for that queue, in the guest's memory:
//                                        receive buffers, and one Usage Other block for the rings)
//   host  -> RINGS_ATTACHED + 2 fds     (the queue's rings: where, how large, the eventfds)
//   ... packets in the receive ring, completions in the completion ring ...
//   host  -> BLOCK_REMOVED, QUEUE_DETACHED
//   either -> BYE; a closed socket means the same.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ndisshm::ipc {

inline constexpr uint32_t kMagic = 0x4D53444Eu;  // "NDSM"
inline constexpr uint16_t kVersion = 5;
inline constexpr uint32_t kMaxPayload = 64 * 1024;
// The longest chain a packet may have. Lookahead split makes two; the bound
// leaves room for a header/data split of a jumbo frame over several slots
// while keeping a reader's per-packet work (and its segment array) small.
inline constexpr uint32_t kMaxSegmentsPerPacket = 4;
inline constexpr size_t kNameBytes = 32;
// ERROR's reason: the longest the host writes (a path, a name and a cause
// fit many times over) and a reader accepts, so a hostile host cannot make a
// guest hold more than this per message.
inline constexpr uint32_t kMaxReasonBytes = 1024;

enum class MessageType : uint16_t {
    Hello = 1,
    HelloAck = 2,
    SetMemory = 3,
    MemoryAck = 4,
    QueueAttached = 5,
    QueueDetached = 6,
    BlockAdded = 7,
    BlockRemoved = 8,
    // 9 and 10 were PACKETS and PACKETS_DONE (version 2): retired, unknown now.
    Bye = 11,
    Error = 12,
    RingsAttached = 13,
};

struct MessageHeader {
    uint32_t magic;
    uint16_t version;
    uint16_t type;     // MessageType
    uint32_t length;   // payload bytes that follow
    uint32_t sequence; // sender's count of messages sent, from 1: for logs
};
static_assert(sizeof(MessageHeader) == 16);

struct Hello {  // guest -> host
    char name[kNameBytes];  // NUL-terminated within the array
    uint32_t flags;         // none defined: 0
    uint32_t reserved;
};

struct HelloAck {  // host -> guest
    uint32_t guest_id;
    uint32_t reserved;
};

struct SetMemory {  // guest -> host, with exactly one fd: a memfd sealed against shrinking
    uint64_t size;                 // bytes; must equal the memfd's size
    uint64_t guest_physical_base;  // what SG elements add to offsets in this memory
};

struct MemoryAck {  // host -> guest
    uint64_t size;
};

struct QueueAttached {  // host -> guest
    uint32_t queue_id;
    uint32_t flags;           // kQueueLookaheadSplit
    uint32_t lookahead_size;  // bytes, with kQueueLookaheadSplit
    uint32_t reserved;
};
// The NDIS value (NDIS_RECEIVE_QUEUE_PARAMETERS_LOOKAHEAD_SPLIT_REQUIRED), as
// NDISSHM_QUEUE_LOOKAHEAD_SPLIT in host.h: one encoding everywhere.
inline constexpr uint32_t kQueueLookaheadSplit = 0x00000002;

struct QueueDetached {  // host -> guest
    uint32_t queue_id;
    uint32_t reserved;
};

struct BlockAdded {  // host -> guest
    uint64_t handle;        // the NDIS SharedMemoryHandle (opaque to the guest)
    uint64_t guest_offset;  // where the block starts in the guest's memory
    uint32_t length;
    uint32_t queue_id;
    uint32_t usage;         // NDIS_SHARED_MEMORY_USAGE
    uint32_t index;         // what receive ring entries name the block by: below kMaxBlocks, unique
                            // among the session's blocks (free again after its BLOCK_REMOVED)
};
static_assert(sizeof(BlockAdded) == 32 && offsetof(BlockAdded, index) == 28);
// A session's blocks at once: RxEntry's block field is 16 bits.
inline constexpr uint32_t kMaxBlocks = 1u << 16;

struct BlockRemoved {  // host -> guest
    uint64_t handle;
};

// One segment of a received packet, as NET_BUFFER_SHARED_MEMORY describes
// it: an entry of the receive ring (ring.hpp). A packet is a chain: every
// segment but its last has kSegmentFollows, and the next entry is the next
// segment (Windows' NextSharedMemorySegment). The last fields have defaults,
// so that drivers writing {handle, offset, length, cookie} describe a
// one-segment packet.
struct PacketDescriptor {
    uint64_t handle;  // SharedMemoryHandle of the block
    uint32_t offset;  // SharedMemoryOffset within the block
    uint32_t length;  // SharedMemoryLength: this segment's bytes
    uint64_t cookie;  // the host's, given back unchanged in the completion ring (every segment of a packet
                      // carries the same)
    uint32_t flags = 0;     // kSegmentFollows; no other bit is defined
    uint32_t reserved = 0;  // must be 0
};
static_assert(sizeof(PacketDescriptor) == 32);
static_assert(offsetof(PacketDescriptor, cookie) == 16 && offsetof(PacketDescriptor, flags) == 24);
inline constexpr uint32_t kSegmentFollows = 0x1;

// A PacketDescriptor as the receive ring carries it (ring.hpp): 16 bytes,
// four to a cache line. The block is named by its BLOCK_ADDED index, not its
// handle (the guest gives its readers the handle that BLOCK_ADDED paired
// with the index), and the cookie is 32 bits: the host's slot in the low 16,
// the slot's generation (16 bits, never 0 for a table's slot) in the high 16.
struct RxEntry {
    uint32_t offset;  // SharedMemoryOffset within the block
    uint32_t length;  // SharedMemoryLength: this segment's bytes
    uint32_t cookie;  // the host's, given back unchanged in the completion ring (every segment of a
                      // packet carries the same)
    uint16_t block;   // BlockAdded::index
    uint16_t flags;   // kSegmentFollows; no other bit is defined
};
static_assert(sizeof(RxEntry) == 16);
static_assert(offsetof(RxEntry, cookie) == 8 && offsetof(RxEntry, block) == 12 && offsetof(RxEntry, flags) == 14);
// A ring cookie's parts: both tables of outstanding packets (the hub's, one a
// ring entry, and the miniport's, one a packet slot) hold at most 2^16 slots.
inline constexpr uint32_t kCookieSlotBits = 16;
inline constexpr uint32_t kCookieSlotMask = (1u << kCookieSlotBits) - 1;

// How many descriptors, from descriptors[first], make up that packet: its
// chain, cut at the end of the span (a caller that needs whole chains checks
// the last one's flag).
template <class Span>
inline size_t chain_length(const Span& descriptors, size_t first) {
    size_t n = 1;
    while (first + n < descriptors.size() && (descriptors[first + n - 1].flags & kSegmentFollows) != 0) ++n;
    return n;
}

// host -> guest, with exactly two fds (SCM_RIGHTS), both eventfds:
//   [0] receive kick: the host writes it when the guest asked to be woken
//       (kNeedWakeup in the receive ring) and packets are ready;
//   [1] completion kick: the guest writes it when the host asked to be woken
//       (kNeedWakeup in the completion ring) and completions are ready.
// The rings lie in the block `handle` (announced by BLOCK_ADDED, Usage Other,
// of this queue): the receive ring at its offset 0, the completion ring at
// done_offset; `size` entries each. ring.hpp has the layout.
struct RingsAttached {
    uint32_t queue_id;
    uint32_t size;         // entries per ring: a power of two, kMinRingSize..kMaxRingSize
    uint64_t handle;       // the ring block
    uint32_t done_offset;  // RingGeometry::for_size(size).done_offset
    uint32_t flags;        // none defined: 0
};
inline constexpr int kRingsAttachedFds = 2;

struct Bye {
    uint32_t reserved;
    uint32_t reserved2;
};

// host -> guest, then the host closes the session. The reason follows this
// struct: the rest of the payload, 0..kMaxReasonBytes bytes of text with no
// NUL among them (the length, not a terminator, says where it ends). Build it
// with error_payload(), read it with Message::error_reason() (channel.hpp).
struct ErrorMessage {
    uint32_t code;     // an NDIS_STATUS value
    uint32_t reserved;
};

// The type's name for logs, or nullptr for a type the protocol does not have.
constexpr const char* message_type_name(MessageType t) {
    switch (t) {
        case MessageType::Hello: return "HELLO";
        case MessageType::HelloAck: return "HELLO_ACK";
        case MessageType::SetMemory: return "SET_MEMORY";
        case MessageType::MemoryAck: return "MEMORY_ACK";
        case MessageType::QueueAttached: return "QUEUE_ATTACHED";
        case MessageType::QueueDetached: return "QUEUE_DETACHED";
        case MessageType::BlockAdded: return "BLOCK_ADDED";
        case MessageType::BlockRemoved: return "BLOCK_REMOVED";
        case MessageType::Bye: return "BYE";
        case MessageType::Error: return "ERROR";
        case MessageType::RingsAttached: return "RINGS_ATTACHED";
    }
    return nullptr;
}

// The payload size the type must have (ERROR: at least), or 0 for an unknown
// type.
constexpr uint32_t fixed_payload_bytes(MessageType t) {
    switch (t) {
        case MessageType::Hello: return sizeof(Hello);
        case MessageType::HelloAck: return sizeof(HelloAck);
        case MessageType::SetMemory: return sizeof(SetMemory);
        case MessageType::MemoryAck: return sizeof(MemoryAck);
        case MessageType::QueueAttached: return sizeof(QueueAttached);
        case MessageType::QueueDetached: return sizeof(QueueDetached);
        case MessageType::BlockAdded: return sizeof(BlockAdded);
        case MessageType::BlockRemoved: return sizeof(BlockRemoved);
        case MessageType::Bye: return sizeof(Bye);
        case MessageType::Error: return sizeof(ErrorMessage);
        case MessageType::RingsAttached: return sizeof(RingsAttached);
    }
    return 0;
}

// The largest payload the type may have: its fixed size, or ERROR's with the
// longest reason.
constexpr uint32_t max_payload_bytes(MessageType t) {
    return t == MessageType::Error ? fixed_payload_bytes(t) + kMaxReasonBytes : fixed_payload_bytes(t);
}

}  // namespace ndisshm::ipc
