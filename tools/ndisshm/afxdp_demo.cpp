// `ndisshm demo --nic afxdp` (afxdp_demo.hpp), over <ndisshm/afxdp.h>: the
// AF_XDP NIC is not part of libndisshm (it needs libxdp), so the CLI links
// ndisshm_afxdp, as tools/ndisshm/CMakeLists.txt says.
#include "afxdp_demo.hpp"

#include <ndisshm/afxdp.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.hpp"
#include "live_demo.hpp"
#include "live_host.hpp"
#include "progress.hpp"
#include "signals.hpp"
#include "packet_format.hpp"
#include "units.hpp"

namespace ndisshm::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kGuestsUpTimeoutMs = 15000;   // spawn, handshake, the UMEM block announced and bound
constexpr int kDrainTimeoutMs = 10000;      // every datagram sent read and given back
constexpr int kGuestExitTimeoutMs = 10000;  // after BYE
constexpr uint32_t kFrames = 1024;          // UMEM frames per guest queue
constexpr uint32_t kFrameBytes = 4096;
// Datagrams sent to a queue and not yet given back by its guest, at most.
// Below the fill ring's frames, so the kernel always has a frame to write
// into; small enough that the veth's own ring (256 packets) never overflows,
// which would drop before AF_XDP sees the packet. Flow control, as the
// emulated demo's generator does: any gap a guest sees is a real loss.
constexpr uint64_t kWindow = 256;
constexpr auto kStallPause = std::chrono::microseconds(20);

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// One guest's stream: numbered datagrams on the veth that feeds its queue.
struct Feed {
    uint32_t guest_id = 0, queue = 0;
    std::string name;
    uint64_t next_seq = 1;
    Counters sent;                 // datagrams the kernel took (sendmmsg counted them)
    uint64_t returned_before = 0;  // the queue's give-backs before the run
    bool gone = false;
};

// The traffic's payloads (support/packet_format.hpp), built once per size: sending
// stamps 32 bytes per datagram, the kernel does the rest.
struct Payloads {
    explicit Payloads(const std::vector<uint32_t>& sizes) {
        for (uint32_t length : sizes) {
            Source s{length, {}, {}};
            for (uint32_t v = 0; v < support::kVariants; ++v) {
                s.variants.emplace_back(length);
                s.sums.push_back(support::fill_payload(s.variants.back().data(), length, v));
            }
            sources.push_back(std::move(s));
        }
    }
    // Packet `seq`, stamped. Distinct buffers for up to kVariants consecutive seqs.
    std::span<const std::byte> packet(uint64_t seq, uint32_t stream) {
        Source& src = sources[seq % sources.size()];
        const auto v = static_cast<uint32_t>(seq % support::kVariants);
        std::byte* p = src.variants[v].data();
        support::stamp(p, src.length, seq, src.sums[v], stream);
        return {p, src.length};
    }
    struct Source {
        uint32_t length;
        std::vector<std::vector<std::byte>> variants;
        std::vector<uint64_t> sums;
    };
    std::vector<Source> sources;
};

