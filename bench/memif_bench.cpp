// Packets between two ports of DPDK's memif PMD (Debian's DPDK 22.11), the
// shared-memory packet interface a user would pick instead of ndisshm: the
// peer of zero_copy_bench.cpp's guest_rx benchmarks, in the same run.
//
//   memif/copy/bytes:B/real_time   B = 64, 1500, 9000
//
// Two memif ports in this process, hot-plugged after the EAL started
// (rte_dev_probe; dpdk_eal.hpp, shared with dpdk_bench.cpp, keeps its command
// line as it was):
//   net_memif0,role=server,id=0,socket=/run/ndisshm_bench_memif.<pid>.2048.sock,socket-abstract=no
//   net_memif1,role=client,id=0,socket=<the same>,socket-abstract=no
// with the PMD's defaults otherwise (2048-byte buffers, rings of 1 << 10
// slots), one queue each way. 9000 B packets get a pair of their own
// (net_memif2/3, bsize=9216, id 0 on a socket of their own): one ring buffer
// per packet, as a user who runs jumbo frames would configure it. With the
// default 2048-byte buffers, DPDK 22.11's copy-mode tx spreads a 9000 B packet
// over 5 buffers and the receiver, now and then, delivered 10240 bytes: the
// last buffer's length reset to 2048. By our reading of eth_memif_tx, a
// multi-buffer packet can take one slot more than the receiver has given
// back when the ring is nearly full, and the receiver's refill then rewrites
// that slot's length. (Upstream fixed stale flags in the same path in 2026:
// "net/memif: fix descriptor Tx flags corruption".)
//
// A sender thread on the EAL's first CPU calls rte_eth_tx_burst on the server
// port with bursts of 32 mbufs of B bytes from a mempool, keeping what was not
// sent for the next call; a receiver thread on the second CPU calls
// rte_eth_rx_burst(32) on the client port, reads the first 64 bytes of each
// packet (its sequence number and length, checked) and frees the mbufs. Both
// poll (memif's polling mode: no eventfd per burst). Each thread takes an
// lcore id (rte_thread_register), so the mempools' per-lcore caches serve it.
//
// Copy mode, two copies per packet: the server's tx copies the mbuf into a
// buffer of the ring in the shared memory, and the client's rx copies it out
// into mbufs of its pool (DPDK's default 2 KiB mbufs: 9000 B is a chain of 5).
// It works with the EAL's --no-huge memory because the shared regions are a
// memfd of the PMD's own. Zero copy (zero-copy=yes, client only) would hand
// the peer the mbuf pool's memory itself: it needs EAL memory that can be
// passed as file descriptors, i.e. hugepages with --single-file-segments (the
// PMD refuses "multi-file segments"), which this machine and this EAL line
// (--no-huge, legacy memory) do not have.
//
// The sender writes only the first 64 bytes of each packet (sequence number,
// length, a pattern); the rest of the mbuf is what it held. ndisshm's emulated
// NIC writes every byte (its "DMA"), and its guest reads every byte.
//
// One iteration is a fixed 10 ms slice that this thread sleeps through while
// the two threads run; the counters are over the timed loop, named as
// guest_rx's are so that run.sh puts them side by side:
//   packets_per_s, gbit_per_s  packets (and their B bytes) the receiver took
//                              per second
//   host_cpu_ns                CPU of the sender thread per packet it sent
//   guest_cpu_ns               CPU of the receiver thread per packet it took
// Both threads busy-poll, so each CPU figure is its thread's whole time over
// the packets: the slower side's is what a packet costs, the faster side's
// includes its empty polls.
//
// Nothing hangs: a link that does not come up within 5 s, or no packet within
// 2 s, is an error. Nothing is lost: after each run the receiver drains the
// ring, and every packet must have arrived once and in order. Anything that
// cannot start (no EAL, no memif PMD, fewer than two CPUs) ends the benchmark
// with SkipWithError and the reason; the rest of the suite runs on.
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "bench_support.hpp"
#include "dpdk_eal.hpp"

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint16_t kBurst = 32;
constexpr uint32_t kLargest = 9000;
constexpr uint32_t kMemifDefaultBuffer = 2048;  // the PMD's default bsize
constexpr uint32_t kMemifJumboBuffer = 9216;    // a 9000 B packet in one buffer
constexpr uint32_t kMemifRingSlots = 1024;      // its default rsize, 10 (log2)
constexpr auto kSlice = std::chrono::milliseconds(10);
constexpr auto kLinkTimeout = std::chrono::seconds(5);
constexpr auto kFirstPacketTimeout = std::chrono::seconds(2);
constexpr auto kWarmUp = std::chrono::milliseconds(5);
constexpr auto kDrainQuiet = std::chrono::milliseconds(20);
constexpr uint64_t kPattern = 0x6e646973'73686d21;  // "ndisshm!"

