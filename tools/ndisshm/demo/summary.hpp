// The live demo's options and summary: per guest, per queue, per path, and
// the audit of the teardown; as a table for people or JSON for scripts
// (report.cpp).
#pragma once

#include <ndisshm/hub.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "common/traffic.hpp"

namespace ndisshm::cli {

struct DemoOptions {
    uint32_t guests = 2;
    uint32_t queues = 0;  // NIC receive queues: one per guest, the rest host queues; 0: guests + 1
    std::vector<uint32_t> packet_sizes{1500};
    uint64_t rate_pps = 0;  // per guest; 0: as fast as the guests take them
    double duration_s = 2;  // per path
    uint32_t batch = 32;
    uint32_t blocks_per_queue = 16;
    uint32_t block_bytes = 64 * 1024;
    uint32_t lookahead_size = 128;  // the first guest's queue's (queue 1's) lookahead split; 0: none
    std::string socket;             // empty: <default socket dir>/demo-<pid>.sock
    bool json = false;
    bool quiet = false;
    std::string nic = "emulated";  // which TrafficSource feeds the guests' queues: "emulated" or "afxdp"
    double hold_s = 0;              // after the traffic, keep the host and guests up this long (stat); 0: no
};

struct PhaseRow {
    Path path = Path::ZeroCopy;
    uint64_t packets = 0, bytes = 0, retries = 0;  // retries: Counters::retries
    double seconds = 0, gbps = 0, mpps = 0;
    double cpu_ns_per_packet = 0;  // the generator thread's CPU: what the path costs the host
};

struct GuestRow {
    std::string name;
    uint32_t guest_id = 0, queue = 0;
    uint64_t sent = 0;             // packets the NIC delivered to it, both paths
    uint64_t zero_copy_bytes = 0, copy_bytes = 0;
    double zero_copy_gbps = 0, copy_gbps = 0;
    // What the guest process itself reports (its --verify JSON).
    uint64_t packets = 0, bytes = 0, verified = 0, lost = 0, out_of_order = 0, corrupt = 0;
    uint64_t drops = 0;  // sent but not verified: lost on the way, or the guest died
    std::string end;  // how its session ended ("HOST_BYE")
    std::string how;  // "exit status 0", "killed by signal ..."
    int exit_status = -1;
};

struct QueueRow {
    uint32_t id = 0;
    std::string kind;  // "guest", "host"
    std::string path;  // "zero-copy", "copy"
    std::string feeds; // the guest(s) its packets go to
    bool lookahead_split = false;
    uint32_t lookahead_size = 0;
    uint32_t lookahead_blocks = 0;       // with split: ReceiveLookahead blocks
    uint32_t post_lookahead_blocks = 0;  // with split: ReceivePostLookahead blocks (books.blocks also counts the rings)
    uint64_t packets = 0, bytes = 0, drops = 0, retries = 0;
    double gbps = 0;
    ndisshm_usage_stats books{};  // the runtime's, just before teardown
    uint64_t slots = 0;
};

struct LiveSummary {
    DemoOptions options;
    uint32_t slot_bytes = 0;
    std::string socket;
    PhaseRow zero_copy, copy;
    double ratio_gbps = 0;  // zero-copy Gbit/s over copy Gbit/s
    double ratio_cpu = 0;   // copy's host CPU per packet over zero-copy's
    std::vector<GuestRow> guests;
    std::vector<QueueRow> queues;
    ndisshm_hub_stats hub{};
    ndisshm_usage_stats adapter{};  // the adapter's books just before teardown
    ndisshm::HubTeardown teardown;
    uint64_t drops = 0, lost = 0, out_of_order = 0, corrupt = 0;
    std::vector<std::string> problems;
    bool ok = false;
};

std::string render_live_table(const LiveSummary& s);
std::string render_live_json(const LiveSummary& s);

}  // namespace ndisshm::cli
