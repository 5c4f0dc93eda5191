#include "commands/host.hpp"

#include <ndisshm/hub.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <stdexcept>
#include <thread>

#include "common/hub_wire.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/self_command.hpp"
#include "common/signals.hpp"
#include "common/traffic.hpp"
#include "common/units.hpp"

namespace ndisshm::cli {
namespace {

using Clock = std::chrono::steady_clock;

// The generator runs in slices this long, between which the host notices
// guests that came or went and a signal.
constexpr double kSliceS = 0.1;

// Streams follow the running guests: one per guest id, so a guest that
// reconnects starts its numbering afresh, as its new checker expects.
void follow_guests(const ndisshm::Hub& hub, TrafficGenerator& gen) {
    std::set<uint32_t> running;
    for (const auto& g : hub.guests()) {
        running.insert(g.guest_id);
        if (gen.streams().count(g.guest_id) == 0) gen.add_stream(g.guest_id, g.queue_id);
    }
    for (auto it = gen.streams().begin(); it != gen.streams().end();)
        it = running.count(it->first) == 0 ? gen.streams().erase(it) : std::next(it);
}

// The periodic status line: what moved since the last one, per second, and
// where the books stand. A warning when packets were dropped meanwhile, so a
// journal filtered to warnings shows the intervals that lost traffic.
class StatusLine {
public:
    StatusLine(double interval_s, const ndisshm_hub_stats& now) : interval_s_(interval_s), last_(now) {}