uint64_t thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

// The ring buffer size for packets of `bytes`: the PMD's default unless the
// packet would need more than one buffer (see the top of this file).
uint32_t buffer_bytes_for(uint32_t bytes) {
    return bytes <= kMemifDefaultBuffer ? kMemifDefaultBuffer : kMemifJumboBuffer;
}

// Two ports, their mempools and their socket, made by the first memif
// benchmark that needs them and kept to the end of the run (closed before the
// EAL is). A pair that could not be made is not tried again: every memif
// benchmark that needs it reports why.
class MemifPair {
public:
    static MemifPair* get(uint32_t buffer_bytes, std::string* error) {
        static MemifPair standard(0, kMemifDefaultBuffer), jumbo(1, kMemifJumboBuffer);
        MemifPair& pair = buffer_bytes == kMemifDefaultBuffer ? standard : jumbo;
        if (!pair.tried_) {
            pair.tried_ = true;
            pair.made_ = pair.make();
        }
        *error = pair.made_;
        return pair.made_.empty() ? &pair : nullptr;
    }

    uint32_t buffer_bytes() const { return buffer_bytes_; }

    uint16_t tx_port() const { return server_port_; }
    uint16_t rx_port() const { return client_port_; }
    rte_mempool* tx_pool() const { return tx_pool_; }
    int tx_cpu() const { return tx_cpu_; }
    int rx_cpu() const { return rx_cpu_; }

    // The sequence number of the next packet: every one before it has been
    // sent and received (the receiver drains after each run).
    uint64_t next_seq = 0;

private:
    // Pair n is net_memif<2n> (server) and net_memif<2n+1> (client).
    MemifPair(int n, uint32_t buffer_bytes)
        : buffer_bytes_(buffer_bytes),
          server_name_("net_memif" + std::to_string(2 * n)),
          client_name_("net_memif" + std::to_string(2 * n + 1)),
          tag_(std::to_string(buffer_bytes)) {}

