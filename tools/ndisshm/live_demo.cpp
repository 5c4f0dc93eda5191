#include "live_demo.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "child_process.hpp"
#include "progress.hpp"
#include "signals.hpp"
#include "units.hpp"

namespace ndisshm::cli {
namespace {

constexpr int kGuestsUpTimeoutMs = 15000;   // spawn, handshake, every block announced
constexpr int kDrainTimeoutMs = 10000;      // guests give back what they were sent
constexpr int kGuestExitTimeoutMs = 10000;  // after BYE

uint64_t guest_memory_bytes(const LiveDemoOptions& o) {
    // Twice what its queue's buffers need, so carving never runs short; at
    // least 8 MiB.
    const uint64_t need = uint64_t{o.blocks_per_queue} * o.block_bytes * 2;
    return std::max<uint64_t>(uint64_t{8} << 20, (need + (1 << 20) - 1) & ~uint64_t{(1 << 20) - 1});
}

PhaseRow phase_row(const PhaseResult& r) {
    PhaseRow p;
    p.path = r.path;
    p.packets = r.total.packets;
    p.bytes = r.total.bytes;
    p.stalls = r.total.stalls;
    p.seconds = r.seconds;
    p.gbps = gbit_per_s(r.total.bytes, r.seconds);
    p.mpps = r.seconds > 0 ? static_cast<double>(r.total.packets) / r.seconds / 1e6 : 0;
    p.cpu_ns_per_packet = r.total.packets != 0 ? r.cpu_seconds * 1e9 / static_cast<double>(r.total.packets) : 0;
    return p;
}

class LiveDemo {
public:
    explicit LiveDemo(const LiveDemoOptions& o)
        : o_(o), out_(o.quiet ? nullptr : (o.json ? stderr : stdout)), stop_(stop_on_signals()) {
        s_.options = o;
        if (s_.options.queues == 0) s_.options.queues = o.guests + 1;
        s_.slot_bytes = slot_bytes_for(o.packet_sizes);
        s_.socket = o.socket.empty() ? default_socket() : o.socket;
    }

    int run();

private:
    static std::string default_socket() {
        std::string p(ndisshm_default_socket_path(nullptr, 0) + 1, '\0');
        p.resize(ndisshm_default_socket_path(p.data(), p.size()));
        return p.substr(0, p.rfind('/') + 1) + "demo-" + std::to_string(getpid()) + ".sock";
    }
    void say(const std::string& line) {
        if (out_ == nullptr) return;
        std::fprintf(out_, "%s\n", line.c_str());
        std::fflush(out_);
    }
    void problem(const std::string& p) { s_.problems.push_back(p); }
    uint32_t host_queues() const { return s_.options.queues - o_.guests; }

    bool start();
    bool start_guests();
    void run_phase(Path path, PhaseRow& row);
    void drain(const char* after);
    void capture_books();
    void finish_guests();
    void check();

