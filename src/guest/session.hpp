// The guest's side of one host/guest session (include/ndisshm/guest.h is the
// C surface over it, src/api/guest.cpp the mapping).
//
// It owns the guest's memory (a memfd sealed against shrinking, mapped
// read/write) and the channel to the host, keeps the blocks the host has
// carved out of that memory (handle -> where and how long), and turns PACKETS
// into in-place reads. Nothing the host sends is trusted: a block must lie
// inside our memory, a descriptor inside its block, before a byte is read.
#pragma once

#include <ndisshm/guest.h>
#include <ndisshm/status.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.hpp"
#include "ipc/channel.hpp"
#include "os/os.hpp"

namespace ndisshm::guest {

class Session {
public:
    // Validates the config and makes the memory; the reason on failure.
    static Result<std::unique_ptr<Session>> create(const ndisshm_guest_config& config);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    NDIS_STATUS connect(const std::string& socket_path, int timeout_ms);
    NDIS_STATUS poll(int timeout_ms);
    void close();  // BYE, then the socket closes; memory and stats stay

    const std::string& last_error() const { return last_error_; }
    ndisshm_guest_stats stats() const;
    std::byte* memory() const { return memory_; }
    uint64_t memory_bytes() const { return bytes_; }
    int memory_fd() const { return memfd_.get(); }

private:
    struct Block {
        uint64_t guest_offset;
        uint32_t length;
        uint32_t queue_id;
        uint32_t usage;
    };
    struct Queue {
        uint32_t flags;
        uint32_t lookahead_size;
    };

    Session(const ndisshm_guest_config& config, os::UniqueFd memfd, std::byte* memory);

    // Ends the session with `status`: the socket closes, `why` is kept.
    NDIS_STATUS end(NDIS_STATUS status, std::string why);
    // A receive that failed: timeout (the session goes on) or its end.
    NDIS_STATUS receive_failed(const Error& e);
    // A send failed: if the host hung up, what it said last (BYE, ERROR)
    // may still be queued and tells why; otherwise the send's own error.
    NDIS_STATUS send_failed(const Error& e);
    // The handshake's answer of type `want`, within timeout_ms.
    NDIS_STATUS await(ipc::MessageType want, int timeout_ms, ipc::Message& out);
    // A host-initiated end (BYE or ERROR) or an unexpected type.
    NDIS_STATUS ended_by_host(const ipc::Message& m);

    NDIS_STATUS handle(const ipc::Message& m);
    NDIS_STATUS on_packets(const ipc::Message& m);
    // Sends the descriptors of the batches read so far back in one
    // PACKETS_DONE (nothing if there are none). `in_hand`: a message already
    // read that comes after them, which explains the end if the send finds
    // the host gone.
    NDIS_STATUS return_done(const ipc::Message* in_hand = nullptr);
    void on_block_added(const ipc::BlockAdded& b);
    void on_block_removed(uint64_t handle);
    void on_queue_detached(uint32_t queue_id);
    void emit(const ndisshm_guest_event& e) const;
    ndisshm_guest_event block_event(ndisshm_guest_event_kind kind, uint64_t handle, const Block& b) const;

    std::string name_;
    uint64_t guest_physical_base_;
    ndisshm_guest_packet_fn on_packet_;
    ndisshm_guest_event_fn on_event_;
    void* context_;

    os::UniqueFd memfd_;
    std::byte* memory_;
    uint64_t bytes_;

    std::optional<ipc::Channel> channel_;
    bool used_ = false;  // one session per guest: connect was called
    std::unordered_map<uint64_t, Block> blocks_;
    std::unordered_map<uint32_t, Queue> queues_;
    // Read but not yet given back: one queue's batches that arrived together
    // go back in one PACKETS_DONE, before poll() returns (see poll()).
    std::vector<ipc::PacketDescriptor> done_;
    uint32_t done_queue_ = 0;
    ndisshm_guest_stats stats_{};
    std::string last_error_;
    std::string end_reason_;  // why the session ended, kept past later calls' errors
};

}  // namespace ndisshm::guest