    std::string make() {
        const dpdk::Eal& eal = dpdk::eal();
        if (!eal.ok) return eal.error;
        if (eal.second_cpu < 0)
            return "skipped: this process may use 1 CPU, and the memif sender and receiver need one each";
        tx_cpu_ = eal.main_cpu;
        rx_cpu_ = eal.second_cpu;
        dpdk::before_cleanup([this] { close(); });

        socket_path_ = std::string(::access("/run", W_OK) == 0 ? "/run" : "/tmp") + "/ndisshm_bench_memif." +
                       std::to_string(::getpid()) + "." + tag_ + ".sock";
        ::unlink(socket_path_.c_str());

        // The sender's pool holds the largest packet in one mbuf; the receiver's
        // has DPDK's default 2 KiB mbufs, as an application's would.
        tx_pool_ = rte_pktmbuf_pool_create(("memif_tx" + tag_).c_str(), 4095, 256, 0, RTE_PKTMBUF_HEADROOM + kLargest, SOCKET_ID_ANY);
        if (tx_pool_ == nullptr) return std::string("rte_pktmbuf_pool_create (tx): ") + rte_strerror(rte_errno);
        rx_pool_ = rte_pktmbuf_pool_create(("memif_rx" + tag_).c_str(), 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        if (rx_pool_ == nullptr) return std::string("rte_pktmbuf_pool_create (rx): ") + rte_strerror(rte_errno);

        // The server first: it creates the listening socket the client connects to.
        if (std::string e = probe(server_name_, "server", &server_port_); !e.empty()) return e;
        if (std::string e = probe(client_name_, "client", &client_port_); !e.empty()) return e;
        for (uint16_t port : {server_port_, client_port_})
            if (std::string e = configure(port); !e.empty()) return e;
        for (uint16_t port : {server_port_, client_port_}) {
            const int rc = rte_eth_dev_start(port);
            if (rc < 0) return "rte_eth_dev_start(" + std::to_string(port) + "): " + errno_text(rc);
            started_[port == server_port_ ? 0 : 1] = true;
        }
        return wait_for_link();
    }

    std::string probe(const std::string& name, const char* role, uint16_t* port) {
        const std::string devargs = name + ",role=" + role + ",id=0,bsize=" + tag_ + ",socket=" + socket_path_ +
                                    ",socket-abstract=no";
        const int rc = rte_dev_probe(devargs.c_str());
        if (rc < 0)
            return "skipped: the memif PMD did not take " + devargs + " (rte_dev_probe: " + errno_text(rc) +
                   "; is librte_net_memif.so in the EAL's driver directory?)";
        probed_[port == &server_port_ ? 0 : 1] = true;
        if (rte_eth_dev_get_port_by_name(name.c_str(), port) != 0) return "no ethdev port named " + name;
        return {};
    }

    std::string configure(uint16_t port) {
        rte_eth_conf conf{};
        int rc = rte_eth_dev_configure(port, 1, 1, &conf);
        if (rc < 0) return "rte_eth_dev_configure(" + std::to_string(port) + "): " + errno_text(rc);
        const auto socket = static_cast<unsigned>(rte_eth_dev_socket_id(port));
        rc = rte_eth_rx_queue_setup(port, 0, kMemifRingSlots, socket, nullptr, rx_pool_);
        if (rc < 0) return "rte_eth_rx_queue_setup(" + std::to_string(port) + "): " + errno_text(rc);
        rc = rte_eth_tx_queue_setup(port, 0, kMemifRingSlots, socket, nullptr);
        if (rc < 0) return "rte_eth_tx_queue_setup(" + std::to_string(port) + "): " + errno_text(rc);
        return {};
    }

    // The client connects from the EAL's interrupt thread; the link is up on
    // both ports once the two have exchanged their regions and rings.
    std::string wait_for_link() {
        const auto deadline = Clock::now() + kLinkTimeout;
        for (;;) {
            bool up[2] = {false, false};
            for (int i = 0; i < 2; ++i) {
                rte_eth_link link{};
                if (rte_eth_link_get_nowait(i == 0 ? server_port_ : client_port_, &link) == 0)
                    up[i] = link.link_status == RTE_ETH_LINK_UP;
            }
            if (up[0] && up[1]) return {};
            if (Clock::now() > deadline)
                return std::string("memif link not up within 5 s (server ") + (up[0] ? "up" : "down") + ", client " +
                       (up[1] ? "up" : "down") + ", socket " + socket_path_ + ")";
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    // Whatever make() got to, undone; the server last, as it owns the socket
    // file (the PMD unlinks it when its last device goes).
    void close() {
        if (started_[1]) rte_eth_dev_stop(client_port_);
        if (started_[0]) rte_eth_dev_stop(server_port_);
        if (probed_[1]) rte_eth_dev_close(client_port_);
        if (probed_[0]) rte_eth_dev_close(server_port_);
        rte_mempool_free(rx_pool_);
        rte_mempool_free(tx_pool_);
        if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
        started_[0] = started_[1] = false;
        probed_[0] = probed_[1] = false;
        rx_pool_ = tx_pool_ = nullptr;
    }

    uint32_t buffer_bytes_;
    std::string server_name_, client_name_, tag_;
    bool tried_ = false;
    std::string made_;
    uint16_t server_port_ = 0, client_port_ = 0;
    rte_mempool* tx_pool_ = nullptr;
    rte_mempool* rx_pool_ = nullptr;
    bool probed_[2] = {false, false};
    bool started_[2] = {false, false};
    std::string socket_path_;
    int tx_cpu_ = 0, rx_cpu_ = 1;
};

enum Phase : int { kWarm = 0, kMeasured = 1, kStop = 2 };

// What one thread did over the measured window.
struct Window {
    uint64_t cpu_ns = 0;
    uint64_t packets = 0;
};

// Tracks the phase from a worker's loop: the thread's CPU time and packet
// count when the measured window opened and when it closed.
class WindowClock {
public:
    // Returns the phase; call it once per burst.
    int step(const std::atomic<int>& phase, uint64_t packets) {
        const int now = phase.load(std::memory_order_relaxed);
        if (now != seen_) {
            if (seen_ == kWarm) begin_ = {thread_cpu_ns(), packets};
            if (now == kStop) window_ = {thread_cpu_ns() - begin_.cpu_ns, packets - begin_.packets};
            seen_ = now;
        }
        return now;
    }
    const Window& window() const { return window_; }

private:
    int seen_ = kWarm;
    Window begin_, window_;
};

// Pins the calling thread to one CPU and gives it an lcore id, so that the
// mempools' per-lcore caches serve it (a non-EAL thread without one would take
// every mbuf from the pool's shared ring).
std::string enter_worker(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); rc != 0)
        return "pthread_setaffinity_np(CPU " + std::to_string(cpu) + "): " + errno_text(rc);
    if (rte_thread_register() != 0) return std::string("rte_thread_register: ") + rte_strerror(rte_errno);
    return {};
}

struct Run {
    std::atomic<int> phase{kWarm};
    std::atomic<uint64_t> received{0};
    std::atomic<bool> sender_gone{false};
    // Each written by its own thread, read after it was joined.
    std::string tx_error, rx_error;
    Window tx, rx;
    uint64_t tx_end_seq = 0;  // the sequence number after the last packet sent
    uint64_t rx_end_seq = 0;  // the one after the last packet received
};

void sender(Run& run, MemifPair& pair, uint32_t bytes) {
    run.tx_error = enter_worker(pair.tx_cpu());
    if (!run.tx_error.empty()) {
        run.tx_end_seq = pair.next_seq;
        return;
    }
    rte_mbuf* burst[kBurst];
    uint16_t first = 0, count = 0;  // burst[first, count) is not sent yet
    uint64_t seq = pair.next_seq, sent = 0;
    WindowClock clock;
    while (clock.step(run.phase, sent) != kStop) {
        if (first == count) {
            if (rte_pktmbuf_alloc_bulk(pair.tx_pool(), burst, kBurst) != 0) continue;  // all in the ring: retry
            for (rte_mbuf* m : burst) {
                auto* w = reinterpret_cast<uint64_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(bytes)));
                w[0] = seq++;
                w[1] = bytes;
                for (int i = 2; i < 8; ++i) w[i] = kPattern;
            }
            first = 0;
            count = kBurst;
        }
        const uint16_t n = rte_eth_tx_burst(pair.tx_port(), 0, burst + first, static_cast<uint16_t>(count - first));
        first = static_cast<uint16_t>(first + n);
        sent += n;
    }
    run.tx = clock.window();
    // The unsent are the last ones numbered: the next run numbers them again.
    run.tx_end_seq = seq - (count - first);
    if (first != count) rte_pktmbuf_free_bulk(burst + first, count - first);
    rte_thread_unregister();
}