    void maybe_log(const ndisshm::Hub& hub, const Log& log) {
        if (interval_s_ <= 0) return;
        const double dt = std::chrono::duration<double>(Clock::now() - last_at_).count();
        if (dt < interval_s_) return;
        const ndisshm_hub_stats now = hub.stats();
        const uint64_t delivered = now.delivered - last_.delivered;
        const uint64_t dropped = now.dropped - last_.dropped;
        const std::string line =
            "status: " + std::to_string(now.running) + (now.running == 1 ? " guest" : " guests") + " running; " +
            human_count(static_cast<double>(delivered) / dt) + " packets/s delivered, " +
            human_count(static_cast<double>(dropped) / dt) + "/s dropped over " + fixed(dt, 1) + " s; totals: " +
            human_count(static_cast<double>(now.delivered)) + " delivered, " +
            human_count(static_cast<double>(now.dropped)) + " dropped, " + std::to_string(now.accepted) +
            " guests connected, " + std::to_string(now.refused) + " refused";
        log(dropped != 0 ? LogLevel::Warning : LogLevel::Info, line);
        last_ = now;
        last_at_ = Clock::now();
    }

private:
    double interval_s_;
    ndisshm_hub_stats last_;
    Clock::time_point last_at_ = Clock::now();
};

// Why the host cannot listen at `path`, before the hub tries: a --socket
// in a directory that does not exist is a typo, not something to mkdir -p
// (the default directory the hub still makes, 0700); and a host already
// there is asked on its control socket, so it never sees us as a guest.
std::string socket_problem(const std::string& given) {
    if (!given.empty()) {
        const std::filesystem::path dir = std::filesystem::path(given).parent_path();
        std::error_code ec;
        if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
            return "cannot listen on " + given + ": directory " + dir.string() +
                   " does not exist (create it first, or leave --socket out for the default)";
    }
    const std::string path = given.empty() ? ndisshm::Hub::default_socket_path() : given;
    try {
        ndisshm::Hub::control_query(path, "stat", 1000);
    } catch (const ndisshm::HubError&) {
        return {};  // nobody answers: the hub replaces a stale socket file
    }
    return "another host is listening on " + path + " (stop it first, or give this one another --socket)";
}

void print_summary(const HostOptions& o, const std::string& socket, double uptime, const ndisshm_hub_stats& h,
                   uint64_t sent, const ndisshm::HubTeardown& t) {
    if (o.json) {
        nlohmann::ordered_json j = {
            {"ok", t.clean()},
            {"socket", socket},
            {"uptime_s", uptime},
            {"signal", stop_signal()},
            {"guests_connected", h.accepted},
            {"guests_refused", h.refused},
            {"packets_sent", sent},
            {"packets_delivered", h.delivered},
            {"packets_returned", h.returned},
            {"outstanding_blocks", t.blocks_left},
            {"outstanding_bytes", t.bytes_left},
            {"host_memory_blocks_left", t.memory_blocks_left},
            {"verifier_findings", t.findings},
        };
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
        return;
    }
    std::printf("ndisshm host: up %.1f s; %llu guests connected (%llu refused); %llu packets sent, %llu delivered, "
                "%llu given back\n",
                uptime, static_cast<unsigned long long>(h.accepted), static_cast<unsigned long long>(h.refused),
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(h.delivered),
                static_cast<unsigned long long>(h.returned));
    std::printf("teardown: %llu blocks outstanding (%s), %llu in host memory; verifier findings: %zu\n",
                static_cast<unsigned long long>(t.blocks_left), human_bytes(t.bytes_left).c_str(),
                static_cast<unsigned long long>(t.memory_blocks_left), t.findings.size());
    std::printf("%s\n", t.clean() ? "host: clean shutdown" : "host: LEAK OR VIOLATION (details on stderr)");
}

}  // namespace

int run_host(const HostOptions& o) {
    const std::atomic<bool>& stop = stop_on_signals();
    // Before the host: the hub's threads log through it until it stops.
    const Log log("ndisshm host", stderr, o.quiet);
    std::unique_ptr<ndisshm::HubHost> host;
    ndisshm::HubOptions h;
    h.socket_path = o.host.socket;
    h.max_guests = o.host.max_guests;
    h.blocks_per_queue = o.host.blocks_per_queue;
    h.block_bytes = o.host.block_bytes;
    h.slot_bytes = o.host.slot_bytes;
    h.lookahead_split = o.host.lookahead_size != 0;
    h.lookahead_size = o.host.lookahead_size;
    h.handshake_timeout_ms = o.host.handshake_timeout_ms;
    h.log = [&log](const std::string& line) { log(hub_line_level(line), line); };
    if (const std::string why = socket_problem(o.host.socket); !why.empty()) {
        log.error(why);
        return 1;
    }
    try {
        host = std::make_unique<ndisshm::HubHost>(h);
    } catch (const std::exception& e) {
        log.error(std::string("cannot start: ") + e.what());
        return 1;
    }
    ndisshm::Hub& hub = host->hub();
    const std::string socket = hub.socket_path();
    // Flushed at once: scripts wait for this line before connecting. On
    // stdout, but with --json stdout holds the summary alone.
    std::FILE* ready = o.json ? stderr : stdout;
    const Log announce("ndisshm host", ready, false);
    announce.info("listening on " + socket + " (control: " + hub.control_path() + ")");

    // Each scrape takes a fresh snapshot: the same JSON `ndisshm stat` reads.
    std::unique_ptr<MetricsServer> metrics;
    if (!o.metrics_listen.empty()) {
        std::string error;
        metrics = MetricsServer::start(
            o.metrics_listen, [&hub] { return nlohmann::json::parse(hub.snapshot_json()); }, &error);
        if (!metrics) {
            log.error(error);
            host->shut_down();
            return 1;
        }
        announce.info("metrics on http://" + o.metrics_listen + "/metrics (port " + std::to_string(metrics->port()) +
                      ")");
    }

    if (o.rate_pps == 0)
        log.info("sending no traffic: guests get packets from '" + self_command() +
                 " host --rate PPS' (a checked stream each)");
    HubWire wire(hub);
    std::unique_ptr<TrafficGenerator> gen;
    if (o.rate_pps != 0)
        gen = std::make_unique<TrafficGenerator>(hub, wire, TrafficOptions{o.packet_sizes, o.rate_pps, o.batch});
    const auto start = Clock::now();
    uint64_t sent = 0;
    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    StatusLine status(o.status_interval_s, hub.stats());
    while (!stop.load() && (o.duration_s <= 0 || elapsed() < o.duration_s)) {
        status.maybe_log(hub, log);
        if (!gen) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        follow_guests(hub, *gen);
        if (gen->streams().empty()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        sent += gen->run(Path::ZeroCopy, kSliceS, stop).total.packets;
    }
    if (stop_signal() != 0) log.info("signal " + std::to_string(stop_signal()) + ": shutting down");
    metrics.reset();  // no scrape may read the hub while it shuts down
    const ndisshm_hub_stats stats = hub.stats();
    const double uptime = elapsed();
    gen.reset();
    const ndisshm::HubTeardown t = host->shut_down();
    print_summary(o, socket, uptime, stats, sent, t);
    if (t.blocks_left != 0)
        log.error("LEAK: " + std::to_string(t.blocks_left) + " blocks (" + std::to_string(t.bytes_left) +
                  " bytes) still on the adapter after the hub stopped");
    if (t.memory_blocks_left != 0)
        log.error("LEAK: " + std::to_string(t.memory_blocks_left) + " blocks still in host memory");
    for (const auto& f : t.findings) log.error("verifier: " + f);
    return t.clean() ? 0 : 1;
}

}  // namespace ndisshm::cli