class AfxdpDemo {
public:
    explicit AfxdpDemo(const LiveDemoOptions& o)
        : o_(o),
          out_(o.quiet ? nullptr : (o.json ? stderr : stdout)),
          stop_(stop_on_signals()),
          payloads_(o.packet_sizes) {
        s_.options = o;
        s_.options.queues = o.guests;
        s_.options.lookahead_size = 0;
        s_.slot_bytes = kFrameBytes;
        s_.socket = o.socket.empty() ? default_socket() : o.socket;
        s_.copy.path = Path::Copy;
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
    uint64_t returned(const Feed& f) const { return ndisshm_afxdp_returned(nic_, f.queue) - f.returned_before; }
    uint64_t guest_memory_bytes() const {
        const uint64_t need =
            uint64_t{o_.blocks_per_queue} * o_.block_bytes + uint64_t{kFrames} * kFrameBytes;
        return std::max<uint64_t>(uint64_t{8} << 20, (need * 2 + (1 << 20) - 1) & ~uint64_t{(1 << 20) - 1});
    }

    bool start();
    bool start_guests();
    void run_traffic();
    size_t send(Feed& f, size_t want);
    void drain();
    void capture_books();
    void finish_guests();
    void check();

    const LiveDemoOptions& o_;
    std::FILE* out_;
    const std::atomic<bool>& stop_;
    Payloads payloads_;
    LiveSummary s_;
    ndisshm_afxdp* nic_ = nullptr;  // the hub's queue driver: made before it starts, gone after it stops
    std::vector<ndisshm_afxdp_link> links_;
    std::unique_ptr<LiveHost> host_;
    std::vector<Feed> feeds_;
    std::vector<std::pair<std::string, std::unique_ptr<support::ChildProcess>>> children_;
};

bool AfxdpDemo::start() {
    HostConfig c;
    c.socket = s_.socket;
    c.max_guests = o_.guests;
    c.blocks_per_queue = o_.blocks_per_queue;
    c.block_bytes = o_.block_bytes;
    c.slot_bytes = std::min(slot_bytes_for(o_.packet_sizes), o_.block_bytes);
    c.before_start = [this](ndisshm_hub* hub) -> std::string {
        ndisshm_afxdp_config ac;
        ndisshm_afxdp_config_init(&ac);
        ac.links = o_.guests;
        ac.frames_per_queue = kFrames;
        ac.frame_bytes = kFrameBytes;
        ac.tag = "demo";
        char error[512] = {};
        if (ndisshm_afxdp_attach(hub, &ac, &nic_, error, sizeof(error)) != NDIS_STATUS_SUCCESS) return error;
        links_.resize(ndisshm_afxdp_links(nic_, nullptr, 0));
        ndisshm_afxdp_links(nic_, links_.data(), links_.size());
        return "";
    };
    // Sockets closed (the hub stopped), then the namespaces and veths removed.
    c.after_stop = [this] { ndisshm_afxdp_destroy(std::exchange(nic_, nullptr)); };
    host_ = std::make_unique<LiveHost>(c, [this](const std::string& line) {
        if (line.find("refused") != std::string::npos || line.find("verifier") != std::string::npos)
            say("  host: " + line);
    });
    say("host: adapter nic0 with the guest provider, its guests' queues fed by AF_XDP; guests connect at " +
        s_.socket);
    say("  watch it live: ndisshm stat --socket " + s_.socket + " --watch 1");
    for (size_t i = 0; i < links_.size(); ++i)
        say("  wire " + std::to_string(i) + ": " + links_[i].tx_ifname + " (" + links_[i].tx_address + ") -> " +
            links_[i].rx_ifname + " (" + links_[i].rx_address + "), a veth pair between " + links_[i].tx_netns +
            " and " + links_[i].rx_netns);
    return true;
}

bool AfxdpDemo::start_guests() {
    const std::string memory = std::to_string(guest_memory_bytes());
    const std::string offset = std::to_string(NDISSHM_AFXDP_UDP_PAYLOAD_OFFSET);
    for (uint32_t g = 1; g <= o_.guests; ++g) {
        const std::string name = "guest-" + std::to_string(g);
        auto child = std::make_unique<support::ChildProcess>(
            std::vector<std::string>{"ndisshm", "guest", "--socket", s_.socket, "--name", name, "--memory", memory,
                                     "--verify", "--frame-offset", offset, "--json"},
            support::SpawnOptions{.program = "/proc/self/exe", .own_process_group = true});
        if (!child->started()) {
            problem(name + ": " + child->error());
            return false;
        }
        children_.emplace_back(name, std::move(child));
    }
    if (ndisshm_hub_wait_guests(host_->hub(), o_.guests, kGuestsUpTimeoutMs) == 0) {
        problem("only " + std::to_string(host_->guests().size()) + " of " + std::to_string(o_.guests) +
                " guests running after " + std::to_string(kGuestsUpTimeoutMs / 1000) + " s");
        return false;
    }
    for (const auto& g : host_->guests()) {
        Feed f;
        f.guest_id = g.guest_id;
        f.queue = g.queue_id;
        f.name = g.name;
        // A datagram sent before the socket is bound would go to the stack:
        // the queue is running once its UMEM is registered.
        const auto bound_by = Clock::now() + std::chrono::milliseconds(kGuestsUpTimeoutMs);
        auto running = [&] {
            ndisshm_afxdp_queue_stats st{};
            return ndisshm_afxdp_get_queue_stats(nic_, f.queue, &st) == NDIS_STATUS_SUCCESS && st.running != 0;
        };
        while (!running() && Clock::now() < bound_by) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (!running()) {
            problem(f.name + ": queue " + std::to_string(f.queue) + " has no AF_XDP socket");
            return false;
        }
        f.returned_before = ndisshm_afxdp_returned(nic_, f.queue);
        const int link = ndisshm_afxdp_link_of(nic_, f.queue);
        say("  " + f.name + " (guest " + std::to_string(f.guest_id) + "): queue " + std::to_string(f.queue) +
            ", " + std::to_string(kFrames) + " frames of " + std::to_string(kFrameBytes) +
            " bytes in its own " + human_bytes(g.memory_bytes) + " memfd, fed by " +
            (link >= 0 ? links_[static_cast<size_t>(link)].rx_ifname : "?"));
        feeds_.push_back(std::move(f));
    }
    return true;
}

// Sends up to `want` datagrams of `f`'s stream in one sendmmsg; returns how
// many the kernel took.
size_t AfxdpDemo::send(Feed& f, size_t want) {
    ndisshm_hub_packet batch[support::kVariants];
    want = std::min<size_t>(want, support::kVariants);
    for (size_t i = 0; i < want; ++i) {
        const auto p = payloads_.packet(f.next_seq + i, f.queue);
        batch[i] = {p.data(), static_cast<uint32_t>(p.size()), 0};
    }
    size_t sent = 0;
    char error[256] = {};
    const NDIS_STATUS st = ndisshm_afxdp_send(nic_, f.queue, batch, want, &sent, error, sizeof(error));
    if (st != NDIS_STATUS_SUCCESS) {
        // RESOURCES: the veth's transmit queue is full; offered again.
        if (st != NDIS_STATUS_RESOURCES) {
            problem(f.name + ": " + error);
            f.gone = true;
        }
        ++f.sent.stalls;
        return 0;
    }
    const size_t* n = &sent;
    for (size_t i = 0; i < *n; ++i) f.sent.bytes += batch[i].length;
    f.sent.packets += *n;
    f.next_seq += *n;
    if (*n < want) ++f.sent.stalls;
    return *n;
}

void AfxdpDemo::run_traffic() {
    Progress progress(out_);
    PhaseRow& row = s_.zero_copy;
    const auto start = Clock::now();
    const double cpu_start = thread_cpu_seconds();
    double next_tick = 0.25, next_gone_check = 0.1;
    auto fill = [&](double elapsed) {
        row = PhaseRow{};
        for (const Feed& f : feeds_) {
            row.packets += f.sent.packets;
            row.bytes += f.sent.bytes;
            row.stalls += f.sent.stalls;
        }
        row.seconds = elapsed;
        row.gbps = gbit_per_s(row.bytes, elapsed);
        row.mpps = elapsed > 0 ? static_cast<double>(row.packets) / elapsed / 1e6 : 0;
        row.cpu_ns_per_packet =
            row.packets != 0 ? (thread_cpu_seconds() - cpu_start) * 1e9 / static_cast<double>(row.packets)
                             : 0;
    };
    for (;;) {
        const double elapsed = since(start);
        if (elapsed >= o_.duration_s) break;
        if (stop_.load(std::memory_order_relaxed)) {
            problem("interrupted by signal " + std::to_string(stop_signal()) + " during the AF_XDP run");
            break;
        }
        bool moved = false;
        for (Feed& f : feeds_) {
            if (f.gone) continue;
            const uint64_t in_flight = f.sent.packets - std::min(f.sent.packets, returned(f));
            uint64_t want = in_flight < kWindow ? std::min<uint64_t>(o_.batch, kWindow - in_flight) : 0;
            if (o_.rate_pps != 0) {
                const auto due =
                    static_cast<uint64_t>(std::floor(elapsed * static_cast<double>(o_.rate_pps)));
                want = due > f.sent.packets ? std::min(due - f.sent.packets, want) : 0;
            }
            if (want != 0) moved = send(f, want) != 0 || moved;
        }
        if (elapsed >= next_gone_check) {
            const auto g = host_->guests();
            for (Feed& f : feeds_) {
                if (std::none_of(g.begin(), g.end(),
                                 [&](const auto& x) { return x.guest_id == f.guest_id; }) &&
                    !f.gone) {
                    f.gone = true;
                    problem(f.name + " left during the AF_XDP run");
                }
            }
            next_gone_check = elapsed + 0.1;
        }
        if (!moved) std::this_thread::sleep_for(kStallPause);
        if (elapsed >= next_tick) {
            fill(elapsed);
            progress.update("  zero-copy (AF_XDP): " + fixed(row.seconds, 1) + "/" + fixed(o_.duration_s, 1) +
                            " s  " + fixed(row.mpps, 3) + " Mpps  " + fixed(row.gbps, 2) + " Gbit/s  " +
                            std::to_string(row.packets) + " datagrams");
            next_tick = elapsed + 0.25;
        }
    }
    fill(since(start));
    progress.done();
    say("  zero-copy (AF_XDP): " + std::to_string(row.packets) + " datagrams, " + human_bytes(row.bytes) +
        " of payload in " + fixed(row.seconds, 2) + " s: " + fixed(row.gbps, 2) + " Gbit/s, " +
        fixed(row.mpps, 3) + " Mpps, sender " + fixed(row.cpu_ns_per_packet, 0) + " ns CPU per datagram");
}

// Until every guest has read and given back every datagram it was sent: its
// counts are then final, and a datagram the kernel took but never delivered
// shows as a loss, not as one still on its way.
void AfxdpDemo::drain() {
    auto all_back = [&] {
        return std::all_of(feeds_.begin(), feeds_.end(),
                           [&](const Feed& f) { return f.gone || returned(f) >= f.sent.packets; });
    };
    const auto deadline = Clock::now() + std::chrono::milliseconds(kDrainTimeoutMs);
    while (!all_back() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (const Feed& f : feeds_) {
        if (f.gone || returned(f) >= f.sent.packets) continue;
        ndisshm_afxdp_queue_stats st{};
        ndisshm_afxdp_get_queue_stats(nic_, f.queue, &st);
        problem(f.name + ": " + std::to_string(f.sent.packets - returned(f)) + " of " +
                std::to_string(f.sent.packets) + " datagrams never came back (indicated " +
                std::to_string(st.indicated) + ", kernel: rx_dropped " +
                std::to_string(st.kernel_rx_dropped) + ", rx_ring_full " +
                std::to_string(st.kernel_rx_ring_full) + ", fill_ring_empty " +
                std::to_string(st.kernel_fill_ring_empty) + ")");
    }
}

void AfxdpDemo::capture_books() {
    s_.adapter = host_->adapter_stats().total;
    ndisshm_hub_get_stats(host_->hub(), &s_.hub);
    for (const auto& q : host_->queues()) {
        if (q.kind != NDISSHM_HUB_QUEUE_GUEST) continue;
        QueueRow row;
        row.id = q.queue_id;
        row.books = q.books;
        row.slots = kFrames;  // the UMEM's frames are the queue's receive slots
        row.kind = "guest";
        row.path = "zero-copy";
        for (const Feed& f : feeds_) {
            if (f.queue != q.queue_id) continue;
            row.feeds = f.name;
            row.packets = f.sent.packets;
            row.bytes = f.sent.bytes;
            row.stalls = f.sent.stalls;
        }
        row.gbps = gbit_per_s(row.bytes, s_.zero_copy.seconds);
        s_.queues.push_back(row);
    }
}

void AfxdpDemo::finish_guests() {
    for (auto& [name, child] : children_) {
        GuestRow g;
        g.name = name;
        for (const Feed& f : feeds_) {
            if (f.name != name) continue;
            g.guest_id = f.guest_id;
            g.queue = f.queue;
            g.sent = f.sent.packets;
            g.zero_copy_bytes = f.sent.bytes;
            g.zero_copy_gbps = gbit_per_s(f.sent.bytes, s_.zero_copy.seconds);
        }
        g.exit_status = child->finish(kGuestExitTimeoutMs);
        g.how = child->how();
        if (!child->output().empty()) {
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
        s_.guests.push_back(g);
    }
}

void AfxdpDemo::check() {
    for (GuestRow& g : s_.guests) {
        s_.lost += g.lost;
        s_.out_of_order += g.out_of_order;
        s_.corrupt += g.corrupt;
        // Taken by the kernel for this guest but never seen intact by it.
        g.drops = g.sent > g.verified ? g.sent - g.verified : 0;
        s_.drops += g.drops;
        for (QueueRow& q : s_.queues)
            if (q.id == g.queue) q.drops += g.drops;
        if (g.exit_status != 0) problem(g.name + ": " + (g.how.empty() ? "no exit status" : g.how));
        if (g.end != "HOST_BYE")
            problem(g.name + ": its session ended with " + (g.end.empty() ? "?" : g.end) + ", not BYE");
        if (g.drops != 0)
            problem(g.name + ": " + std::to_string(g.drops) + " datagrams sent but not verified");
        if (g.lost + g.out_of_order + g.corrupt != 0)
            problem(g.name + ": " + std::to_string(g.lost) + " lost, " + std::to_string(g.out_of_order) +
                    " out of order, " + std::to_string(g.corrupt) + " corrupt");
        if (g.sent == 0 && s_.problems.empty()) problem(g.name + ": no datagram reached it");
    }
    const TeardownReport& t = s_.teardown;
    if (t.blocks_left != 0) problem(std::to_string(t.blocks_left) + " blocks outstanding after teardown");
    if (t.memory_blocks_left != 0)
        problem(std::to_string(t.memory_blocks_left) + " blocks left in host memory");
    for (const auto& f : t.findings) problem("verifier: " + f);
    if (s_.hub.refused != 0) problem(std::to_string(s_.hub.refused) + " guest sessions refused by the host");
    s_.ok = s_.problems.empty();
}

int AfxdpDemo::run() {
    say("ndisshm demo --nic afxdp: " + std::to_string(o_.guests) + " guest processes, one veth pair each, " +
        fixed(o_.duration_s, 1) + " s of UDP" +
        (o_.rate_pps != 0 ? ", " + std::to_string(o_.rate_pps) + " datagrams/s per guest" : ", full speed"));
    try {
        if (start() && start_guests()) {
            say("zero copy: the kernel writes each frame through AF_XDP into the guest's own memory");
            run_traffic();
            drain();
        }
        if (host_) {
            if (nic_) capture_books();
            say("teardown: guests told BYE, AF_XDP sockets closed, then every block freed through its "
                "provider");
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

int run_afxdp_demo(const LiveDemoOptions& options) {
    std::string why(ndisshm_afxdp_unavailable_reason(nullptr, 0) + 1, '\0');
    why.resize(ndisshm_afxdp_unavailable_reason(why.data(), why.size()));
    if (!why.empty()) {
        std::fprintf(stderr, "ndisshm demo --nic afxdp: cannot run here: %s\n", why.c_str());
        return 1;
    }
    return AfxdpDemo(options).run();
}

}  // namespace ndisshm::cli