void receiver(Run& run, MemifPair& pair, uint32_t bytes) {
    run.rx_error = enter_worker(pair.rx_cpu());
    if (!run.rx_error.empty()) {
        run.rx_end_seq = pair.next_seq;
        return;
    }
    rte_mbuf* burst[kBurst];
    uint64_t expect = pair.next_seq, got = 0, touched = 0;
    WindowClock clock;
    bool quiet = false;
    Clock::time_point quiet_since;
    for (;;) {
        const int phase = clock.step(run.phase, got);
        const uint16_t n = rte_eth_rx_burst(pair.rx_port(), 0, burst, kBurst);
        if (n == 0) {
            // Stopped and drained: the sender is gone and the ring stayed empty.
            if (phase != kStop || !run.sender_gone.load(std::memory_order_acquire)) continue;
            if (!quiet) {
                quiet = true;
                quiet_since = Clock::now();
            } else if (Clock::now() - quiet_since > kDrainQuiet) {
                break;
            }
            continue;
        }
        quiet = false;
        for (uint16_t i = 0; i < n; ++i) {
            const auto* w = rte_pktmbuf_mtod(burst[i], const uint64_t*);
            uint64_t line = 0;
            for (int k = 0; k < 8; ++k) line ^= w[k];
            touched += line;
            if (run.rx_error.empty() && (w[0] != expect || burst[i]->pkt_len != bytes || w[1] != bytes))
                run.rx_error = "packet " + std::to_string(got + i) + " of this run: sequence " + std::to_string(w[0]) +
                               " (expected " + std::to_string(expect) + "), " + std::to_string(burst[i]->pkt_len) +
                               " bytes (expected " + std::to_string(bytes) + ")";
            expect = w[0] + 1;
        }
        rte_pktmbuf_free_bulk(burst, n);
        got += n;
        run.received.store(got, std::memory_order_relaxed);
    }
    benchmark::DoNotOptimize(touched);
    run.rx = clock.window();
    run.rx_end_seq = expect;
    rte_thread_unregister();
}

