#include "demo/demo.hpp"

#include <ndisshm/hub.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "common/progress.hpp"
#include "common/self_command.hpp"
#include "common/signals.hpp"
#include "common/units.hpp"
#include "demo/afxdp_source.hpp"
#include "demo/emulated_source.hpp"
#include "demo/guests.hpp"
#include "demo/sizing.hpp"
#include "demo/traffic_source.hpp"

namespace ndisshm::cli {
namespace {

constexpr int kGuestsUpTimeoutMs = 15000;   // spawn, handshake, every block announced
constexpr int kGuestExitTimeoutMs = 10000;  // after BYE

PhaseRow phase_row(const PhaseResult& r) {
    PhaseRow p;
    p.path = r.path;
    p.packets = r.total.packets;
    p.bytes = r.total.bytes;
    p.retries = r.total.retries;
    p.seconds = r.seconds;
    p.gbps = gbit_per_s(r.total.bytes, r.seconds);
    p.mpps = r.seconds > 0 ? static_cast<double>(r.total.packets) / r.seconds / 1e6 : 0;
    p.cpu_ns_per_packet = r.total.packets != 0 ? r.cpu_seconds * 1e9 / static_cast<double>(r.total.packets) : 0;
    return p;
}

class Demo final : public Narration {
public:
    Demo(const DemoOptions& o, TrafficSource& source)
        : o_(o), source_(source), out_(o.quiet ? nullptr : (o.json ? stderr : stdout)), stop_(stop_on_signals()) {
        s_.options = o;
        if (s_.options.queues == 0) s_.options.queues = o.guests + 1;
        s_.slot_bytes = source.summary_slot_bytes();
        s_.socket = o.socket.empty() ? default_socket() : o.socket;
        s_.copy.path = Path::Copy;
    }

    int run();

    void say(const std::string& line) override {
        if (out_ == nullptr) return;
        std::fprintf(out_, "%s\n", line.c_str());
        std::fflush(out_);
    }
    void problem(const std::string& p) override { s_.problems.push_back(p); }

private:
    static std::string default_socket() {
        const std::string p = ndisshm::Hub::default_socket_path();
        return p.substr(0, p.rfind('/') + 1) + "demo-" + std::to_string(getpid()) + ".sock";
    }

    bool start();
    bool start_guests();
    void run_phase(const Phase& phase);
    void hold();
    void capture_books();
    void finish_guests();
    void check();

