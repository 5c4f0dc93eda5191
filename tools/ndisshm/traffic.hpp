// The emulated NIC's traffic: a generator that sends each guest a numbered,
// checked stream of packets (support/packet_format.hpp) through the hub, either
// straight into the guest's queue (zero copy: the NIC's write lands in guest
// memory) or through a host queue (the NIC writes host memory, the host
// copies into the guest).
//
// Flow control, not drops: when a guest's ring is full (it has not given
// slots back yet) the generator offers the same packets again a moment
// later, as a NIC held back by PAUSE frames would, and counts the stall. So
// every packet numbered is delivered unless its guest goes away, and any gap
// a guest sees is a real loss.
//
// One thread drives every stream, round robin, one batch each: the hub's
// data path is what is measured, and the guests get the other cores.
#pragma once

#include <ndisshm/hub.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
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
    uint64_t stalls = 0;  // deliveries refused for a full ring and offered again
};

struct Stream {
    uint32_t guest_id = 0;
    uint32_t guest_queue = 0;
    uint32_t host_queue = 0;  // the copy path's; 0: none
    uint64_t next_seq = 1;
    bool gone = false;        // its guest left: nothing more is sent
    Counters zero_copy, copy;
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
    TrafficGenerator(ndisshm_hub* hub, const TrafficOptions& options);

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

    ndisshm_hub* hub_;
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
