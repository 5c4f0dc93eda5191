// The guest process of zero_copy_bench.cpp: a "virtual machine" built on the
// public guest library (<ndisshm/guest.h>) and nothing else, as a user's
// guest would be.
//
//   ndisshm_bench_guest SOCKET MEMORY_BYTES STATS_FD PARENT_PID [verify|rxonly] [sleep|busy]
//
// It makes its memory (a memfd), hands it to the host at SOCKET, and reads
// the packets its receive ring announces, in place:
//   verify  every byte (support/packet_format.hpp's check), in the library's
//           on_packet callback; each packet goes back when it returns;
//   rxonly  each descriptor and the packet's first 64 bytes, as a switch reads
//           headers (and as dpdk-testpmd's rxonly does), in bursts of 32
//           (ndisshm_guest_rx_burst / _rx_return).
// sleep (the default) waits in interrupt mode (need-wakeup, an eventfd);
// busy spins on the ring (NDISSHM_GUEST_BUSY_POLL), as a polling driver on a
// core of its own does. After every burst it publishes its counters in the
// page STATS_FD maps, which the bench reads. Exit status: 0 when the host said BYE, 1 when
// the session ended any other way, 2 on bad arguments or set-up, 3 when
// PARENT_PID is no longer its parent (the bench died without closing the
// socket: the guest never outlives it).
#include <ndisshm/guest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "packet_format.hpp"
#include "zero_copy_counters.hpp"

namespace {

// How long one poll waits before the guest checks that its parent is alive.
constexpr int kPollMs = 200;
constexpr int kConnectTimeoutMs = 10000;

struct Checks {
    uint64_t packets = 0, bytes = 0;
    ndisshm::support::Checker checker;  // the stream is the guest's queue, as the rig stamps it
};

void on_packet(void* context, const ndisshm_guest_packet* p) {
    auto* c = static_cast<Checks*>(context);
    ++c->packets;
    c->bytes += p->length;
    c->checker.check(p->queue_id, static_cast<const std::byte*>(p->data), p->length);
}

volatile uint64_t g_sink = 0;

// rxonly: what a switch reads of each packet: its descriptor and its first
// 64 bytes (the headers), folded so the reads cannot be optimised away.
uint64_t read_headers(const ndisshm_guest_packet& p) {
    uint64_t fold = p.handle ^ p.offset ^ p.packet_length;
    const auto* d = static_cast<const unsigned char*>(p.data);
    const uint32_t n = p.length < 64 ? p.length : 64;
    for (uint32_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, d + i, 8);
        fold ^= w;
    }
    return fold;
}

void publish(zero_copy::GuestCounters* out, const Checks& c, uint64_t batches) {
    const ndisshm::support::CheckCounts& v = c.checker.counts();
    // Release on the last store: a reader that sees `batches` sees the rest.
    out->packets.store(c.packets, std::memory_order_relaxed);
    out->bytes.store(c.bytes, std::memory_order_relaxed);
    out->verified.store(v.verified, std::memory_order_relaxed);
    out->corrupt.store(v.corrupt, std::memory_order_relaxed);
    out->lost.store(v.lost + v.out_of_order, std::memory_order_relaxed);
    out->batches.store(batches, std::memory_order_release);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5 || argc > 7) {
        std::fprintf(stderr, "usage: %s SOCKET MEMORY_BYTES STATS_FD PARENT_PID [verify|rxonly] [sleep|busy]\n",
                     argv[0]);
        return 2;
    }
    const bool rxonly = argc > 5 && std::strcmp(argv[5], "rxonly") == 0;
    const bool busy = argc > 6 && std::strcmp(argv[6], "busy") == 0;
    const std::string socket = argv[1];
    const uint64_t memory = std::strtoull(argv[2], nullptr, 0);
    const int stats_fd = std::atoi(argv[3]);
    const auto parent = static_cast<pid_t>(std::atol(argv[4]));
    void* page =
        ::mmap(nullptr, sizeof(zero_copy::GuestCounters), PROT_READ | PROT_WRITE, MAP_SHARED, stats_fd, 0);
    if (page == MAP_FAILED) {
        std::perror("ndisshm_bench_guest: mmap of the counters page");
        return 2;
    }
    ::close(stats_fd);
    auto* counters = static_cast<zero_copy::GuestCounters*>(page);

    Checks checker;
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = "bench-guest";
    c.memory_bytes = memory;
    c.on_packet = rxonly ? nullptr : &on_packet;
    c.context = &checker;
    c.flags = busy ? NDISSHM_GUEST_BUSY_POLL : 0;
    char error[256] = {};
    ndisshm_guest* g = nullptr;
    (void)ndisshm_guest_create(&c, &g, error, sizeof(error));
    if (g == nullptr) {
        std::fprintf(stderr, "ndisshm_bench_guest: %s\n", error);
        return 2;
    }
    if (ndisshm_guest_connect(g, socket.c_str(), kConnectTimeoutMs, error, sizeof(error)) != NDIS_STATUS_SUCCESS) {
        std::fprintf(stderr, "ndisshm_bench_guest: connect: %s\n", error);
        ndisshm_guest_destroy(g);
        return 2;
    }
    int rc = 1;
    uint64_t fold = 0;
    ndisshm_guest_packet burst[32];
    for (;;) {
        const NDIS_STATUS s = rxonly ? ndisshm_guest_wait(g, kPollMs, error, sizeof(error))
                                     : ndisshm_guest_poll(g, kPollMs, error, sizeof(error));
        if (s == NDIS_STATUS_SUCCESS) {
            if (rxonly) {
                // Everything ready, in bursts, before waiting again.
                for (uint32_t n; (n = ndisshm_guest_rx_burst(g, burst, 32)) != 0;) {
                    for (uint32_t i = 0; i < n; ++i) {
                        fold ^= read_headers(burst[i]);
                        ++checker.packets;
                        checker.bytes += burst[i].packet_length;
                    }
                    ndisshm_guest_rx_return(g, burst, n);
                }
                g_sink = fold;  // the reads happened: keep them
            }
            ndisshm_guest_stats st;
            ndisshm_guest_get_stats(g, &st);
            publish(counters, checker, st.batches);
            continue;
        }
        if (s == NDISSHM_STATUS_TIMEOUT) {
            if (::getppid() != parent) {
                rc = 3;
                break;
            }
            continue;
        }
        if (s == NDISSHM_STATUS_HOST_BYE) {
            rc = 0;
        } else {
            std::fprintf(stderr, "ndisshm_bench_guest: session ended: %s: %s\n", ndisshm_status_name(s),
                         error);
        }
        break;
    }
    ndisshm_guest_destroy(g);
    ::munmap(page, sizeof(zero_copy::GuestCounters));
    return rc;
}
