// `ndisshm guest`: runs one guest session through the public C++ guest API
// (<ndisshm/guest.hpp>) and prints what it saw. Packets are read in place:
// each one's bytes are folded into a checksum, so every byte the host said it
// delivered is really touched in the guest's memory. With --verify, each
// packet is instead checked against what the traffic generator of `ndisshm
// host` and `ndisshm demo` writes (support/packet_format.hpp): sequence number,
// length, trailer and checksum, counting losses, reordering and corruption.
//
// The JSON summary is built here rather than in report.cpp: it shares nothing
// with the demo's report.
#include "commands/guest.hpp"

#include <ndisshm/guest.hpp>
#include <ndisshm/hub.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/self_command.hpp"
#include "common/units.hpp"
#include "packet_format.hpp"

namespace ndisshm::cli {
namespace {

using Clock = std::chrono::steady_clock;

// How long one poll waits when there is no deadline: short enough that the
// packet limit is noticed soon after a quiet spell, long enough to cost nothing.
constexpr int kPollSliceMs = 200;

// A host that has sent nothing this long after the handshake is probably
// one without traffic: the guest says so, rather than look hung.
constexpr std::chrono::seconds kQuietHost{2};

// One reconnection: when the session was lost and why, when and after how
// many attempts the next began, and how much had been verified before it.
struct Reconnection {
    double lost_at_s = 0;
    std::string reason;
    double back_at_s = -1;  // < 0: not (yet) back
    uint32_t attempts = 0;
    uint32_t guest_id = 0;
    uint64_t packets_before = 0;
    uint64_t verified_before = 0;
};

struct Outcome {
    NDIS_STATUS end = NDIS_STATUS_SUCCESS;  // OK: a limit ended it
    std::string reason;
    bool limit_reached = false;
    bool verify_failed = false;
    ndisshm_guest_event queue{};  // QUEUE_ATTACHED, as the host announced it
    std::vector<Reconnection> reconnections;
};

// The end's short name in --json ("HOST_BYE", "HOST_GONE", "FAILURE"): the
// status's name without its NDIS_STATUS_ / NDISSHM_STATUS_ prefix.
std::string end_name(NDIS_STATUS status) {
    std::string name = ndisshm_status_name(status);
    for (const char* prefix : {"NDISSHM_STATUS_", "NDIS_STATUS_"})
        if (name.rfind(prefix, 0) == 0) return name.substr(std::string(prefix).size());
    return name;
}

int exit_status(const Outcome& o) {
    if (o.verify_failed) return 1;
    if (o.limit_reached || o.end == NDISSHM_STATUS_HOST_BYE) return 0;
    if (o.end == NDISSHM_STATUS_HOST_GONE) return kGuestHostVanished;
    return 1;
}

std::string describe_end(const Outcome& o) {
    if (o.limit_reached) return "limit reached; said BYE";
    return o.reason;
}

void print_summary(const GuestCommandOptions& opt, const ndisshm_guest_stats& s, uint64_t checksum,
                   const support::CheckCounts& v, const Outcome& o, double seconds) {
    const double pps = seconds > 0 ? static_cast<double>(s.packets) / seconds : 0;
    const double gbit = seconds > 0 ? static_cast<double>(s.bytes) * 8 / seconds / 1e9 : 0;
    if (opt.json) {
        nlohmann::ordered_json j = {
            {"name", opt.name},
            {"socket", opt.socket},
            {"memory_bytes", opt.memory_bytes},
            {"guest_id", s.guest_id},
            {"end", o.limit_reached ? "LIMIT" : end_name(o.end)},
            {"reason", describe_end(o)},
            {"packets", s.packets},
            {"bytes", s.bytes},
            {"bad_descriptors", s.bad_descriptors},
            {"bad_blocks", s.bad_blocks},
            {"batches", s.batches},
            {"blocks_known", s.blocks},
            {"queues_attached", s.queues},
            {"checksum", checksum},
            {"duration_s", seconds},
            {"packets_per_s", pps},
            {"gbit_per_s", gbit},
            {"queue", {{"id", o.queue.queue_id},
                       {"lookahead_split", o.queue.flags != 0},
                       {"lookahead_size", o.queue.lookahead_size}}},
            {"exit_status", exit_status(o)},
            {"reconnect_s", opt.reconnect_s},
            {"sessions_lost", s.sessions_lost},
            {"reconnects", s.reconnects},
            {"reconnect_attempts", s.reconnect_attempts},
        };
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const Reconnection& r : o.reconnections) {
            nlohmann::ordered_json e = {{"lost_at_s", r.lost_at_s}, {"reason", r.reason},
                                        {"packets_before", r.packets_before}};
            if (opt.verify) e["verified_before"] = r.verified_before;
            if (r.back_at_s >= 0) {
                e["back_at_s"] = r.back_at_s;
                e["down_s"] = r.back_at_s - r.lost_at_s;
                e["attempts"] = r.attempts;
                e["guest_id"] = r.guest_id;
            }
            list.push_back(std::move(e));
        }
        j["reconnections"] = std::move(list);
        if (opt.verify)
            j["verify"] = {{"verified", v.verified}, {"lost", v.lost}, {"out_of_order", v.out_of_order},
                           {"corrupt", v.corrupt}, {"last_seq", v.last_seq}};
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
        return;
    }
    std::printf("guest %s (id %u, %s of its own memory given to the host): %s\n", opt.name.c_str(), s.guest_id,
                human_bytes(opt.memory_bytes).c_str(), describe_end(o).c_str());
    std::printf("duration: %.1f s; %s packets/s, %s Gbit/s (%s read in place)\n", seconds, human_count(pps).c_str(),
                fixed(gbit, 3).c_str(), human_bytes(s.bytes).c_str());
    std::printf("packets: %llu\nbytes: %llu\nbad descriptors: %llu\nbad blocks: %llu\nbatches: %llu\n"
                "blocks known: %u\nqueues attached: %u\nchecksum: %016llx\n",
                static_cast<unsigned long long>(s.packets), static_cast<unsigned long long>(s.bytes),
                static_cast<unsigned long long>(s.bad_descriptors), static_cast<unsigned long long>(s.bad_blocks),
                static_cast<unsigned long long>(s.batches), s.blocks, s.queues,
                static_cast<unsigned long long>(checksum));
    if (s.sessions_lost != 0 || s.reconnect_attempts != 0)
        std::printf("sessions lost: %llu\nreconnected: %llu (%llu attempts)\n",
                    static_cast<unsigned long long>(s.sessions_lost), static_cast<unsigned long long>(s.reconnects),
                    static_cast<unsigned long long>(s.reconnect_attempts));
    if (opt.verify)
        std::printf("verified: %llu\nlost: %llu\nout of order: %llu\ncorrupt: %llu\nlast sequence number: %llu\n",
                    static_cast<unsigned long long>(v.verified), static_cast<unsigned long long>(v.lost),
                    static_cast<unsigned long long>(v.out_of_order), static_cast<unsigned long long>(v.corrupt),
                    static_cast<unsigned long long>(v.last_seq));
}

// What to do when the guest could not reach a host at `socket`: the words
// after the library's reason (`error`), or "" when it got as far as a host.
std::string connect_hint(const std::string& socket, const std::string& error) {
    const bool is_default = socket == ndisshm::Hub::default_socket_path();
    const std::string start = self_command() + (is_default ? " host" : " host --socket " + socket);
    if (socket.size() > 4 && socket.ends_with(".ctl"))
        return "\n  that is a host's control socket ('ndisshm stat' reads it); guests connect to its guest socket, "
               "usually " + socket.substr(0, socket.size() - 4) + ".sock";
    if (error.rfind("connect(", 0) != 0) return "";
    const std::filesystem::path dir = std::filesystem::path(socket).parent_path();
    std::error_code ec;
    if (!is_default && !dir.empty() && !std::filesystem::is_directory(dir, ec))
        return "\n  directory " + dir.string() + " does not exist, so no host listens there; start one with: mkdir -p " +
               dir.string() + " && " + start;
    return "\n  is a host running? start one with: " + start;
}

}  // namespace

