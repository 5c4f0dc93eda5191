// XdpSocket: the Linux side of AF_XDP, through libxdp (Debian: libxdp-dev,
// libbpf-dev), for the AF_XDP miniport (nic/afxdp_miniport).
//
// AF_XDP's UMEM is Linux's own per-queue shared memory for NIC DMA: user
// space registers a memory range, cut into frames; it hands the kernel empty
// frames on the fill ring and gets back, on the rx ring, (offset in the
// UMEM, length) of each packet the NIC (here: the kernel, in copy mode)
// wrote into one of them. Here the range is not ours: it is an NDIS shared
// memory block (VirtualAddress, Length), possibly carved from another
// process's memory, so the packet lands where the provider put the block.
//
// What open() does, in order: registers the range as UMEM with its fill and
// completion rings (xsk_umem__create: the kernel pins the pages), creates the
// XSK socket with its rx ring and binds it to (ifname, queue) in copy mode
// (XDP_COPY: veth has no zero-copy driver), and, the first time a queue of
// the interface gets a socket, loads libxdp's default XDP program, which
// redirects each frame of a queue that has a socket in its XSK map to that
// socket and passes the rest to the stack (os/xdp_program: loaded with
// libbpf, not by xsk_socket__create, whose loader leaks descriptors).
//
// close() clears the socket's map entry, deletes the socket and then the
// UMEM, and detaches the XDP program with the interface's last socket. When it returns the kernel
// writes nothing more into the range: the socket's release unbinds it from
// the device and waits for every receive in flight (synchronize_net) before
// the close() system call returns. The range may be freed only after that.
//
// The interface may live in another network namespace (`netns`): the calling
// thread enters it for open() and close() (both look the interface up by
// name or index, and the XDP program is attached and detached there).
//
// Threads: fill() and receive() are each single-producer/single-consumer
// rings: one thread at a time for each (the miniport locks fill). close() must
// not race either.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/result.hpp"
#include "os/os.hpp"
#include "os/xdp_program.hpp"

struct xsk_umem;  // libxdp's, kept out of this header: only xdp_socket.cpp includes <xdp/xsk.h>
struct xsk_socket;

namespace ndisshm::os {

struct XdpSocketConfig {
    std::string ifname;
    uint32_t queue = 0;           // the interface's receive queue index
    std::string netns;            // path of the interface's network namespace; "": the calling thread's
    uint32_t frame_bytes = 4096;  // UMEM frame (chunk): 2048 or 4096 (aligned mode)
    uint32_t ring_size = 1024;    // fill and rx ring entries: a power of two, 64..16384
    bool copy_mode = true;        // XDP_COPY; false: the kernel picks (zero copy where the driver can)
};

// One received packet: where its first byte lies in the UMEM, and its length.
// In copy mode the kernel leaves XDP_PACKET_HEADROOM (256 bytes) at the
// start of the frame, so addr is the frame's start + 256.
struct XdpPacket {
    uint64_t addr = 0;
    uint32_t length = 0;
};

// XDP_STATISTICS: what the kernel could not deliver to this socket.
struct XdpStats {
    uint64_t rx_dropped = 0;       // for other reasons
    uint64_t rx_invalid = 0;       // a fill ring entry that was no frame of the UMEM
    uint64_t rx_ring_full = 0;     // no room on the rx ring
    uint64_t fill_ring_empty = 0;  // no frame to write into: user space gave none back
};

class XdpSocket {
public:
    // `area` must be page aligned and `bytes` a non-zero multiple of frame_bytes.
    // Errors name the failing step and errno's text, with libxdp's own
    // messages for the XDP program.
    static Result<std::unique_ptr<XdpSocket>> open(void* area, uint64_t bytes, const XdpSocketConfig& config);
    ~XdpSocket();  // close()
    XdpSocket(const XdpSocket&) = delete;
    XdpSocket& operator=(const XdpSocket&) = delete;

    // Deletes the socket, then the UMEM (see above). Idempotent. Afterwards
    // fill and receive do nothing.
    void close();
    bool open() const { return xsk_ != nullptr; }

    // Puts frames on the fill ring (each the UMEM offset of a frame start);
    // returns how many fit (all, when the ring is at least as large as the
    // number of frames the caller owns).
    size_t fill(std::span<const uint64_t> frame_addrs);
    // Takes up to out.size() packets off the rx ring; returns how many.
    size_t receive(std::span<XdpPacket> out);

    int fd() const;  // readable (poll) while the rx ring holds packets
    Result<XdpStats> stats() const;
    const XdpSocketConfig& config() const { return config_; }
    uint64_t bytes() const { return bytes_; }

private:
    struct Rings;
    XdpSocket(const XdpSocketConfig& config, uint64_t bytes);

    XdpSocketConfig config_;
    uint64_t bytes_ = 0;
    UniqueFd netns_;  // held so close() detaches in the same namespace even if its name is gone
    std::unique_ptr<Rings> rings_;
    std::optional<XdpProgramRef> program_;  // the interface's redirecting program, while bound
    ::xsk_umem* umem_ = nullptr;
    ::xsk_socket* xsk_ = nullptr;
};

// Why AF_XDP sockets cannot be made here (socket(AF_XDP) refused: an old or
// restricted kernel, no CAP_NET_RAW), or "" when they can.
std::string xdp_unavailable_reason();

}  // namespace ndisshm::os
