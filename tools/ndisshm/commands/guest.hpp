// `ndisshm guest`: a guest process (the "virtual machine") that gives its
// memory to a host over a Unix socket and reads received packets in place,
// until the host ends the session or a limit is reached. See guest.cpp.
#pragma once

#include <ndisshm/guest.h>

#include <cstdint>
#include <string>

namespace ndisshm::cli {

struct GuestCommandOptions {
    std::string socket;            // the host's socket path; empty: ndisshm_default_socket_path
    uint64_t memory_bytes = 64ull << 20;
    std::string name = "guest";    // 1..31 bytes, for the host's logs
    double duration_s = 0;         // 0: no limit
    uint64_t packets = 0;          // stop after at least this many packets; 0: no limit
    int connect_timeout_ms = 5000; // for each step of the handshake
    bool json = false;             // summary as JSON on stdout
    bool verify = false;           // check each packet's sequence number and checksum (support/packet_format.hpp)
    uint32_t frame_offset = 0;     // --verify checks from this byte of each packet on (42: a UDP payload)
    // How long to keep trying to get a lost host back (guest.h's
    // reconnect_ms), in seconds; 0: the loss ends the guest.
    double reconnect_s = NDISSHM_GUEST_RECONNECT_DEFAULT_MS / 1000.0;
};

// Exit status for the command line.
inline constexpr int kGuestHostVanished = 3;

// 0: the host said BYE, or a limit was reached (we then say BYE ourselves);
// 3: the host closed the connection without BYE (it died);
// with reconnection (the default), 0 and 3 only once no host came back in
// time; a refusal for lack of resources is tried again meanwhile;
// 1: anything else (cannot connect, memory refused, a malformed message;
//    with --verify, a packet lost, out of order or corrupt), with the reason
//    on stderr.
int run_guest(const GuestCommandOptions& options);

}  // namespace ndisshm::cli