    const DemoOptions& o_;
    TrafficSource& source_;
    std::FILE* out_;
    const std::atomic<bool>& stop_;
    LiveSummary s_;
    std::unique_ptr<ndisshm::HubHost> host_;
    std::unique_ptr<TrafficGenerator> gen_;
    GuestProcesses children_;
    std::set<uint32_t> reported_gone_;             // guest ids
    std::map<uint32_t, std::string> guest_names_;  // by guest id
};

bool Demo::start() {
    ndisshm::HubOptions h;
    h.socket_path = s_.socket;
    h.max_guests = o_.guests;
    h.blocks_per_queue = o_.blocks_per_queue;
    h.block_bytes = o_.block_bytes;
    h.slot_bytes = std::min(slot_bytes_for(o_.packet_sizes), o_.block_bytes);
    // One queue with lookahead split, as the switch asks of a VMQ NIC: the
    // first guest's, so that a guest reads split packets in place.
    h.lookahead_size = o_.lookahead_size;
    if (o_.lookahead_size != 0)
        h.queue_params = [size = o_.lookahead_size](uint32_t, const std::string&, uint32_t queue_id,
                                                    ndisshm_queue_params& params) {
            if (queue_id == 1) params = {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, size};
        };
    // Hub lines go to the narration only when something goes wrong: problems
    // collect them.
    h.log = [this](const std::string& line) {
        if (line.find("refused") != std::string::npos || line.find("verifier") != std::string::npos)
            say("  host: " + line);
    };
    source_.configure(h);
    host_ = std::make_unique<ndisshm::HubHost>(
        h, [this](ndisshm::Hub& hub) { source_.attach(hub); }, [this] { source_.detach(); });
    say("host: adapter nic0 with the guest provider" + source_.host_words() + "; guests connect at " + s_.socket);
    say("  watch it live: " + self_command() + " stat --socket " + s_.socket + " --watch 1" +
        (o_.hold_s > 0 ? "" : " (--hold SECONDS keeps the host up after the traffic)"));
    return source_.start(host_->hub(), *this);
}

bool Demo::start_guests() {
    std::string why;
    if (!children_.start(o_.guests, s_.socket, source_.guest_memory_bytes(), source_.guest_flags(), why)) {
        problem(why);
        return false;
    }
    ndisshm::Hub& hub = host_->hub();
    if (!hub.wait_guests(o_.guests, kGuestsUpTimeoutMs)) {
        problem("only " + std::to_string(hub.guests().size()) + " of " + std::to_string(o_.guests) +
                " guests running after " + std::to_string(kGuestsUpTimeoutMs / 1000) + " s");
        return false;
    }
    gen_ = std::make_unique<TrafficGenerator>(hub, source_.wire(),
                                              TrafficOptions{o_.packet_sizes, o_.rate_pps, o_.batch});
    for (const auto& g : hub.guests()) {
        guest_names_[g.guest_id] = g.name;
        if (!source_.add_guest(g, children_.pid(g.name), *gen_, *this)) return false;
    }
    for (const auto& q : hub.queues())
        if ((q.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0)
            say("  queue " + std::to_string(q.queue_id) + ": lookahead split at " + std::to_string(q.lookahead_size) +
                " bytes: " + std::to_string(q.lookahead_blocks) + " ReceiveLookahead + " +
                std::to_string(q.post_lookahead_blocks) +
                " ReceivePostLookahead blocks; its guest reads each packet in place across both");
    return true;
}

void Demo::run_phase(const Phase& phase) {
    Progress progress(out_);
    auto tick = [&](const PhaseResult& r) {
        const PhaseRow p = phase_row(r);
        progress.update("  " + phase.label + ": " + fixed(p.seconds, 1) + "/" + fixed(o_.duration_s, 1) + " s  " +
                        fixed(p.mpps, 3) + " Mpps  " + fixed(p.gbps, 2) + " Gbit/s  " + std::to_string(p.packets) +
                        " " + phase.unit +
                        (phase.progress_retries ? "  " + std::to_string(p.retries) + " retries" : std::string()));
    };
    const PhaseResult r = gen_->run(phase.path, o_.duration_s, stop_, tick);
    progress.done();
    PhaseRow& row = phase.path == Path::ZeroCopy ? s_.zero_copy : s_.copy;
    row = phase_row(r);
    say("  " + phase.label + ": " + std::to_string(row.packets) + " " + phase.unit + ", " + human_bytes(row.bytes) +
        phase.payload + " in " + fixed(row.seconds, 2) + " s: " + fixed(row.gbps, 2) + " Gbit/s, " +
        fixed(row.mpps, 3) + " Mpps, " + phase.cpu_owner + " " + fixed(row.cpu_ns_per_packet, 0) +
        " ns CPU per " + phase.per_unit);
    if (r.interrupted) problem("interrupted by signal " + std::to_string(stop_signal()) + " during the " + phase.run + " run");
    for (auto& [id, st] : gen_->streams()) {
        if (!st.gone || !reported_gone_.insert(id).second) continue;
        problem(guest_names_[id] +
                (st.failure.empty() ? " left during the " + phase.run + " run" : ": " + st.failure));
    }
}

void Demo::capture_books() {
    ndisshm::Hub& hub = host_->hub();
    s_.adapter = hub.adapter_stats().total;
    s_.hub = hub.stats();
    for (const auto& q : hub.queues()) {
        if (q.kind == NDISSHM_HUB_QUEUE_DEFAULT) continue;
        QueueRow row;
        row.id = q.queue_id;
        row.books = q.books;
        row.slots = source_.slots(q);
        row.lookahead_split = (q.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0;
        row.lookahead_size = q.lookahead_size;
        row.lookahead_blocks = q.lookahead_blocks;
        row.post_lookahead_blocks = q.post_lookahead_blocks;
        row.drops = q.too_large;
        row.kind = q.kind == NDISSHM_HUB_QUEUE_GUEST ? "guest" : "host";
        row.path = q.kind == NDISSHM_HUB_QUEUE_GUEST ? "zero-copy" : "copy";
        for (const auto& [id, st] : gen_->streams()) {
            if (q.kind == NDISSHM_HUB_QUEUE_GUEST && st.guest_queue == q.queue_id) {
                row.feeds = guest_names_[id];
                row.packets += st.zero_copy.packets;
                row.bytes += st.zero_copy.bytes;
                row.retries += st.zero_copy.retries;
            } else if (q.kind == NDISSHM_HUB_QUEUE_HOST && st.host_queue == q.queue_id) {
                row.feeds += (row.feeds.empty() ? "" : ",") + guest_names_[id];
                row.packets += st.copy.packets;
                row.bytes += st.copy.bytes;
                row.retries += st.copy.retries;
            }
        }
        row.gbps = gbit_per_s(row.bytes, row.kind == "guest" ? s_.zero_copy.seconds : s_.copy.seconds);
        s_.queues.push_back(row);
    }
}

void Demo::finish_guests() {
    if (gen_) {
        for (const auto& [id, st] : gen_->streams()) {
            GuestRow g;
            g.guest_id = id;
            g.name = guest_names_[id];
            g.queue = st.guest_queue;
            g.sent = st.zero_copy.packets + st.copy.packets;
            g.zero_copy_bytes = st.zero_copy.bytes;
            g.copy_bytes = st.copy.bytes;
            g.zero_copy_gbps = gbit_per_s(st.zero_copy.bytes, s_.zero_copy.seconds);
            g.copy_gbps = gbit_per_s(st.copy.bytes, s_.copy.seconds);
            s_.guests.push_back(g);
        }
    }
    children_.finish(kGuestExitTimeoutMs, s_.guests, s_.problems);
}

void Demo::check() {
    for (GuestRow& g : s_.guests) {
        s_.lost += g.lost;
        s_.out_of_order += g.out_of_order;
        s_.corrupt += g.corrupt;
        // Sent to it but never seen intact by it.
        const uint64_t dropped = g.sent > g.verified ? g.sent - g.verified : 0;
        g.drops = dropped;
        s_.drops += dropped;
        for (QueueRow& q : s_.queues)
            if (q.kind == "guest" && q.id == g.queue) q.drops += dropped;
        if (g.exit_status != 0) problem(g.name + ": " + (g.how.empty() ? "no exit status" : g.how));
        if (g.end != "HOST_BYE") problem(g.name + ": its session ended with " + (g.end.empty() ? "?" : g.end) + ", not BYE");
        if (dropped != 0) problem(g.name + ": " + std::to_string(dropped) + " " + source_.unverified_words());
        if (g.lost + g.out_of_order + g.corrupt != 0)
            problem(g.name + ": " + std::to_string(g.lost) + " lost, " + std::to_string(g.out_of_order) +
                    " out of order, " + std::to_string(g.corrupt) + " corrupt");
    }
    const ndisshm::HubTeardown& t = s_.teardown;
    if (t.blocks_left != 0) problem(std::to_string(t.blocks_left) + " blocks outstanding after teardown");
    if (t.memory_blocks_left != 0) problem(std::to_string(t.memory_blocks_left) + " blocks left in host memory");
    for (const auto& f : t.findings) problem("verifier: " + f);
    if (s_.hub.refused != 0) problem(std::to_string(s_.hub.refused) + " guest sessions refused by the host");
    source_.check(s_, *this);
    if (s_.copy.gbps > 0) s_.ratio_gbps = s_.zero_copy.gbps / s_.copy.gbps;
    if (s_.zero_copy.cpu_ns_per_packet > 0) s_.ratio_cpu = s_.copy.cpu_ns_per_packet / s_.zero_copy.cpu_ns_per_packet;
    s_.ok = s_.problems.empty();
}

// --hold: the traffic is over; the host and its guests stay up, idle, for
// `ndisshm stat` to look at, until the time is up or Ctrl-C (no problem:
// the runs are done).
void Demo::hold() {
    if (o_.hold_s <= 0 || stop_.load()) return;
    say("holding the host for " + fixed(o_.hold_s, 0) + " s (Ctrl-C ends it): " + self_command() + " stat --socket " +
        s_.socket);
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o_.hold_s);
    while (std::chrono::steady_clock::now() < until && !stop_.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

int Demo::run() {
    say(source_.headline());
    try {
        if (start() && start_guests()) {
            bool first = true;
            for (const Phase& phase : source_.phases()) {
                if (!first && stop_.load()) break;
                first = false;
                say(phase.intro);
                run_phase(phase);
                source_.drain(host_->hub(), *gen_, phase, guest_names_, *this);
            }
            hold();
        }
        if (host_) {
            if (gen_) capture_books();
            say(source_.teardown_words());
            s_.teardown = host_->shut_down();
        }
    } catch (const std::exception& e) {
        problem(e.what());
        if (host_) s_.teardown = host_->shut_down();
    }
    finish_guests();
    check();
    std::fputs((o_.json ? render_live_json(s_) : render_live_table(s_)).c_str(), stdout);
    for (const auto& p : s_.problems) std::fprintf(stderr, "ndisshm demo: %s\n", p.c_str());
    return s_.ok ? 0 : 1;
}

}  // namespace

int run_demo(const DemoOptions& options) {
    std::unique_ptr<TrafficSource> source;
    if (options.nic == "afxdp") {
        if (const std::string why = afxdp_unavailable_reason(); !why.empty()) {
            std::fprintf(stderr, "ndisshm demo --nic afxdp: cannot run here: %s\n", why.c_str());
            return 1;
        }
        source = make_afxdp_source(options);
    } else {
        source = make_emulated_source(options);
    }
    return Demo(options, *source).run();
}

}  // namespace ndisshm::cli