int run_guest(const GuestCommandOptions& options) {
    GuestCommandOptions opt = options;
    if (opt.socket.empty()) opt.socket = ndisshm::Hub::default_socket_path();
    uint64_t checksum = 0;
    support::Checker checker;
    // FNV-1a over each packet: cheap, and it reads every byte in place.
    // --verify reads every byte too, through the traffic's own checksum.
    auto on_packet = [&checksum, &checker, &opt](const ndisshm::GuestPacket& p) {
        // Every segment of the packet (two with lookahead split), read where
        // it lies: nothing is joined.
        std::span<const std::byte> parts[NDISSHM_GUEST_MAX_SEGMENTS];
        const size_t n = std::min<size_t>(p.segments.size(), NDISSHM_GUEST_MAX_SEGMENTS);
        for (size_t i = 0; i < n; ++i) parts[i] = p.segments[i].data;
        // --frame-offset: the stream sits behind a NIC's headers (demo --nic
        // afxdp: whole Ethernet frames, the stream in the UDP payload); a
        // packet too short to hold it counts as corrupt.
        if (opt.verify) {
            std::span<const std::byte> rest[NDISSHM_GUEST_MAX_SEGMENTS];
            return checker.check(p.queue_id, support::skip(support::Segments(parts, n), opt.frame_offset, rest));
        }
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; ++i)
            for (std::byte b : parts[i]) h = (h ^ static_cast<uint64_t>(b)) * 1099511628211ull;
        checksum ^= h;
    };
    Outcome o;
    const auto start = Clock::now();
    auto since_start = [&start] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    std::unique_ptr<ndisshm::Guest> guest;
    const uint32_t reconnect_ms = static_cast<uint32_t>(opt.reconnect_s * 1000);
    // Losses and reconnections go to stderr even with --json: an operator's
    // log should show them as they happen; the summary lists them too.
    auto on_event = [&](const ndisshm_guest_event& e) {
        if (e.kind == NDISSHM_GUEST_QUEUE_ATTACHED) o.queue = e;
        if (e.kind == NDISSHM_GUEST_DISCONNECTED) {
            Reconnection r;
            r.lost_at_s = since_start();
            r.reason = e.reason != nullptr ? e.reason : "";
            r.packets_before = guest->stats().packets;
            r.verified_before = checker.counts().verified;
            std::fprintf(stderr, "ndisshm guest: lost the host at %.1f s: %s; reconnecting for up to %s s\n",
                         r.lost_at_s, r.reason.c_str(), fixed(opt.reconnect_s, 0).c_str());
            o.reconnections.push_back(std::move(r));
        }
        if (e.kind == NDISSHM_GUEST_RECONNECTED) {
            // A new host's streams start afresh: check them from their start.
            checker.restart();
            if (o.reconnections.empty()) o.reconnections.push_back({});  // connect was turned away first
            Reconnection& r = o.reconnections.back();
            r.back_at_s = since_start();
            r.attempts = e.attempts;
            r.guest_id = e.guest_id;
            std::fprintf(stderr, "ndisshm guest: reconnected to %s as guest %u after %u attempt%s (%.2f s down)\n",
                         opt.socket.c_str(), e.guest_id, e.attempts, e.attempts == 1 ? "" : "s",
                         r.back_at_s - r.lost_at_s);
        }
    };
    const std::string& socket = opt.socket;
    try {
        guest = std::make_unique<ndisshm::Guest>(
            ndisshm::GuestOptions{opt.name, opt.memory_bytes, 0, false, reconnect_ms}, on_packet, on_event);
        guest->connect(socket, opt.connect_timeout_ms);
        if (!opt.json)
            std::fprintf(stderr, "ndisshm guest: connected to %s as guest %u\n", socket.c_str(),
                         guest->stats().guest_id);
    } catch (const ndisshm::GuestError& e) {
        std::fprintf(stderr, "ndisshm guest: %s%s\n", e.what(), connect_hint(socket, e.what()).c_str());
        if (guest == nullptr || guest->stats().reconnecting == 0)
            return e.status() == NDISSHM_STATUS_HOST_GONE ? kGuestHostVanished : 1;
        // A full host (or one that went mid-handshake): the library tries
        // again from poll, as after a lost session.
        std::fprintf(stderr, "ndisshm guest: trying again for up to %s s\n", fixed(opt.reconnect_s, 0).c_str());
        o.reconnections.push_back({0, e.what()});
    }

    bool told_quiet = false;  // a guest on a host that sends nothing says so, once
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration_s));
    for (;;) {
        int wait = kPollSliceMs;
        if (opt.duration_s > 0) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) {
                o.limit_reached = true;
                break;
            }
            wait = left < kPollSliceMs ? static_cast<int>(left) : kPollSliceMs;
        }
        const NDIS_STATUS s = guest->poll_once(wait);
        if (s != NDIS_STATUS_SUCCESS && s != NDISSHM_STATUS_TIMEOUT) {
            o.end = s;
            o.reason = guest->last_error();
            break;
        }
        if (!told_quiet && !opt.json && guest->stats().packets == 0 && guest->stats().connected != 0 &&
            Clock::now() - start >= kQuietHost) {
            told_quiet = true;
            std::fprintf(stderr,
                         "ndisshm guest: no packets after %lld s: waiting; a host sends none unless told to "
                         "('%s host --rate PPS')\n",
                         static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kQuietHost).count()),
                         self_command().c_str());
        }
        if (opt.packets > 0 && guest->stats().packets >= opt.packets) {
            o.limit_reached = true;
            break;
        }
    }
    if (o.limit_reached) guest->close();  // BYE: the host frees our blocks at once
    const support::CheckCounts& v = checker.counts();
    if (opt.verify && (v.lost != 0 || v.out_of_order != 0 || v.corrupt != 0)) {
        o.verify_failed = true;
        o.reason = "verify: " + std::to_string(v.lost) + " lost, " + std::to_string(v.out_of_order) +
                   " out of order, " + std::to_string(v.corrupt) + " corrupt (" + describe_end(o) + ")";
    }
    print_summary(opt, guest->stats(), checksum, v, o, std::chrono::duration<double>(Clock::now() - start).count());
    const int rc = exit_status(o);
    if (rc != 0) std::fprintf(stderr, "ndisshm guest: %s\n", o.reason.c_str());
    return rc;
}

}  // namespace ndisshm::cli
