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
// Wire format: a 16-byte header, then `length` payload bytes; little-endian
// (both ends run on the same machine); fixed-size payloads except PACKETS and
// PACKETS_DONE, whose length is 8 + count * sizeof(PacketDescriptor). Every
// message is length-checked against its type before a byte of it is used; a
// message that fails (bad magic, version, type, length, a file descriptor
// where none belongs, a descriptor chain cut off or too long) ends that
// guest's session with a logged reason and touches nothing else.
//
// Versions: 1 had 24-byte descriptors and one segment per packet; 2 (this)
// has 32-byte descriptors with flags (kSegmentFollows). A peer speaking 1 is
// refused at its first message ("unsupported protocol version 1"): the two
// descriptor layouts cannot be told apart by length alone, so no message of
// the other version is ever read as ours.
//
// Conversation:
//   guest -> HELLO                      host -> HELLO_ACK (guest id)
//   guest -> SET_MEMORY + 1 fd          host -> MEMORY_ACK, or ERROR and close
//   host  -> QUEUE_ATTACHED             (a VMQ of the NIC now belongs to this guest)
//   host  -> BLOCK_ADDED                (shared memory for that queue, in the guest's memory)
//   host  -> PACKETS (batch)            guest -> PACKETS_DONE (the same descriptors, given back;
//                                                one message may return several batches of a queue)
//   host  -> BLOCK_REMOVED, QUEUE_DETACHED
//   either -> BYE; a closed socket means the same.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ndisshm::ipc {

inline constexpr uint32_t kMagic = 0x4D53444Eu;  // "NDSM"
inline constexpr uint16_t kVersion = 2;
inline constexpr uint32_t kMaxPayload = 64 * 1024;
// Descriptors (segments) per PACKETS / PACKETS_DONE: a packet of one segment
// takes one, a lookahead-split packet two.
inline constexpr uint32_t kMaxPacketsPerMessage = (kMaxPayload - 8) / 32;
// The longest chain a packet may have. Lookahead split makes two; the bound
// leaves room for a header/data split of a jumbo frame over several slots
// while keeping a reader's per-packet work (and its segment array) small.
inline constexpr uint32_t kMaxSegmentsPerPacket = 4;
inline constexpr size_t kNameBytes = 32;
inline constexpr size_t kReasonBytes = 120;

enum class MessageType : uint16_t {
    Hello = 1,
    HelloAck = 2,
    SetMemory = 3,
    MemoryAck = 4,
    QueueAttached = 5,
    QueueDetached = 6,
    BlockAdded = 7,
    BlockRemoved = 8,
    Packets = 9,
    PacketsDone = 10,
    Bye = 11,
    Error = 12,
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
    uint32_t reserved;
};

struct BlockRemoved {  // host -> guest
    uint64_t handle;
};

// One segment of a received packet, as NET_BUFFER_SHARED_MEMORY describes
// it. A packet is a chain: every segment but its last has kSegmentFollows,
// and the next descriptor in the message is the next segment (Windows'
// NextSharedMemorySegment). A chain never spans two messages. The fields new
// in version 2 are at the end, with defaults, so that drivers writing
// {handle, offset, length, cookie} describe a one-segment packet.
struct PacketDescriptor {
    uint64_t handle;  // SharedMemoryHandle of the block
    uint32_t offset;  // SharedMemoryOffset within the block
    uint32_t length;  // SharedMemoryLength: this segment's bytes
    uint64_t cookie;  // the host's, returned unchanged in PACKETS_DONE (every segment of a packet carries the
                      // same)
    uint32_t flags = 0;     // kSegmentFollows; no other bit is defined
    uint32_t reserved = 0;  // must be 0
};
static_assert(sizeof(PacketDescriptor) == 32);
inline constexpr uint32_t kSegmentFollows = 0x1;

struct PacketsHeader {  // host -> guest (PACKETS) and guest -> host (PACKETS_DONE)
    uint32_t count;     // descriptors that follow, 1..kMaxPacketsPerMessage, whole chains only
    uint32_t queue_id;
};
static_assert(sizeof(PacketsHeader) == 8);

struct Bye {
    uint32_t reserved;
    uint32_t reserved2;
};

struct ErrorMessage {  // host -> guest, then the host closes the session
    uint32_t code;     // an NDIS_STATUS value
    uint32_t reserved;
    char reason[kReasonBytes];  // NUL-terminated
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
        case MessageType::Packets: return "PACKETS";
        case MessageType::PacketsDone: return "PACKETS_DONE";
        case MessageType::Bye: return "BYE";
        case MessageType::Error: return "ERROR";
    }
    return nullptr;
}

// The payload size a fixed-size type must have, or 0 for the variable ones
// (PACKETS, PACKETS_DONE) and for unknown types.
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
        case MessageType::Packets:
        case MessageType::PacketsDone: return 0;
    }
    return 0;
}

}  // namespace ndisshm::ipc
