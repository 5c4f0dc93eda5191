// The soak's guest process (`ndisshm soak --guest-worker PATH`): one guest
// session over <ndisshm/guest.hpp> that checks what the host tells it (each
// block inside its memory, no two live blocks overlapping, each on its own
// queue) and every packet (intact, of its queue's stream, in sequence with
// none skipped: support/packet_format.hpp), and reports on stdout line by
// line (soak/guests.hpp has the lines), so a SIGKILL at any moment loses
// nothing already found.
#include <ndisshm/guest.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "common/signals.hpp"
#include "packet_format.hpp"
#include "soak/soak.hpp"
#include "soak/guests.hpp"

namespace ndisshm::cli {
namespace {

struct GuestChecks {
    uint64_t memory_bytes = 0;
    uint32_t queue = 0;
    std::map<uint64_t, uint64_t> live;       // guest offset -> end, of live blocks
    std::map<uint64_t, uint64_t> offset_of;  // handle -> guest offset
    uint64_t next_seq = 1;
    uint64_t packets = 0;
    uint64_t findings = 0;
    bool lost_on_bye = false;  // the last session ended on the host's BYE, and none since

    void say(const std::string& line) {
        std::fputs((line + "\n").c_str(), stdout);
        std::fflush(stdout);
    }
    void found(const std::string& what) {
        ++findings;
        say("X " + what);
    }

    void on_event(const ndisshm_guest_event& e) {
        if (e.kind == NDISSHM_GUEST_DISCONNECTED) {
            // The host restarted: its queue and blocks went (BLOCK_REMOVED came
            // first); the next host's queue is a new stream from 1.
            lost_on_bye = std::string(e.reason).find("(BYE)") != std::string::npos;
            queue = 0;
            next_seq = 1;
            say(std::string("D ") + e.reason);
        } else if (e.kind == NDISSHM_GUEST_RECONNECTED) {
            lost_on_bye = false;
            say("R " + std::to_string(e.attempts));
        } else if (e.kind == NDISSHM_GUEST_QUEUE_ATTACHED) {
            if (queue != 0) found("a second queue attached: " + std::to_string(e.queue_id));
            queue = e.queue_id;
            say("Q " + std::to_string(queue));
        } else if (e.kind == NDISSHM_GUEST_BLOCK_ADDED) {
            block_added(e);
        } else if (e.kind == NDISSHM_GUEST_BLOCK_REMOVED) {
            if (auto it = offset_of.find(e.handle); it != offset_of.end()) {
                live.erase(it->second);
                offset_of.erase(it);
            }
            say("B- " + std::to_string(e.handle));
        }
    }

    void block_added(const ndisshm_guest_event& e) {
        const uint64_t end = e.guest_offset + e.length;
        if (e.length == 0 || end > memory_bytes || end < e.guest_offset)
            found("block " + std::to_string(e.handle) + " at offset " + std::to_string(e.guest_offset) +
                  " of " + std::to_string(e.length) + " bytes lies outside guest memory of " +
                  std::to_string(memory_bytes));
        if (e.queue_id != queue)
            found("block " + std::to_string(e.handle) + " is for queue " + std::to_string(e.queue_id) +
                  ", this guest's is " + std::to_string(queue));
        auto next = live.lower_bound(e.guest_offset);
        const bool meets_next = next != live.end() && next->first < end;
        const bool meets_prev = next != live.begin() && std::prev(next)->second > e.guest_offset;
        if (meets_next || meets_prev)
            found("block " + std::to_string(e.handle) + " at guest offset " + std::to_string(e.guest_offset) +
                  " overlaps a live block at offset " +
                  std::to_string(meets_next ? next->first : std::prev(next)->first));
        live[e.guest_offset] = end;
        offset_of[e.handle] = e.guest_offset;
        say("B+ " + std::to_string(e.handle) + " " + std::to_string(e.guest_offset) + " " +
            std::to_string(e.length) + " " + std::to_string(e.queue_id));
    }

