#include "common/options.hpp"

#include <string>

#include "common/checks.hpp"

#include "demo/sizing.hpp"
#include "packet_format.hpp"

namespace ndisshm::cli {
namespace {

constexpr uint32_t kMaxDemoGuests = 16;
constexpr uint32_t kMaxBlockBytes = 16u << 20;
constexpr uint64_t kDemoMemoryBudget = uint64_t{4} << 30;
constexpr uint32_t kAfxdpMaxPacket = 1472;  // 1500-byte MTU - IPv4 (20) - UDP (8)

// The flags every traffic generator takes, with the same ranges everywhere.
void add_traffic(CLI::App* app, std::vector<uint32_t>& sizes, uint64_t& rate, uint32_t& batch, const char* rate_help) {
    app->add_option("--packet-size", sizes,
                    "Packet sizes in bytes, sent in turn (a list: 64,1500,9000); each packet carries a sequence "
                    "number and a checksum the guests check")
        ->delimiter(',')
        ->check(in_range(support::kMinPacket, support::kMaxPacket))
        ->capture_default_str();
    app->add_option("--rate", rate, rate_help)->check(in_range(uint64_t{0}, uint64_t{100'000'000}))->capture_default_str();
    app->add_option("--batch", batch, "Packets per delivery to a guest (one message, one system call)")
        ->check(in_range(1u, support::kVariants))
        ->capture_default_str();
}

// --nic afxdp: each guest's queue is fed by a veth of its own and its stream
// rides in UDP datagrams, so there are no host queues and a packet is at most
// one datagram's payload.
void check_afxdp(CLI::App* demo, DemoOptions& l) {
    // The emulated default (1500) is an Ethernet payload; here a datagram's.
    if (demo->count("--packet-size") == 0) l.packet_sizes = {kAfxdpMaxPacket};
    if (demo->count("--lookahead") != 0)
        throw CLI::ValidationError("--lookahead", "belongs to the emulated NIC's split queue, not to --nic afxdp");
    if (l.queues != l.guests)
        throw CLI::ValidationError("--queues", "with --nic afxdp every queue is a guest's (one veth each): " +
                                                   std::to_string(l.guests) + " for " + std::to_string(l.guests) +
                                                   " guests");
    for (uint32_t size : l.packet_sizes)
        if (size > kAfxdpMaxPacket)
            throw CLI::ValidationError("--packet-size", std::to_string(size) + " does not fit one UDP datagram on a 1500-byte MTU (at most " +
                                                            std::to_string(kAfxdpMaxPacket) + " with --nic afxdp)");
}

void check_live(CLI::App* demo, Commands& c) {
    DemoOptions& l = c.live;
    const bool afxdp = l.nic == "afxdp";
    l.queues = c.demo_queues != 0 ? c.demo_queues : l.guests + (afxdp ? 0 : 1);
    l.blocks_per_queue = c.demo_blocks != 0 ? c.demo_blocks : 16;
    l.block_bytes = c.demo_block_size != 0 ? c.demo_block_size : 64 * 1024;
    if (afxdp) check_afxdp(demo, l);
    if (afxdp) l.lookahead_size = 0;
    if (!afxdp && l.queues < l.guests + 1)
        throw CLI::ValidationError("--queues", std::to_string(l.queues) + " leaves no host queue for the copy path with " +
                                                   std::to_string(l.guests) + " guests: at least " +
                                                   std::to_string(l.guests + 1));
    const uint32_t slot = slot_bytes_for(l.packet_sizes);
    if (l.block_bytes < std::max<uint32_t>(4096, slot))
        throw CLI::ValidationError("--block-size", std::to_string(l.block_bytes) + " is less than " +
                                                       std::to_string(std::max<uint32_t>(4096, slot)) +
                                                       " (a page, and one slot for the largest --packet-size)");
    if (l.lookahead_size > slot)
        throw CLI::ValidationError("--lookahead", std::to_string(l.lookahead_size) + " is larger than a slot (" +
                                                      std::to_string(slot) + " bytes)");
    if (demo_memory_bytes(l) > kDemoMemoryBudget)
        throw CLI::ValidationError("--blocks-per-queue",
                                   "with --block-size " + std::to_string(l.block_bytes) + " and --queues " +
                                       std::to_string(l.queues) + " the demo would map " +
                                       std::to_string(demo_memory_bytes(l) >> 20) + " MiB (at most " +
                                       std::to_string(kDemoMemoryBudget >> 20) + ")");
    (void)demo;
}

void check_tour(CLI::App* demo, Commands& c) {
    for (const char* flag :
         {"--guests", "--packet-size", "--rate", "--duration", "--batch", "--lookahead", "--socket", "--nic"})
        if (demo->count(flag) != 0) throw CLI::ValidationError(flag, "belongs to the live demo, not to --api-tour");
    if (demo->count("--hold") != 0) throw CLI::ValidationError("--hold", "belongs to the live demo, not to --api-tour");
    Workload& w = c.tour.workload;
    if (c.demo_queues != 0) w.queues = c.demo_queues;
    if (c.demo_blocks != 0) w.blocks_per_queue = c.demo_blocks;
    if (c.demo_block_size != 0) w.block_size = c.demo_block_size;
    c.tour.json = c.live.json;
    c.tour.quiet = c.live.quiet;
    const std::string why = check_budget(w, 2);
    if (!why.empty()) throw CLI::ValidationError("demo", why);
}

}  // namespace

void add_demo(CLI::App& app, Commands& c) {
    CLI::App* demo = app.add_subcommand(
        "demo", "Run the whole system: a VMQ host, guest processes, checked traffic, zero copy against copy");
    demo->footer(
        "A host with an emulated VMQ NIC and the guest provider starts in this process; --guests processes of\n"
        "this binary ('ndisshm guest --verify') connect and hand over their memory; each gets a queue whose\n"
        "buffers are its own memory. Traffic runs --duration seconds straight into the guests (zero copy), then\n"
        "as long through host queues and a copy into the guests. Queue 1 splits each packet at --lookahead\n"
        "bytes over two blocks (ReceiveLookahead, ReceivePostLookahead). Every guest checks every packet in\n"
        "place, across both parts of a split one. While it runs, 'ndisshm stat --socket PATH' shows the books.\n"
        "--nic afxdp feeds the guests' queues with real kernel packets instead: UDP over a veth pair per guest\n"
        "(in network namespaces of its own), written by the kernel through AF_XDP straight into each guest's\n"
        "memory; zero copy only (root, namespaces and AF_XDP needed; without them it says why and exits 1).\n"
        "--api-tour runs the self-contained API scenario instead (two adapters, every usage, a double free\n"
        "caught on purpose). Flags may also come from --config FILE (JSON, keys = flags without '--').\n"
        "Exit status: 0 nothing lost, leaked or violated; 1 otherwise (the problems on stderr); 2 bad usage.");
    demo->add_flag("--api-tour", c.api_tour, "Run the self-contained tour of the API instead of the live demo");
    demo->add_flag("--json", c.live.json, "Print the summary as JSON on stdout (narration, unless --quiet, on stderr)");
    demo->add_flag("--quiet,-q", c.live.quiet, "No narration or progress, only the summary");
    demo->add_option("--guests", c.live.guests, "Guest processes")
        ->check(in_range(1u, kMaxDemoGuests))
        ->capture_default_str();
    demo->add_option("--queues", c.demo_queues,
                     "VMQ receive queues: one per guest, the rest host queues for the copy path (default: guests + "
                     "1); with --api-tour, per adapter (default 3)")
        ->check(in_range(1u, Workload::kMaxQueues));
    add_traffic(demo, c.live.packet_sizes, c.live.rate_pps, c.live.batch,
                "Packets per second to each guest (0: as fast as the guests take them)");
    demo->add_option("--duration", c.live.duration_s, "Seconds of traffic on each path")
        ->check(in_range(0.1, 3600.0))
        ->capture_default_str();
    demo->add_option("--blocks-per-queue", c.demo_blocks, "Receive buffers per queue (default 16; --api-tour: 4)")
        ->check(in_range(1u, Workload::kMaxBlocksPerQueue));
    sized_option(demo->add_option("--block-size", c.demo_block_size, "Bytes per receive buffer (default 65536)"))
        ->check(in_range(1u, kMaxBlockBytes));
    sized_option(demo->add_option("--lookahead", c.live.lookahead_size,
                     "Lookahead split size of the first guest's queue (queue 1), in bytes (0: no lookahead split)"))
        ->check(in_range(0u, support::kMaxPacket))
        ->capture_default_str();
    demo->add_option("--hold", c.live.hold_s,
                     "After the traffic, keep the host and its guests up this many seconds for 'ndisshm stat' "
                     "(Ctrl-C ends it early)")
        ->check(in_range(0.0, 86400.0))
        ->capture_default_str();
    demo->add_option("--socket", c.live.socket, "Guest socket path (default: demo-<pid>.sock in the default directory)");
    demo->add_option("--nic", c.live.nic,
                     "The NIC feeding the guests' queues: 'emulated' (the hub's VMQ miniport, both paths) or "
                     "'afxdp' (real kernel packets: UDP over one veth pair per guest, written by the kernel "
                     "through AF_XDP straight into the guest's memory; root, network namespaces and AF_XDP needed)")
        ->check(CLI::IsMember({"emulated", "afxdp"}))
        ->capture_default_str();
    // Ranges bound each option; combinations are checked once all are known.
    demo->callback([demo, &c] { c.api_tour ? check_tour(demo, c) : check_live(demo, c); });
}

void add_guest(CLI::App& app, GuestCommandOptions& o) {
    CLI::App* guest = app.add_subcommand(
        "guest", "Run a guest process: give its memory to a host over a Unix socket, read packets in place");
    guest->footer(
        "The guest creates its memory as a memfd sealed against shrinking, connects to the host's socket,\n"
        "sends HELLO and SET_MEMORY with the memfd (SCM_RIGHTS), then reads each packet the host announces\n"
        "in place (block handle, offset, length) and gives the descriptors back. It runs until the host\n"
        "says BYE or goes away, or --duration / --packets is reached (it then says BYE itself). With --verify\n"
        "it checks each packet from 'ndisshm host --rate' or 'ndisshm demo' (sequence number, checksum).\n"
        "When the host goes away (a restart, a crash, BYE) or is full, the guest keeps its memory and tries to\n"
        "connect again, with backoff (50 ms doubling to 2 s, jittered), for --reconnect seconds; a host that\n"
        "comes back on the socket takes the same memory and the traffic resumes (--verify checks the new\n"
        "stream from its start). Each loss and reconnection is reported on stderr and in --json.\n"
        "Exit status: 0 the host said BYE or a limit was reached, 3 the host vanished (closed without BYE),\n"
        "either once no host came back within --reconnect; 1 an error (cannot connect, memory refused,\n"
        "malformed message; --verify: a packet lost, out of order or corrupt; the reason on stderr), 2 bad\n"
        "usage.");
    guest->add_option("--socket", o.socket,
                      "The host's guest socket (default: host.sock in the default directory, as 'ndisshm host')");
    sized_option(guest->add_option("--memory", o.memory_bytes, "Guest memory size in bytes (64M, 1.5G)"))
        ->check(in_range(uint64_t{1}, uint64_t{1} << 40))
        ->capture_default_str();
    guest->add_option("--name", o.name, "Name sent in HELLO, for the host's logs (1..31 bytes)")
        ->check([](const std::string& n) { return n.empty() || n.size() > 31 ? "must be 1..31 bytes" : ""; })
        ->capture_default_str();
    guest->add_option("--duration", o.duration_s, "Stop after this many seconds (0: no limit)")
        ->check(in_range(0.0, 1e9))
        ->capture_default_str();
    guest->add_option("--packets", o.packets, "Stop after at least this many packets (0: no limit)")
        ->check(a_number<uint64_t>())
        ->capture_default_str();
    guest->add_option("--connect-timeout", o.connect_timeout_ms, "Milliseconds to wait for each handshake answer")
        ->check(in_range(1, 3600 * 1000))
        ->capture_default_str();
    guest->add_option("--reconnect", o.reconnect_s,
                      "Seconds to keep trying to get the host back after it goes away or is full (0: never)")
        ->check(in_range(0.0, 4e6))
        ->capture_default_str();
    guest->add_flag_callback(
        "--no-reconnect", [&o] { o.reconnect_s = 0; }, "Do not reconnect: the host's going ends the guest (--reconnect 0)");
    guest->add_flag("--verify", o.verify, "Check each packet's sequence number, length and checksum; count losses");
    guest->add_option("--frame-offset", o.frame_offset,
                      "With --verify: the checked stream starts this many bytes into each packet (42: the UDP "
                      "payload of an Ethernet frame, as 'demo --nic afxdp' sends)")
        ->check(in_range(0u, 256u))
        ->capture_default_str();
    guest->add_flag("--json", o.json, "Print the summary as JSON on stdout");
}

void add_host(CLI::App& app, HostOptions& o) {
    CLI::App* host = app.add_subcommand(
        "host", "Run a long-lived host: an emulated VMQ NIC that guest processes connect to ('ndisshm guest')");
    host->footer(
        "Each guest that connects gets a receive queue whose buffers are carved out of its own memory. The\n"
        "host's books are served on a control socket next to the guest socket ('ndisshm stat'). With --rate,\n"
        "a traffic generator sends every running guest a checked stream ('ndisshm guest --verify' checks it).\n"
        "SIGINT or SIGTERM shuts it down: guests told BYE, every block freed through its provider, the books\n"
        "audited. Flags may also come from --config FILE (JSON, keys = flags without '--').\n"
        "Exit status: 0 a clean shutdown; 1 a leak or verifier finding (listed on stderr), or it could not\n"
        "start; 2 bad usage.");
    host->add_option("--socket", o.host.socket, "Guest socket path (default: host.sock in the default directory)");
    host->add_option("--max-guests", o.host.max_guests, "Guests running at once")
        ->check(in_range(1u, 1024u))
        ->capture_default_str();
    host->add_option("--blocks-per-queue", o.host.blocks_per_queue, "Receive buffers per guest queue")
        ->check(in_range(1u, Workload::kMaxBlocksPerQueue))
        ->capture_default_str();
    sized_option(host->add_option("--block-size", o.host.block_bytes, "Bytes per receive buffer"))
        ->check(in_range(4096u, kMaxBlockBytes))
        ->capture_default_str();
    sized_option(host->add_option("--slot-size", o.host.slot_bytes,
                                  "Largest packet (bytes per receive slot); default: 2048, or the largest "
                                  "--packet-size rounded up to 64"))
        ->check(in_range(64u, kMaxBlockBytes));
    sized_option(host->add_option("--lookahead-split", o.host.lookahead_size,
                     "Allocate guests' queues with lookahead split of this many bytes (0: none)"))
        ->check(in_range(0u, kMaxBlockBytes))
        ->capture_default_str();
    // Milliseconds, as 'guest --connect-timeout' and 'stat --timeout' (the
    // hub's own unit); the range is the one ndisshm_hub_create accepts.
    host->add_option("--handshake-timeout", o.host.handshake_timeout_ms,
                     "Milliseconds a connection may take to finish its handshake (HELLO, SET_MEMORY); one that "
                     "has not by then is refused and closed")
        ->check(in_range(1, 3600 * 1000))
        ->capture_default_str();
    add_traffic(host, o.packet_sizes, o.rate_pps, o.batch, "Packets per second to each running guest (0: no traffic)");
    host->add_option("--duration", o.duration_s, "Stop after this many seconds (0: at SIGINT or SIGTERM)")
        ->check(in_range(0.0, 1e9))
        ->capture_default_str();
    host->add_flag("--json", o.json, "Print the final summary as JSON on stdout");
    host->add_flag("--quiet,-q", o.quiet, "No log lines on stderr (guests coming and going)");
    host->add_option("--status-interval", o.status_interval_s,
                     "Seconds between status lines on the log (rates since the last line, guests, drops; 0: none)")
        ->check(in_range(0.0, 86400.0))
        ->capture_default_str();
    host->add_option("--metrics-listen", o.metrics_listen,
                     "Serve Prometheus metrics (the books and the data path) at http://ADDR:PORT/metrics; "
                     "PORT 0 picks a free one")
        ->type_name("ADDR:PORT");
    o.host.slot_bytes = 0;  // 0 until given: derived from the packet sizes below
    host->callback([&o] {
        if (o.host.slot_bytes == 0) o.host.slot_bytes = std::min(slot_bytes_for(o.packet_sizes), o.host.block_bytes);
        if (o.host.slot_bytes > o.host.block_bytes)
            throw CLI::ValidationError("--slot-size", std::to_string(o.host.slot_bytes) + " is larger than --block-size " +
                                                          std::to_string(o.host.block_bytes));
        for (uint32_t size : o.packet_sizes)
            if (size > o.host.slot_bytes)
                throw CLI::ValidationError("--packet-size", std::to_string(size) + " does not fit a slot of " +
                                                                std::to_string(o.host.slot_bytes) + " bytes (--slot-size)");
        if (o.host.lookahead_size > o.host.slot_bytes)
            throw CLI::ValidationError("--lookahead-split", std::to_string(o.host.lookahead_size) +
                                                                " is larger than a slot (" +
                                                                std::to_string(o.host.slot_bytes) + " bytes)");
    });
}

void add_stat(CLI::App& app, StatOptions& o) {
    CLI::App* stat = app.add_subcommand("stat", "Show a running host's books: adapters, queues, guests, blocks, verifier");
    stat->footer(
        "Reads the host's control socket (next to its guest socket: x.sock -> x.ctl) and shows adapters,\n"
        "providers, queues, guests, blocks by usage and by NUMA node, bytes, peaks, failures, memory and\n"
        "verifier findings. Works against 'ndisshm host', 'ndisshm demo' and any host built on <ndisshm/hub.h>.\n"
        "Exit status: 0 shown; 1 no host answered (the reason on stderr); 2 bad usage.");
    stat->add_option("--socket", o.socket,
                     "The host's guest socket or control socket (default: host.sock in the default directory)");
    stat->add_flag("--json", o.json, "Print the host's JSON as it came, one line per refresh (= --format json)");
    stat->add_option("--format", o.format,
                     "table; json (the host's JSON as it came); prometheus (text exposition format 0.0.4, as "
                     "'host --metrics-listen' serves it); openmetrics (OpenMetrics 1.0 text)")
        ->check(CLI::IsMember({"table", "json", "prometheus", "openmetrics"}));
    stat->add_option("--watch", o.watch_s, "Refresh every so many seconds until Ctrl-C")->check(in_range(0.1, 3600.0));
    stat->add_option("--count", o.count, "With --watch: stop after this many refreshes (0: never)")
        ->check(a_number<decltype(o.count)>())
        ->capture_default_str();
    stat->add_option("--timeout", o.timeout_ms, "Milliseconds to wait for the host's answer")
        ->check(in_range(1, 600'000))
        ->capture_default_str();
}

}  // namespace ndisshm::cli
