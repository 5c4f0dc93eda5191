// The afxdp suite's guest: a real process, through the real guest library
// (<ndisshm/guest.h>), that owns its memory as a memfd and reads every frame
// the kernel wrote there in place, checking it byte for byte.
//
//   afxdp_guest SOCKET NAME [--memory BYTES] [--life-ms MS]
//
// Lines on stdout, flushed, for the test to wait on:
//   "QUEUE id", "BLOCK handle guest_offset length usage",
//   "GOT udp=U distinct=D icmp=I bad=B inplace=P other=O" when they changed,
//   at most every 50 ms and whenever traffic pauses (U, I: intact packets; D: distinct UDP sequence
//   numbers; B: frames that failed the check; P: packets whose data pointer
//   is exactly guest memory + the block's guest offset + the packet's offset,
//   i.e. read where the kernel wrote them),
//   "BYE" (exit 0), "GONE" (the host died, exit 3), "CLOSED why" (exit 4).
#include <ndisshm/guest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "packet_format.hpp"

namespace {

using Kind = ndisshm::support::FrameKind;
using Parsed = ndisshm::support::ParsedFrame;
using ndisshm::support::parse_frame;

void out(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

struct State {
    ndisshm_guest* guest = nullptr;
    std::map<uint64_t, uint64_t> block_offset;  // handle -> guest offset
    std::set<uint64_t> distinct;
    uint64_t udp = 0, icmp = 0, bad = 0, inplace = 0, other = 0;
    bool changed = false;
};

void on_event(void* context, const ndisshm_guest_event* e) {
    auto* s = static_cast<State*>(context);
    char line[160];
    switch (e->kind) {
        case NDISSHM_GUEST_QUEUE_ATTACHED:
            out("QUEUE " + std::to_string(e->queue_id));
            break;
        case NDISSHM_GUEST_BLOCK_ADDED:
            s->block_offset[e->handle] = e->guest_offset;
            std::snprintf(line, sizeof(line), "BLOCK 0x%llx %llu %u %u",
                          static_cast<unsigned long long>(e->handle),
                          static_cast<unsigned long long>(e->guest_offset), e->length, e->usage);
            out(line);
            break;
        case NDISSHM_GUEST_BLOCK_REMOVED:
            s->block_offset.erase(e->handle);
            break;
        case NDISSHM_GUEST_QUEUE_DETACHED:
        case NDISSHM_GUEST_DISCONNECTED:  // this peer does not reconnect
        case NDISSHM_GUEST_RECONNECTED:
            break;
    }
}

void on_packet(void* context, const ndisshm_guest_packet* p) {
    auto* s = static_cast<State*>(context);
    s->changed = true;
    uint64_t bytes = 0;
    const auto* memory = static_cast<const std::byte*>(ndisshm_guest_memory(s->guest, &bytes));
    auto b = s->block_offset.find(p->handle);
    if (b != s->block_offset.end() &&
        static_cast<const std::byte*>(p->data) == memory + b->second + p->offset)
        ++s->inplace;
    const Parsed r = parse_frame(static_cast<const std::byte*>(p->data), p->length);
    switch (r.kind) {
        case Kind::Udp:
            ++s->udp;
            s->distinct.insert(r.seq);
            break;
        case Kind::Icmp:
            ++s->icmp;
            break;
        case Kind::Bad:
            ++s->bad;
            break;
        case Kind::Other:
            ++s->other;
            break;
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: afxdp_guest SOCKET NAME [--memory BYTES] [--life-ms MS]\n");
        return 2;
    }
    uint64_t memory = 16u << 20;
    int life_ms = 15000;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--memory") == 0) memory = std::strtoull(argv[i + 1], nullptr, 0);
        if (std::strcmp(argv[i], "--life-ms") == 0) life_ms = std::atoi(argv[i + 1]);
    }
    State s;
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = argv[2];
    c.memory_bytes = memory;
    c.guest_physical_base = 0x100000000ull;
    c.on_packet = &on_packet;
    c.on_event = &on_event;
    c.context = &s;
    char err[256] = "";
    (void)ndisshm_guest_create(&c, &s.guest, err, sizeof(err));
    if (s.guest == nullptr) return out(std::string("CLOSED create: ") + err), 4;
    if (ndisshm_guest_connect(s.guest, argv[1], 5000, err, sizeof(err)) != NDIS_STATUS_SUCCESS)
        return out(std::string("CLOSED connect: ") + err), 4;
    using Clock = std::chrono::steady_clock;
    const auto end = Clock::now() + std::chrono::milliseconds(life_ms);
    auto last_line = Clock::now();
    int code = 4;
    while (Clock::now() < end) {
        const NDIS_STATUS st = ndisshm_guest_poll(s.guest, 20, err, sizeof(err));
        // The tally at most every 50 ms, and whenever the traffic pauses: the
        // test reads our stdout only while it waits for a line, and a full
        // pipe would stop us (and with us the packets given back) mid-test.
        if (s.changed &&
            (st != NDIS_STATUS_SUCCESS || Clock::now() - last_line >= std::chrono::milliseconds(50))) {
            s.changed = false;
            last_line = Clock::now();
            char line[200];
            std::snprintf(
                line, sizeof(line), "GOT udp=%llu distinct=%zu icmp=%llu bad=%llu inplace=%llu other=%llu",
                static_cast<unsigned long long>(s.udp), s.distinct.size(),
                static_cast<unsigned long long>(s.icmp), static_cast<unsigned long long>(s.bad),
                static_cast<unsigned long long>(s.inplace), static_cast<unsigned long long>(s.other));
            out(line);
        }
        if (st == NDIS_STATUS_SUCCESS || st == NDISSHM_STATUS_TIMEOUT) continue;
        if (st == NDISSHM_STATUS_HOST_BYE) {
            out("BYE");
            code = 0;
        } else if (st == NDISSHM_STATUS_HOST_GONE) {
            out("GONE");
            code = 3;
        } else {
            out(std::string("CLOSED ") + ndisshm_status_name(st) + ": " +
                err);
        }
        break;
    }
    if (code == 4 && Clock::now() >= end) out("CLOSED life time over");
    ndisshm_guest_destroy(s.guest);
    return code;
}