    void on_packet(const ndisshm::GuestPacket& p) {
        // Every segment where it lies; the stream is this guest's queue.
        std::span<const std::byte> parts[NDISSHM_GUEST_MAX_SEGMENTS];
        const size_t n = std::min<size_t>(p.segments.size(), NDISSHM_GUEST_MAX_SEGMENTS);
        for (size_t i = 0; i < n; ++i) parts[i] = p.segments[i].data;
        const std::optional<uint64_t> seq = support::verify(support::Segments(parts, n), queue);
        if (p.queue_id != queue || !seq) {
            found("packet of " + std::to_string(p.length) + " bytes on queue " + std::to_string(p.queue_id) +
                  " is corrupt or not this queue's stream (queue " + std::to_string(queue) + ")");
            return;
        }
        if (*seq != next_seq)
            found("packet " + std::to_string(*seq) + " where " + std::to_string(next_seq) +
                  " was due (lost or reordered)");
        next_seq = *seq + 1;
        ++packets;
    }
};

}  // namespace

int run_soak_guest(const SoakOptions& o) {
    GuestChecks checks;
    checks.memory_bytes = o.guest_memory;
    std::unique_ptr<ndisshm::Guest> g;
    NDIS_STATUS st = NDIS_STATUS_SUCCESS;
    // With reconnection (the soak restarts its host), a host that is not
    // listening at the first try is one restarting: try again, within the
    // same bound as a reconnection (the library does not, see guest.h).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.guest_reconnect_ms);
    for (;;) {
        try {
            g = std::make_unique<ndisshm::Guest>(
                ndisshm::GuestOptions{o.guest_name, o.guest_memory, o.guest_base, false, o.guest_reconnect_ms},
                [&checks](const ndisshm::GuestPacket& p) { checks.on_packet(p); },
                [&checks](const ndisshm_guest_event& e) { checks.on_event(e); });
        } catch (const ndisshm::GuestError& e) {
            checks.say(std::string("E create ") + e.what());
            return 1;
        }
        try {
            g->connect(o.guest_worker, 5000);
            st = NDIS_STATUS_SUCCESS;
        } catch (const ndisshm::GuestError& e) {
            st = e.status();
            if (g->stats().reconnecting != 0) st = NDIS_STATUS_SUCCESS;  // poll retries
        }
        if (st != NDIS_STATUS_FAILURE || o.guest_reconnect_ms == 0 || std::chrono::steady_clock::now() >= give_up)
            break;
        g.reset();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const auto& stop = stop_on_signals();
    uint64_t reported = 0;
    auto last_report = std::chrono::steady_clock::now();
    while (st >= 0 && !stop) {
        st = g->poll_once(100);
        // The count now and then, not per packet: the soak needs it only for its summary.
        const auto now = std::chrono::steady_clock::now();
        if (checks.packets != reported && now - last_report >= std::chrono::milliseconds(20)) {
            reported = checks.packets;
            last_report = now;
            checks.say("P " + std::to_string(reported));
        }
    }
    const ndisshm_guest_stats s = g->stats();
    if (s.bad_descriptors != 0 || s.bad_blocks != 0)
        checks.found(std::to_string(s.bad_descriptors) + " bad descriptors, " + std::to_string(s.bad_blocks) +
                     " bad blocks");
    checks.say("P " + std::to_string(checks.packets));
    // Told to stop (the soak's end) after its host said BYE: that is its BYE.
    if (stop && st >= 0) st = checks.lost_on_bye ? NDISSHM_STATUS_HOST_BYE : NDIS_STATUS_FAILURE;
    const bool bye = st == NDISSHM_STATUS_HOST_BYE;
    checks.say(std::string("E ") + (bye ? "host-bye " : "ended ") + ndisshm_status_name(st) + ": " +
               g->last_error());
    return bye && checks.findings == 0 ? 0 : 1;
}

}  // namespace ndisshm::cli