    const LiveDemoOptions& o_;
    std::FILE* out_;
    const std::atomic<bool>& stop_;
    LiveSummary s_;
    std::unique_ptr<LiveHost> host_;
    std::unique_ptr<TrafficGenerator> gen_;
    std::vector<std::pair<std::string, std::unique_ptr<support::ChildProcess>>> children_;  // by the name each was given
    std::map<std::string, pid_t> pids_;
    std::set<uint32_t> reported_gone_;  // guest ids
    std::map<uint32_t, std::string> guest_names_;  // by guest id
};

bool LiveDemo::start() {
    HostConfig c;
    c.socket = s_.socket;
    c.max_guests = o_.guests;
    c.blocks_per_queue = o_.blocks_per_queue;
    c.block_bytes = o_.block_bytes;
    c.slot_bytes = s_.slot_bytes;
    // One queue with lookahead split, as the switch asks of a VMQ NIC: the
    // first guest's, so that a guest reads split packets in place.
    c.lookahead_size = o_.lookahead_size;
    c.split_queue = 1;
    // Guest queues are 1..guests; host queues follow. Hub lines go to the
    // narration only when something goes wrong: problems collect them.
    host_ = std::make_unique<LiveHost>(c, [this](const std::string& line) {
        if (line.find("refused") != std::string::npos || line.find("verifier") != std::string::npos) say("  host: " + line);
    });
    say("host: adapter nic0 with the guest provider; guests connect at " + s_.socket);
    say("  watch it live: ndisshm stat --socket " + s_.socket + " --watch 1");
    for (uint32_t i = 0; i < host_queues(); ++i) {
        const uint32_t id = o_.guests + 1 + i;
        const ndisshm_queue_params p{};
        if (NDIS_STATUS st = ndisshm_hub_host_queue_create(host_->hub(), id, &p); st != NDIS_STATUS_SUCCESS) {
            problem("host queue " + std::to_string(id) + ": " + ndisshm_status_name(st));
            return false;
        }
        say("  queue " + std::to_string(id) + ": host memory, the copy path");
    }
    return true;
}

bool LiveDemo::start_guests() {
    const std::string memory = std::to_string(guest_memory_bytes(o_));
    for (uint32_t g = 1; g <= o_.guests; ++g) {
        const std::string name = "guest-" + std::to_string(g);
        auto child = std::make_unique<support::ChildProcess>(std::vector<std::string>{
            "ndisshm", "guest", "--socket", s_.socket, "--name", name, "--memory", memory, "--verify", "--json"},
            support::SpawnOptions{.program = "/proc/self/exe", .own_process_group = true});
        if (!child->started()) {
            problem(name + ": " + child->error());
            return false;
        }
        pids_[name] = child->pid();
        children_.emplace_back(name, std::move(child));
    }
    if (ndisshm_hub_wait_guests(host_->hub(), o_.guests, kGuestsUpTimeoutMs) == 0) {
        problem("only " + std::to_string(host_->guests().size()) + " of " + std::to_string(o_.guests) +
                " guests running after " + std::to_string(kGuestsUpTimeoutMs / 1000) + " s");
        return false;
    }
    gen_ = std::make_unique<TrafficGenerator>(host_->hub(), TrafficOptions{o_.packet_sizes, o_.rate_pps, o_.batch});
    uint32_t i = 0;
    for (const auto& g : host_->guests()) {
        const uint32_t host_queue = o_.guests + 1 + (i++ % host_queues());
        gen_->add_stream(g.guest_id, g.queue_id, host_queue);
        guest_names_[g.guest_id] = g.name;
        say("  " + std::string(g.name) + " (process " + std::to_string(pids_[g.name]) + ", guest " +
            std::to_string(g.guest_id) + "): queue " + std::to_string(g.queue_id) + " in its own " +
            human_bytes(g.memory_bytes) + " memfd; copy path through queue " + std::to_string(host_queue));
    }
    for (const auto& q : host_->queues())
        if ((q.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0)
            say("  queue " + std::to_string(q.queue_id) + ": lookahead split at " + std::to_string(q.lookahead_size) +
                " bytes: " + std::to_string(q.lookahead_blocks) + " ReceiveLookahead + " +
                std::to_string(q.books.blocks - q.lookahead_blocks) +
                " ReceivePostLookahead blocks; its guest reads each packet in place across both");
    return true;
}

void LiveDemo::run_phase(Path path, PhaseRow& row) {
    Progress progress(out_);
    const std::string name = path_name(path);
    auto tick = [&](const PhaseResult& r) {
        const PhaseRow p = phase_row(r);
        progress.update("  " + name + ": " + fixed(p.seconds, 1) + "/" + fixed(o_.duration_s, 1) + " s  " +
                        fixed(p.mpps, 3) + " Mpps  " + fixed(p.gbps, 2) + " Gbit/s  " + std::to_string(p.packets) +
                        " packets  " + std::to_string(p.stalls) + " stalls");
    };
    const PhaseResult r = gen_->run(path, o_.duration_s, stop_, tick);
    progress.done();
    row = phase_row(r);
    say("  " + name + ": " + std::to_string(row.packets) + " packets, " + human_bytes(row.bytes) + " in " +
        fixed(row.seconds, 2) + " s: " + fixed(row.gbps, 2) + " Gbit/s, " + fixed(row.mpps, 3) + " Mpps, host " +
        fixed(row.cpu_ns_per_packet, 0) + " ns CPU per packet");
    if (r.interrupted) problem("interrupted by signal " + std::to_string(stop_signal()) + " during the " + name + " run");
    for (const auto& [id, st] : gen_->streams())
        if (st.gone && reported_gone_.insert(id).second) problem(guest_names_[id] + " left during the " + name + " run");
}

// Until every running guest has given back every packet it was sent (so its
// counts are final for this path); a guest that left holds nothing.
void LiveDemo::drain(const char* after) {
    auto all_back = [&] {
        for (const auto& q : host_->queues())
            if (q.kind == NDISSHM_HUB_QUEUE_GUEST && q.outstanding != 0) return false;
        return true;
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDrainTimeoutMs);
    while (!all_back() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!all_back()) problem(std::string("guests did not give every packet back after the ") + after + " run");
}

void LiveDemo::capture_books() {
    s_.adapter = host_->adapter_stats().total;
    ndisshm_hub_get_stats(host_->hub(), &s_.hub);
    for (const auto& q : host_->queues()) {
        if (q.kind == NDISSHM_HUB_QUEUE_DEFAULT) continue;
        QueueRow row;
        row.id = q.queue_id;
        row.books = q.books;
        row.slots = q.slots;
        row.lookahead_split = (q.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0;
        row.lookahead_size = q.lookahead_size;
        row.lookahead_blocks = q.lookahead_blocks;
        row.drops = q.too_large;
        row.kind = q.kind == NDISSHM_HUB_QUEUE_GUEST ? "guest" : "host";
        row.path = q.kind == NDISSHM_HUB_QUEUE_GUEST ? "zero-copy" : "copy";
        for (const auto& [id, st] : gen_->streams()) {
            if (q.kind == NDISSHM_HUB_QUEUE_GUEST && st.guest_queue == q.queue_id) {
                row.feeds = guest_names_[id];
                row.packets += st.zero_copy.packets;
                row.bytes += st.zero_copy.bytes;
                row.stalls += st.zero_copy.stalls;
            } else if (q.kind == NDISSHM_HUB_QUEUE_HOST && st.host_queue == q.queue_id) {
                row.feeds += (row.feeds.empty() ? "" : ",") + guest_names_[id];
                row.packets += st.copy.packets;
                row.bytes += st.copy.bytes;
                row.stalls += st.copy.stalls;
            }
        }
        row.gbps = gbit_per_s(row.bytes, row.kind == "guest" ? s_.zero_copy.seconds : s_.copy.seconds);
        s_.queues.push_back(row);
    }
}

void LiveDemo::finish_guests() {
    const std::map<uint32_t, Stream> streams = gen_ ? gen_->streams() : std::map<uint32_t, Stream>{};
    for (const auto& [id, st] : streams) {
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
    // Each process by the name we gave it: a guest that died before it got a
    // queue, or printed nothing, still gets its row and its exit.
    for (auto& [name, child] : children_) {
        const std::string& n = name;
        auto it = std::find_if(s_.guests.begin(), s_.guests.end(), [&](const GuestRow& r) { return r.name == n; });
        if (it == s_.guests.end()) {
            s_.guests.push_back(GuestRow{});
            it = s_.guests.end() - 1;
            it->name = name;
        }
        GuestRow& g = *it;
        g.exit_status = child->finish(kGuestExitTimeoutMs);
        g.how = child->how();
        if (child->output().empty()) continue;  // died before its summary: its exit says why
        try {
            const auto j = nlohmann::json::parse(child->output());
            g.packets = j.value("packets", uint64_t{0});
            g.bytes = j.value("bytes", uint64_t{0});
            g.end = j.value("end", std::string());
            const auto& v = j.at("verify");
            g.verified = v.value("verified", uint64_t{0});
            g.lost = v.value("lost", uint64_t{0});
            g.out_of_order = v.value("out_of_order", uint64_t{0});
            g.corrupt = v.value("corrupt", uint64_t{0});
        } catch (const std::exception& e) {
            problem(name + " (process " + std::to_string(child->pid()) + ", " + g.how +
                    ") printed no readable summary: " + e.what());
        }
    }
}

void LiveDemo::check() {
    for (GuestRow& g : s_.guests) {
        s_.lost += g.lost;
        s_.out_of_order += g.out_of_order;
        s_.corrupt += g.corrupt;
        // Delivered by the NIC but never seen intact by the guest.
        const uint64_t dropped = g.sent > g.verified ? g.sent - g.verified : 0;
        g.drops = dropped;
        s_.drops += dropped;
        for (QueueRow& q : s_.queues)
            if (q.kind == "guest" && q.id == g.queue) q.drops += dropped;
        if (g.exit_status != 0) problem(g.name + ": " + (g.how.empty() ? "no exit status" : g.how));
        if (g.end != "HOST_BYE") problem(g.name + ": its session ended with " + (g.end.empty() ? "?" : g.end) + ", not BYE");
        if (dropped != 0) problem(g.name + ": " + std::to_string(dropped) + " packets delivered but not verified");
        if (g.lost + g.out_of_order + g.corrupt != 0)
            problem(g.name + ": " + std::to_string(g.lost) + " lost, " + std::to_string(g.out_of_order) +
                    " out of order, " + std::to_string(g.corrupt) + " corrupt");
    }
    for (const QueueRow& q : s_.queues)
        if (q.drops != 0 && q.kind == "host") problem("queue " + std::to_string(q.id) + ": " + std::to_string(q.drops) + " drops");
    const TeardownReport& t = s_.teardown;
    if (t.blocks_left != 0) problem(std::to_string(t.blocks_left) + " blocks outstanding after teardown");
    if (t.memory_blocks_left != 0) problem(std::to_string(t.memory_blocks_left) + " blocks left in host memory");
    for (const auto& f : t.findings) problem("verifier: " + f);
    if (s_.hub.refused != 0) problem(std::to_string(s_.hub.refused) + " guest sessions refused by the host");
    if (s_.problems.empty() && (s_.zero_copy.packets == 0 || s_.copy.packets == 0))
        problem("a path moved no packets");
    if (s_.copy.gbps > 0) s_.ratio_gbps = s_.zero_copy.gbps / s_.copy.gbps;
    if (s_.zero_copy.cpu_ns_per_packet > 0) s_.ratio_cpu = s_.copy.cpu_ns_per_packet / s_.zero_copy.cpu_ns_per_packet;
    s_.ok = s_.problems.empty();
}

int LiveDemo::run() {
    say("ndisshm demo: " + std::to_string(o_.guests) + " guest processes, " + std::to_string(s_.options.queues) +
        " receive queues, " + fixed(o_.duration_s, 1) + " s per path" +
        (o_.rate_pps != 0 ? ", " + std::to_string(o_.rate_pps) + " packets/s per guest" : ", full speed"));
    try {
        if (start() && start_guests()) {
            say("zero copy: the NIC writes each packet into the guest's own memory");
            run_phase(Path::ZeroCopy, s_.zero_copy);
            drain("zero-copy");
            if (!stop_.load()) {
                say("copy: the NIC writes host memory, the host copies each packet into the guest");
                run_phase(Path::Copy, s_.copy);
                drain("copy");
            }
        }
        if (host_) {
            if (gen_) capture_books();
            say("teardown: guests told BYE, every block freed through its provider");
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

uint32_t slot_bytes_for(const std::vector<uint32_t>& sizes) {
    const uint32_t largest = sizes.empty() ? 0 : *std::max_element(sizes.begin(), sizes.end());
    return std::max<uint32_t>(2048, (largest + 63) & ~63u);
}

uint64_t demo_memory_bytes(const LiveDemoOptions& o) {
    const uint64_t host_queues = o.queues > o.guests ? o.queues - o.guests : 0;
    return o.guests * guest_memory_bytes(o) + host_queues * o.blocks_per_queue * uint64_t{o.block_bytes};
}

int run_live_demo(const LiveDemoOptions& options) { return LiveDemo(options).run(); }

}  // namespace ndisshm::cli