void BM_MemifCopy(benchmark::State& state) {
    const auto bytes = static_cast<uint32_t>(state.range(0));
    std::string error;
    MemifPair* pair = MemifPair::get(buffer_bytes_for(bytes), &error);
    if (pair == nullptr) {
        state.SkipWithError(error.c_str());
        return;
    }
    Run run;
    std::thread rx([&] { receiver(run, *pair, bytes); });
    std::thread tx([&] { sender(run, *pair, bytes); });

    const auto give_up = Clock::now() + kFirstPacketTimeout;
    while (run.received.load(std::memory_order_relaxed) == 0 && Clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const bool flowing = run.received.load(std::memory_order_relaxed) != 0;
    if (flowing) std::this_thread::sleep_for(kWarmUp);

    run.phase.store(kMeasured, std::memory_order_relaxed);
    const auto t0 = Clock::now();
    const uint64_t r0 = run.received.load(std::memory_order_relaxed);
    if (flowing)
        for (auto _ : state) std::this_thread::sleep_for(kSlice);
    const uint64_t r1 = run.received.load(std::memory_order_relaxed);
    const auto t1 = Clock::now();
    run.phase.store(kStop, std::memory_order_relaxed);
    tx.join();
    run.sender_gone.store(true, std::memory_order_release);
    rx.join();

    // The next run numbers from where the sender stopped; a receiver that
    // ended elsewhere lost packets (or left some in the ring).
    pair->next_seq = run.tx_end_seq;
    if (error.empty()) error = run.tx_error;
    if (error.empty()) error = run.rx_error;
    if (error.empty() && !flowing)
        error = "no packet reached the memif client within 2 s of starting the sender";
    if (error.empty() && run.rx_end_seq != run.tx_end_seq)
        error = "the receiver ended at sequence " + std::to_string(run.rx_end_seq) + ", the sender at " +
                std::to_string(run.tx_end_seq);
    if (!error.empty()) {
        state.SkipWithError(error.c_str());
        pair->next_seq = run.rx_end_seq;  // resynchronised: whatever was in flight is gone
        return;
    }
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    const double received = static_cast<double>(r1 - r0);
    const auto per = [](const Window& w) {
        return w.packets == 0 ? 0.0 : static_cast<double>(w.cpu_ns) / static_cast<double>(w.packets);
    };
    state.counters["packets_per_s"] = seconds > 0 ? received / seconds : 0;
    state.counters["gbit_per_s"] = seconds > 0 ? received * bytes * 8 / seconds / 1e9 : 0;
    state.counters["host_cpu_ns"] = per(run.tx);
    state.counters["guest_cpu_ns"] = per(run.rx);
    state.counters["slot_bytes"] = pair->buffer_bytes();
    state.counters["queue_slots"] = kMemifRingSlots;
}

BENCHMARK(BM_MemifCopy)
    ->Name("memif/copy")
    ->ArgName("bytes")
    ->Arg(64)
    ->Arg(1500)
    ->Arg(9000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench
