// `ndisshm host`: a long-lived host (the demo's machinery without built-in
// guests). Real guests (`ndisshm guest`) connect to its socket, each gets a
// VMQ receive queue in its own memory; `ndisshm stat` reads its books on the
// control socket; an optional traffic generator sends every running guest
// a checked stream (support/packet_format.hpp). SIGINT or SIGTERM ends it the clean
// way: guests told BYE, every block freed through its provider, the books
// audited for leaks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ndisshm::cli {

// The hub's shape, as the flags give it (the defaults are the flags').
struct HostConfig {
    std::string socket;              // empty: ndisshm_default_socket_path
    uint32_t max_guests = 64;
    uint32_t blocks_per_queue = 16;
    uint32_t block_bytes = 64 * 1024;
    uint32_t slot_bytes = 2048;
    uint32_t lookahead_size = 0;     // non-zero: guests' queues get lookahead split of this size
    int handshake_timeout_ms = 5000; // a connection still mid-handshake then is closed
};

struct HostOptions {
    HostConfig host;
    uint64_t rate_pps = 0;  // traffic per running guest; 0: no traffic
    std::vector<uint32_t> packet_sizes{1500};
    uint32_t batch = 32;
    double duration_s = 0;  // 0: until a signal
    bool json = false;      // the final summary as JSON on stdout
    bool quiet = false;     // no log lines on stderr
    double status_interval_s = 60;  // a status line on the log this often; 0: none
    std::string metrics_listen;  // "ADDR:PORT": serve Prometheus metrics at /metrics; empty: none
};

// 0: shut down clean (nothing left outstanding, no verifier finding);
// 1: a leak or a violation (listed on stderr), or the host could not start.
int run_host(const HostOptions& options);

}  // namespace ndisshm::cli
