// The traffic generator: sends each guest a numbered, checked stream of
// packets (support/packet_format.hpp, the guest's queue as the stream) over a
// Wire, the NIC under it: the hub's emulated VMQ NIC (hub_wire.hpp: straight
// into the guest's queue, or through a host queue and a copy) or the AF_XDP
// NIC (demo/afxdp_source.cpp: UDP datagrams the kernel writes into the guest).
//
// Flow control, not drops: when the wire takes fewer packets than offered
// (a full ring, a full transmit queue) the generator offers the same packets
// again a moment later, as a NIC held back by PAUSE frames would, and counts
// the retry; a wire may also cap what is in flight (Wire::room). So every
// packet numbered is delivered unless its guest goes away, and any gap a
// guest sees is a real loss. The hub counts the same event from its side:
// the packets of an offer it did not take are its `dropped` (all it can
// know: another sender may not offer them again), so with the emulated NIC
// each retry here is one or more of the hub's dropped packets, none lost.
//
// One thread drives every stream, round robin, one batch each: the data path
// is what is measured, and the guests get the other cores.
#pragma once

#include <ndisshm/hub.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace ndisshm::cli {

enum class Path { ZeroCopy, Copy };
const char* path_name(Path p);  // "zero-copy", "copy"

struct TrafficOptions {
    std::vector<uint32_t> packet_sizes{1500};  // round robin, by sequence number
    uint64_t rate_pps = 0;                      // per stream; 0: as fast as the guests take them
    uint32_t batch = 32;                        // packets per delivery (one message to the guest)
};

struct Counters {
    uint64_t packets = 0;
    uint64_t bytes = 0;
    uint64_t retries = 0;  // offers the wire did not take whole, the rest offered again
};

struct Stream {
    uint32_t guest_id = 0;
    uint32_t guest_queue = 0;
    uint32_t host_queue = 0;  // the copy path's; 0: none
    uint64_t next_seq = 1;
    bool gone = false;        // its guest left, or the wire failed: nothing more is sent
    std::string failure;      // why the wire failed it, if it did
    Counters zero_copy, copy;
};

// How packets reach a guest's queue.
class Wire {
public:
    virtual ~Wire() = default;
    // Offers `packets` of stream `s` by `path`; returns how many went (a
    // prefix). A wire that fails for good marks the stream gone, saying why.
    virtual size_t send(Path path, Stream& s, std::span<const ndisshm_hub_packet> packets) = 0;
    // How many more packets of `s` may be sent now; unbounded unless the wire
    // caps what is in flight.
    virtual uint64_t room(const Stream&) { return std::numeric_limits<uint64_t>::max(); }
};

struct PhaseResult {
    Path path = Path::ZeroCopy;
    double seconds = 0;
    double cpu_seconds = 0;  // the generator thread's: the host's cost of the path
    Counters total;
    bool interrupted = false;
};

class TrafficGenerator {
public:
    // `hub` says which guests are still running; `wire` carries the packets.
    TrafficGenerator(const ndisshm::Hub& hub, Wire& wire, const TrafficOptions& options);

    // Streams are kept by guest id: a guest that reconnects gets a new one.
    Stream& add_stream(uint32_t guest_id, uint32_t guest_queue, uint32_t host_queue = 0);
    void remove_stream(uint32_t guest_id);
    std::map<uint32_t, Stream>& streams() { return streams_; }
    const std::map<uint32_t, Stream>& streams() const { return streams_; }

    // Sends for `seconds` (or until `stop` says so), calling `tick` about
    // every `tick_s` seconds with the totals so far. A stream whose guest is
    // no longer running is marked gone.
    PhaseResult run(Path path, double seconds, const std::atomic<bool>& stop,
                    const std::function<void(const PhaseResult&)>& tick = {}, double tick_s = 0.25);

private:
    size_t send(Path path, Stream& s, size_t count);
    void mark_gone_streams();

    const ndisshm::Hub& hub_;
    Wire& wire_;
    TrafficOptions options_;
    struct Source {
        uint32_t length;
        std::vector<std::vector<std::byte>> variants;  // kVariants buffers of `length` bytes
        std::vector<uint64_t> sums;
    };
    std::vector<Source> sources_;
    std::map<uint32_t, Stream> streams_;
};

// Bytes over seconds, in Gbit/s (0 when no time passed).
double gbit_per_s(uint64_t bytes, double seconds);

}  // namespace ndisshm::cli
