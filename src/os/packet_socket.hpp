// PacketSocket: a plain AF_PACKET socket on one interface, the way user-space
// packet paths read a NIC before AF_XDP: the kernel copies each frame into
// the socket's receive queue, recvmmsg copies it out into the caller's
// buffers. The baseline bench/afxdp_bench.cpp holds the AF_XDP path against
// (the same traffic, then copied into a guest's memory).
//
// The interface may live in another network namespace (`netns`): the socket
// is made there (the calling thread enters it for socket() and bind(), which
// look the interface up) and keeps it for its whole life, so receive() may be
// called from any thread afterwards.
//
// Errors name the failing call, the interface and errno's text; socket, bind
// and recvmsg go through the fault seam (os/fault.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.hpp"
#include "os/os.hpp"

namespace ndisshm::os {

struct PacketSocketConfig {
    std::string ifname;
    std::string netns;                   // path of the interface's namespace; "": the calling thread's
    uint32_t receive_buffer = 4u << 20;  // SO_RCVBUF(FORCE): frames queued before the kernel drops
};

// PACKET_STATISTICS since the last call (the kernel zeroes them on read).
struct PacketSocketStats {
    uint64_t packets = 0;  // received, dropped ones included
    uint64_t drops = 0;    // the receive queue was full
};

class PacketSocket {
public:
    // SOCK_RAW, ETH_P_ALL, bound to `ifname`: every frame the interface
    // receives, Ethernet header included.
    static Result<std::unique_ptr<PacketSocket>> open(const PacketSocketConfig& config);

    // Takes up to buffers.size() frames, one per buffer (a frame longer than
    // its buffer is cut short), waiting up to timeout_ms for the first (0:
    // not at all, -1: for ever). lengths[i] receives frame i's length.
    // Returns how many; 0 when none came in time.
    Result<size_t> receive(std::span<const std::span<std::byte>> buffers, std::span<uint32_t> lengths,
                           int timeout_ms);

    Result<PacketSocketStats> stats();
    int fd() const { return fd_.get(); }
    const PacketSocketConfig& config() const { return config_; }

private:
    PacketSocket(UniqueFd fd, PacketSocketConfig config) : fd_(std::move(fd)), config_(std::move(config)) {}
    UniqueFd fd_;
    PacketSocketConfig config_;
};

}  // namespace ndisshm::os
