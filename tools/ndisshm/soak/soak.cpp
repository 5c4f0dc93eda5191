#include "soak/soak.hpp"

#include <ndisshm/host.h>
#include <ndisshm/hub.hpp>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/progress.hpp"
#include "common/signals.hpp"
#include "common/units.hpp"
#include "soak/guests.hpp"
#include "soak/host_threads.hpp"
#include "soak/world.hpp"

namespace ndisshm::cli {
namespace {

using Clock = std::chrono::steady_clock;
using soak::World;
constexpr int kBookCheckMs = 100;

// What a process holds that a soak must give back: open fds and memfd mappings.
size_t open_fds() {
    std::error_code ec;
    size_t n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return n;
}
size_t memfd_mappings() {
    std::ifstream maps("/proc/self/maps");
    size_t n = 0;
    for (std::string line; std::getline(maps, line);)
        if (line.find("/memfd:") != std::string::npos) ++n;
    return n;
}

// Verifier findings, each one a failure: none is provoked on purpose here.
struct Findings {
    std::mutex mu;
    uint64_t count = 0;
    std::vector<std::string> kept;
    static void record(void* context, const ndisshm_violation* v) {
        auto* self = static_cast<Findings*>(context);
        std::lock_guard lock(self->mu);
        ++self->count;
        if (self->kept.size() < 10)
            self->kept.push_back(std::string(v->kind_name) + " in " + v->call + ": " + v->message);
    }
};

// The hub's log, kept short: the lines before a failure explain it.
struct HubLog {
    std::mutex mu;
    uint64_t lines = 0;
    std::vector<std::string> last;
    void record(const std::string& line) {
        std::lock_guard lock(mu);
        ++lines;
        last.push_back(line);
        if (last.size() > 12) last.erase(last.begin());
    }
};

struct Leaks {
    uint64_t blocks = 0, fds = 0, mappings = 0;
    uint64_t total() const { return blocks + fds + mappings; }
};

struct Summary {
    double duration_s = 0;
    uint64_t seed = 0;
    uint64_t book_checks_unsteady = 0;
    uint64_t guests_spawned = 0, guests_killed_connecting = 0, packets_verified = 0, hub_log_lines = 0;
    uint64_t packets_after_reconnect = 0;
};

void print(const SoakOptions& o, const World& w, const Summary& s, const Leaks& leaks, const Findings& f,
           const ndisshm_hub_stats& hub, bool interrupted) {
    const uint64_t failures = w.failures.count() + f.count;
    if (o.json) {
        nlohmann::json j;
        j["seconds"] = o.seconds;
        j["ops_limit"] = o.ops;
        j["duration_s"] = s.duration_s;
        j["seed"] = s.seed;
        j["threads"] = o.threads;
        j["guests"] = o.guests;
        j["operations_total"] = w.counters.total_ops();
        for (int i = 0; i < soak::kOpCount; ++i)
            j["operations"][soak::kOpNames[i]] = w.counters.ops(static_cast<soak::Op>(i));
        j["invariant_checks_total"] = w.counters.total_checks();
        for (int i = 0; i < soak::kCheckCount; ++i)
            j["invariant_checks"][soak::kCheckNames[i]] = w.counters.checks(static_cast<soak::Check>(i));
        j["invariant_checks"]["packets_verified"] = s.packets_verified;
        j["book_checks_skipped_unsteady"] = s.book_checks_unsteady;
        j["guests_spawned"] = s.guests_spawned;
        j["guests_killed_connecting"] = s.guests_killed_connecting;
        j["host_restarts"] = w.counters.ops(soak::kHostRestart);
        j["guests_reconnected"] = w.counters.checks(soak::kGuestReconnected);
        j["packets_verified_after_reconnect"] = s.packets_after_reconnect;
        j["hub_log_lines"] = s.hub_log_lines;
        j["hub"] = {{"accepted", hub.accepted},   {"closed", hub.closed},   {"refused", hub.refused},
                    {"delivered", hub.delivered}, {"dropped", hub.dropped}, {"returned", hub.returned}};
        j["leaks"] = {{"blocks", leaks.blocks},
                      {"fds", leaks.fds},
                      {"mappings", leaks.mappings},
                      {"total", leaks.total()}};
        j["verifier_findings"] = f.count;
        j["failures"] = failures;
        j["failure_messages"] = w.failures.kept();
        for (const auto& m : f.kept) j["failure_messages"].push_back("verifier: " + m);
        j["interrupted"] = interrupted;
        std::printf("%s\n", j.dump(2).c_str());
        return;
    }
    std::printf("ndisshm soak: %.1f s, seed %llu, %u threads, %u guests\n", s.duration_s,
                static_cast<unsigned long long>(s.seed), o.threads, o.guests);
    std::printf("operations: %llu\n", static_cast<unsigned long long>(w.counters.total_ops()));
    for (int i = 0; i < soak::kOpCount; ++i)
        std::printf("  %-14s %12llu\n", soak::kOpNames[i],
                    static_cast<unsigned long long>(w.counters.ops(static_cast<soak::Op>(i))));
    std::printf("invariant checks: %llu\n", static_cast<unsigned long long>(w.counters.total_checks()));
    for (int i = 0; i < soak::kCheckCount; ++i)
        std::printf("  %-24s %12llu\n", soak::kCheckNames[i],
                    static_cast<unsigned long long>(i == soak::kPackets
                                                        ? s.packets_verified
                                                        : w.counters.checks(static_cast<soak::Check>(i))));
    std::printf(
        "guests: %llu started, %llu killed before their queue was complete; hub accepted %llu, closed %llu, "
        "refused %llu\n",
        static_cast<unsigned long long>(s.guests_spawned),
        static_cast<unsigned long long>(s.guests_killed_connecting),
        static_cast<unsigned long long>(hub.accepted), static_cast<unsigned long long>(hub.closed),
        static_cast<unsigned long long>(hub.refused));
    std::printf("host restarts: %llu; guests reconnected: %llu, verifying %llu packets after reconnecting\n",
                static_cast<unsigned long long>(w.counters.ops(soak::kHostRestart)),
                static_cast<unsigned long long>(w.counters.checks(soak::kGuestReconnected)),
                static_cast<unsigned long long>(s.packets_after_reconnect));
    std::printf("leaks: %llu blocks, %llu fds, %llu mappings\n",
                static_cast<unsigned long long>(leaks.blocks), static_cast<unsigned long long>(leaks.fds),
                static_cast<unsigned long long>(leaks.mappings));
    std::printf("verifier findings: %llu\nfailures: %llu%s\n", static_cast<unsigned long long>(f.count),
                static_cast<unsigned long long>(failures), interrupted ? " (interrupted)" : "");
}

// "ndisshm soak: 3 s of 10 (30%), 12.3k operations (4.1k/s), 56 checks, 0 failures".
std::string progress_line(const SoakOptions& o, double t, const soak::World& world) {
    const uint64_t ops = world.counters.total_ops();
    double done = 0;
    if (o.seconds > 0) done = t / o.seconds;
    if (o.ops > 0) done = std::max(done, static_cast<double>(ops) / static_cast<double>(o.ops));
    std::string line = "ndisshm soak: " + fixed(t, 0) + " s";
    if (o.seconds > 0) line += " of " + fixed(o.seconds, 0);
    line += " (" + fixed(std::min(done, 1.0) * 100, 0) + "%), " + human_count(static_cast<double>(ops)) +
            " operations (" + human_count(t > 0 ? static_cast<double>(ops) / t : 0) + "/s), " +
            human_count(static_cast<double>(world.counters.total_checks())) + " checks, " +
            std::to_string(world.failures.count()) + " failures";
    return line;
}

}  // namespace

int run_soak(const SoakOptions& o) {
    if (!o.guest_worker.empty()) return run_soak_guest(o);
    Summary sum;
    sum.seed = o.seed != 0 ? o.seed : static_cast<uint64_t>(Clock::now().time_since_epoch().count()) | 1;
    std::FILE* log = o.quiet ? nullptr : stderr;
    const size_t fds_before = open_fds();
    const size_t maps_before = memfd_mappings();
    World world;
    Findings findings;
    HubLog hub_log;
    Leaks leaks;
    ndisshm_hub_stats hub_stats{};

    ndisshm_runtime_config rc;
    ndisshm_runtime_config_init(&rc);
    rc.verifier = 1;
    rc.report_to_stderr = 0;
    ndisshm_runtime* rt = nullptr;
    if (NDIS_STATUS s = ndisshm_runtime_create(&rc, &rt, nullptr, 0); s != NDIS_STATUS_SUCCESS) {
        std::fprintf(stderr, "ndisshm soak: ndisshm_runtime_create: %s\n", ndisshm_status_name(s));
        return 1;
    }
    ndisshm_runtime_set_violation_callback(rt, &Findings::record, &findings);
    NDIS_HANDLE adapter = nullptr;
    if (NDIS_STATUS s = ndisshm_adapter_create(rt, "soak0", &adapter); s != NDIS_STATUS_SUCCESS) {
        std::fprintf(stderr, "ndisshm soak: ndisshm_adapter_create: %s\n", ndisshm_status_name(s));
        ndisshm_runtime_destroy(rt);
        return 1;
    }
    // The hub's socket in a private directory of its own, gone with the soak.
    std::string dir;
    std::unique_ptr<ndisshm::Hub> hub;
    std::function<std::unique_ptr<ndisshm::Hub>()> make_hub;  // the first hub, and each after a host restart
    if (o.guests > 0) {
        char tmpl[] = "/tmp/ndisshm-soak-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            std::fprintf(stderr, "ndisshm soak: mkdtemp(/tmp/ndisshm-soak-XXXXXX): %s\n",
                         std::strerror(errno));
            ndisshm_adapter_destroy(adapter);
            ndisshm_runtime_destroy(rt);
            return 1;
        }
        dir = tmpl;
        const std::string socket = dir + "/run/host.sock";
        ndisshm::HubOptions hc;
        hc.socket_path = socket;
        hc.adapter_name = "nic0";
        // Killed guests' sessions end a moment after their replacements connect: room for both.
        hc.max_guests = o.guests + 8;
        hc.blocks_per_queue = soak::kGuestBlocks;
        hc.block_bytes = soak::kGuestBlockBytes;
        hc.slot_bytes = soak::kGuestSlotBytes;
        hc.handshake_timeout_ms = 5000;
        hc.serve_control = false;
        hc.log = [&hub_log](const std::string& line) { hub_log.record(line); };
        make_hub = [rt, hc] {
            auto h = std::make_unique<ndisshm::Hub>(rt, hc);
            h->start();
            return h;
        };
        try {
            hub = make_hub();
        } catch (const ndisshm::HubError& e) {
            std::fprintf(stderr, "ndisshm soak: the hub: %s\n", e.what());
            hub.reset();
            ndisshm_adapter_destroy(adapter);
            ndisshm_runtime_destroy(rt);
            std::filesystem::remove_all(dir);
            return 1;
        }
    }
    if (log != nullptr)
        std::fprintf(log, "ndisshm soak: seed %llu, %u threads, %u guests, %.0f s%s\n",
                     static_cast<unsigned long long>(sum.seed), o.threads, o.guests, o.seconds,
                     o.ops != 0 ? (" or " + std::to_string(o.ops) + " operations").c_str() : "");

    const auto& stop_signal = stop_on_signals();
    const auto start = Clock::now();
    const auto deadline =
        o.seconds > 0
            ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds))
            : Clock::time_point::max();
    {
        soak::SoakHost host(world, o, rt, adapter, hub.get());
        std::unique_ptr<soak::SoakGuests> guests;
        if (hub) guests = std::make_unique<soak::SoakGuests>(world, o, hub, make_hub, host);
        host.start(sum.seed);
        if (guests) guests->start(sum.seed);
        // Progress from the start: on a terminal one line redrawn as the
        // books are checked; elsewhere a line each second for the first ten,
        // then every ten seconds, so a long soak's log stays short.
        Progress progress(log);
        auto last_line = start;
        // The threads end the run themselves when --ops is reached.
        while (Clock::now() < deadline && !world.stopping && !stop_signal) {
            std::this_thread::sleep_for(std::chrono::milliseconds(kBookCheckMs));
            if (!host.check_books()) ++sum.book_checks_unsteady;
            if (log == nullptr) continue;
            const auto now = Clock::now();
            const double t = std::chrono::duration<double>(now - start).count();
            const auto every = t < 10.5 ? std::chrono::seconds(1) : std::chrono::seconds(10);
            if (!progress.tty() && now - last_line < every) continue;
            last_line = now;
            progress.update(progress_line(o, t, world));
        }
        progress.done();
        world.stopping = true;
        host.join();
        if (guests) guests->join();
        sum.duration_s = std::chrono::duration<double>(Clock::now() - start).count();
        // With every thread's blocks freed, the books must read zero (the guests' queues aside).
        bool steady = host.check_books();
        for (int i = 0; i < 20 && !steady; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            steady = host.check_books();
        }
        if (!steady) world.failures.add("the hub's books never held still for the final check");
        if (hub) {
            hub->stop();
            hub_stats = hub->stats();
            // With host restarts, the hubs before this one count too.
            soak::add_hub_stats(hub_stats, guests->earlier_hubs());
            guests->finish_after_hub_stop();
            sum.guests_spawned = guests->spawned();
            sum.packets_verified = guests->packets_verified();
            sum.guests_killed_connecting = guests->killed_connecting();
            sum.packets_after_reconnect = guests->packets_after_reconnect();
            const ndisshm_adapter_stats a = hub->adapter_stats();
            leaks.blocks += a.total.blocks;
            if (a.total.allocations != a.total.frees)
                world.failures.add("nic0: " + std::to_string(a.total.allocations) + " allocations but " +
                                   std::to_string(a.total.frees) + " frees after the hub stopped");
            if (hub_stats.accepted != hub_stats.closed)
                world.failures.add("the hub accepted " + std::to_string(hub_stats.accepted) +
                                   " sessions and closed " + std::to_string(hub_stats.closed));
            if (hub_stats.refused != 0)
                world.failures.add("the hub refused " + std::to_string(hub_stats.refused) + " sessions");
        }
    }
    ndisshm_adapter_stats a{};
    ndisshm_adapter_get_stats(adapter, &a);
    leaks.blocks += a.total.blocks;
    ndisshm_memory_stats m{};
    ndisshm_runtime_get_memory_stats(rt, &m);
    if (m.blocks_in_use != a.total.blocks)
        world.failures.add("the default provider has " + std::to_string(m.blocks_in_use) +
                           " blocks in use, soak0 " + std::to_string(a.total.blocks) + " at the end");
    hub.reset();
    ndisshm_adapter_destroy(adapter);
    ndisshm_runtime_destroy(rt);
    if (!dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    const size_t fds_after = open_fds(), maps_after = memfd_mappings();
    leaks.fds = fds_after > fds_before ? fds_after - fds_before : 0;
    leaks.mappings = maps_after > maps_before ? maps_after - maps_before : 0;
    sum.hub_log_lines = hub_log.lines;

    const bool interrupted = stop_signal.load();
    print(o, world, sum, leaks, findings, hub_stats, interrupted);
    const uint64_t failures = world.failures.count() + findings.count;
    if (failures != 0 || leaks.total() != 0) {
        for (const auto& m2 : world.failures.kept())
            std::fprintf(stderr, "ndisshm soak: FAILED: %s\n", m2.c_str());
        for (const auto& m2 : findings.kept) std::fprintf(stderr, "ndisshm soak: verifier: %s\n", m2.c_str());
        if (leaks.total() != 0)
            std::fprintf(stderr, "ndisshm soak: leaked %llu blocks, %llu fds, %llu mappings\n",
                         static_cast<unsigned long long>(leaks.blocks),
                         static_cast<unsigned long long>(leaks.fds),
                         static_cast<unsigned long long>(leaks.mappings));
        std::lock_guard lock(hub_log.mu);
        for (const auto& l : hub_log.last) std::fprintf(stderr, "ndisshm soak: hub said: %s\n", l.c_str());
        return 1;
    }
    return interrupted ? 1 : 0;
}

}  // namespace ndisshm::cli
