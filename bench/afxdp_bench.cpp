// Packets/s into a guest's memory from a real NIC path: AF_XDP (copy mode on
// a veth, the UMEM an NDIS block carved from the guest's memory by the guest
// provider) against a plain AF_PACKET socket whose frames are then copied
// into a block of the same guest's memory. Issue 7, item 5.
//
// The same traffic into both, in one run: one veth pair between two network
// namespaces of this process's own (os::VethLinks), one UDP sender thread on
// its transmit end, datagrams of state.range(0) bytes of payload. The
// receiving end has no IPv4 address, so a frame that reaches the stack (the
// AF_PACKET path: its tap sits before IP) is dropped there at once rather
// than answered with ICMP, as on a switch port; AF_XDP's redirect comes first
// and the stack never sees the frame.
//
// Closed loop, as the demo is: the sender keeps at most kWindow datagrams
// ahead of what the receiver has taken, so neither path drops (both report
// the kernel's drop counters, which must stay 0) and each figure is what the
// pipeline (sender, kernel, receiver) sustains through that path. The
// benchmark thread is the receiver: AF_XDP takes descriptors off the rx ring
// and puts the frames back on the fill ring (the kernel already wrote the
// packet into guest memory); AF_PACKET takes frames with recvmmsg into host
// buffers and copies each into the next slot of the guest's block. Neither
// reads the payload afterwards: the guest's reading is the same either way.
//
// Not root, no namespaces or no AF_XDP: every benchmark is skipped with the
// reason ("skipped: ..." in the JSON).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nic/provider_ops.hpp"
#include "os/netns.hpp"
#include "os/packet_socket.hpp"
#include "os/xdp_socket.hpp"
#include "providers/guest_provider.hpp"

namespace {

using namespace ndisshm;

constexpr uint32_t kFrames = 2048;      // UMEM frames; as many slots in the copy path's block
constexpr uint32_t kFrameBytes = 2048;  // 256 headroom + a 1514-byte frame fit
constexpr uint64_t kWindow = 256;       // datagrams ahead of the receiver (the veth's ring holds 256)
constexpr uint32_t kBatch = 64;         // descriptors or frames per receive call
constexpr uint32_t kGuest = 1;
constexpr NDIS_RECEIVE_QUEUE_ID kXdpQueue = 1, kCopyQueue = 2;
constexpr uint16_t kPort = 50000;

// One NDIS Receive block of a queue assigned to the guest: carved from its memory.
struct Block {
    NDIS_HANDLE handle = nullptr;
    std::byte* va = nullptr;
    uint64_t bytes = 0;
};

// Everything both benchmarks share, made once (namespaces and veths take
// tens of milliseconds) and removed at exit.
struct Rig {
    std::string skip;  // why the benchmarks cannot run here; "" when they can
    ndisshm_runtime* rt = nullptr;
    NDIS_HANDLE adapter = nullptr, binding = nullptr;
    std::unique_ptr<providers::GuestProvider> provider;
    std::unique_ptr<os::VethLinks> links;
    std::unique_ptr<os::UdpSender> tx;
    std::map<NDIS_RECEIVE_QUEUE_ID, Block> blocks;

    Rig() {
        skip = os::netns_unavailable_reason();
        if (skip.empty()) skip = os::xdp_unavailable_reason();
        if (skip.empty()) skip = build();
    }
    ~Rig() {
        for (auto& [q, b] : blocks) {
            NdisFreeSharedMemory(adapter, b.handle);
            ndisshm_queue_free(adapter, q);
        }
        if (binding != nullptr) ndisshm_binding_destroy(binding);
        if (adapter != nullptr) ndisshm_adapter_destroy(adapter);
        if (rt != nullptr) ndisshm_runtime_destroy(rt);
        tx.reset();
        links.reset();
    }

    std::string build() {
        os::VethLinks::sweep_stale();
        auto l = os::VethLinks::create("bx", 1);
        if (!l) return l.error().message();
        links = std::move(*l);
        const os::VethEnd& rx = links->rx(0);
        const std::string ns = links->rx_netns().substr(links->rx_netns().rfind('/') + 1);
        if (auto s = os::run_ip({"-n", ns, "addr", "flush", "dev", rx.ifname}); !s)
            return s.error().message();
        auto t = os::UdpSender::open(links->tx_netns(), rx.address, kPort);
        if (!t) return t.error().message();
        tx = std::move(*t);

        ndisshm_runtime_config rc;
        ndisshm_runtime_config_init(&rc);
        rc.report_to_stderr = 1;
        if (ndisshm_runtime_create(&rc, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS) return "ndisshm_runtime_create failed";
        if (ndisshm_adapter_create(rt, "xdp0", &adapter) != NDIS_STATUS_SUCCESS)
            return "ndisshm_adapter_create failed";
        auto p = providers::GuestProvider::create({});
        if (!p) return p.error().message();
        provider = std::move(*p);
        if (ndisshm_binding_create(adapter, "vswitch", &binding) != NDIS_STATUS_SUCCESS)
            return "ndisshm_binding_create failed";
        const ndisshm_provider_ops ops = nic::provider_ops(*provider);
        if (ndisshm_binding_register_provider(binding, &ops) != NDIS_STATUS_SUCCESS)
            return "ndisshm_binding_register_provider failed";
        // The guest's memory, as a guest process makes it: a memfd, sealed
        // against shrinking.
        const uint64_t bytes = 4 * uint64_t{kFrames} * kFrameBytes;
        const int fd = ::memfd_create("afxdp-bench-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
            ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0)
            return std::string("guest memfd: ") + std::strerror(errno);
        auto m = providers::GuestMemory::adopt(os::UniqueFd(fd), bytes, 0x100000000ull, {}, "bench-guest");
        if (!m) return m.error().message();
        if (auto s = provider->add_guest(kGuest, *m); !s) return s.error().message();
        for (NDIS_RECEIVE_QUEUE_ID q : {kXdpQueue, kCopyQueue})
            if (std::string why = allocate(q); !why.empty()) return why;
        return "";
    }

    std::string allocate(NDIS_RECEIVE_QUEUE_ID q) {
        if (ndisshm_queue_allocate(adapter, q, nullptr) != NDIS_STATUS_SUCCESS)
            return "ndisshm_queue_allocate failed";
        if (auto s = provider->assign_queue(q, kGuest); !s) return s.error().message();
        if (ndisshm_queue_allocation_complete(adapter, q) != NDIS_STATUS_SUCCESS)
            return "ndisshm_queue_allocation_complete failed";
        NDIS_SHARED_MEMORY_PARAMETERS p;
        NdisZeroMemory(&p, sizeof(p));
        p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.QueueId = q;
        p.PreferredNode = MM_ANY_NODE_OK;
        p.Usage = NdisSharedMemoryUsageReceive;
        p.Length = kFrames * kFrameBytes;
        std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(4));
        p.SGListBuffer = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
        p.SGListBuffer->NumberOfElements = 4;
        p.SGListBufferLength = static_cast<ULONG>(sg.size());
        Block b;
        if (NdisAllocateSharedMemory(adapter, &p, &b.handle) != NDIS_STATUS_SUCCESS)
            return "NdisAllocateSharedMemory for queue " + std::to_string(q) + " failed";
        b.va = static_cast<std::byte*>(p.VirtualAddress);
        b.bytes = p.Length;
        blocks[q] = b;
        return "";
    }
};

Rig& rig() {
    static Rig r;
    return r;
}

// The traffic: datagrams of `size` bytes, sent while fewer than kWindow are
// ahead of what the receiver counted in `taken`.
class Sender {
public:
    Sender(os::UdpSender& tx, uint32_t size, const std::atomic<uint64_t>& taken)
        : payload_(size, std::byte{0x5a}), thread_([this, &tx, &taken] { run(tx, taken); }) {}
    ~Sender() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    uint64_t sent() const { return sent_.load(); }
    // sendmmsg calls refused (ENOBUFS, EAGAIN) for a full veth queue: the
    // receive side fell behind the wire, not the window.
    uint64_t refused() const { return refused_.load(); }
    const std::string& error() const { return error_; }

private:
    void run(os::UdpSender& tx, const std::atomic<uint64_t>& taken) {
        std::vector<std::span<const std::byte>> batch(32, std::span<const std::byte>(payload_));
        while (!stop_.load(std::memory_order_relaxed)) {
            const uint64_t ahead =
                sent_.load(std::memory_order_relaxed) - taken.load(std::memory_order_acquire);
            if (ahead + batch.size() > kWindow) {
                // Not a spin: on a small machine it would take the core the
                // receiver needs. 256 packets are hundreds of microseconds of work.
                std::this_thread::sleep_for(std::chrono::microseconds(10));
                continue;
            }
            auto n = tx.send_batch(batch);
            if (n) {
                sent_.fetch_add(*n, std::memory_order_release);
            } else if (n.error().err == ENOBUFS || n.error().err == EAGAIN) {
                refused_.fetch_add(1, std::memory_order_relaxed);
                std::this_thread::yield();  // the veth's queue is full: again
            } else {
                error_ = n.error().message();
                return;
            }
        }
    }
    std::vector<std::byte> payload_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> sent_{0}, refused_{0};
    std::string error_;
    std::thread thread_;  // last: it uses the members above
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The console output, plus each reported run's packets/s by benchmark name
// (Google Benchmark also calls a benchmark to size its iteration count; those
// calls are not reported, so they are not counted here), or the median
// aggregate where only aggregates are reported.
class Summary : public benchmark::ConsoleReporter {
public:
    Summary() : ConsoleReporter(::isatty(STDOUT_FILENO) != 0 ? OO_Defaults : OO_Tabular) {}
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.error_occurred) continue;
            const std::string name = r.run_name.function_name + "/" + r.run_name.args;
            for (const auto& [counter, value] : r.counters) {
                if (r.run_type == Run::RT_Iteration) all[{name, counter}].push_back(value.value);
                if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median")
                    medians[{name, counter}] = {value.value, static_cast<size_t>(r.repetitions)};
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
    // A counter's median over the runs of one benchmark, and how many runs it is of.
    std::pair<double, size_t> median_of(const std::string& name, const std::string& counter) const {
        if (const auto agg = medians.find({name, counter}); agg != medians.end()) return agg->second;
        const auto runs = all.find({name, counter});
        if (runs == all.end()) return {0, 0};
        return {median(runs->second), runs->second.size()};
    }

private:
    using Key = std::pair<std::string, std::string>;  // benchmark, counter
    std::map<Key, std::vector<double>> all;
    std::map<Key, std::pair<double, size_t>> medians;
};

// What the timed loop took: packets and frame bytes, and its wall time.
struct Loop {
    uint64_t packets = 0, frame_bytes = 0;
    double seconds = 0;
    double receiver_cpu_seconds = 0;  // the benchmark thread's: what receiving costs the host
};

double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Counters of one run. pps is the loop's own (packets taken while timed over
// its wall time); what the drain after it takes counts only towards `lost`.
// Returns pps.
double report(benchmark::State& state, const Loop& loop, uint64_t lost, uint64_t drops, uint64_t refused) {
    const double pps = loop.seconds > 0 ? static_cast<double>(loop.packets) / loop.seconds : 0;
    // Frame bytes include 42 bytes of Ethernet, IPv4 and UDP headers per packet.
    const double payload = static_cast<double>(loop.frame_bytes - loop.packets * 42);
    state.counters["pps"] = pps;
    state.counters["payload_gbit_s"] = loop.seconds > 0 ? payload * 8 / loop.seconds / 1e9 : 0;
    state.counters["lost"] = static_cast<double>(lost);           // sent, never received
    state.counters["kernel_drops"] = static_cast<double>(drops);  // the socket's own counters
    state.counters["sends_refused"] = static_cast<double>(refused);
    state.counters["receiver_cpu_ns_per_packet"] =
        loop.packets != 0 ? loop.receiver_cpu_seconds * 1e9 / static_cast<double>(loop.packets) : 0;
    state.SetItemsProcessed(static_cast<int64_t>(loop.packets));
    return pps;
}

// Runs the timed loop, calling take(100) each iteration.
template <class Take>
Loop timed(benchmark::State& state, Take&& take, const std::atomic<uint64_t>& taken, const uint64_t& bytes,
           const std::string* error = nullptr) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    for (auto _ : state) {
        take(100);
        if (error != nullptr && !error->empty()) break;
    }
    Loop l;
    l.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    l.receiver_cpu_seconds = thread_cpu_seconds() - cpu_start;
    l.packets = taken.load();
    l.frame_bytes = bytes;
    return l;
}

void BM_afxdp_into_guest(benchmark::State& state) {
    Rig& r = rig();
    if (!r.skip.empty()) return state.SkipWithError(("skipped: " + r.skip).c_str());
    const auto size = static_cast<uint32_t>(state.range(0));
    const Block& umem = r.blocks.at(kXdpQueue);
    os::XdpSocketConfig c;
    c.ifname = r.links->rx(0).ifname;
    c.netns = r.links->rx(0).netns;
    c.frame_bytes = kFrameBytes;
    c.ring_size = kFrames;
    c.copy_mode = true;
    auto xsk = os::XdpSocket::open(umem.va, umem.bytes, c);
    if (!xsk) return state.SkipWithError(xsk.error().message().c_str());
    std::vector<uint64_t> frames(kFrames);
    for (uint32_t i = 0; i < kFrames; ++i) frames[i] = uint64_t{i} * kFrameBytes;
    (*xsk)->fill(frames);

    std::atomic<uint64_t> taken{0};
    uint64_t bytes = 0;
    os::XdpPacket rx[kBatch];
    uint64_t back[kBatch];
    auto take = [&](int timeout_ms) {
        const size_t n = (*xsk)->receive(rx);
        if (n == 0) {
            pollfd p{(*xsk)->fd(), POLLIN, 0};
            ::poll(&p, 1, timeout_ms);
            return;
        }
        for (size_t i = 0; i < n; ++i) {
            back[i] = rx[i].addr - rx[i].addr % kFrameBytes;  // the frame's start, for the fill ring
            bytes += rx[i].length;
        }
        (*xsk)->fill({back, n});
        taken.fetch_add(n, std::memory_order_release);
    };
    Sender tx(*r.tx, size, taken);
    const Loop loop = timed(state, take, taken, bytes);
    tx.stop();
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (taken.load() < tx.sent() && std::chrono::steady_clock::now() < until) take(10);
    if (!tx.error().empty()) state.SkipWithError(tx.error().c_str());
    auto k = (*xsk)->stats();
    const uint64_t drops =
        k ? k->rx_dropped + k->rx_ring_full + k->fill_ring_empty + k->rx_invalid : ~uint64_t{0};
    (*xsk)->close();
    report(state, loop, tx.sent() - taken.load(), drops, tx.refused());
}

void BM_afpacket_copy_into_guest(benchmark::State& state) {
    Rig& r = rig();
    if (!r.skip.empty()) return state.SkipWithError(("skipped: " + r.skip).c_str());
    const auto size = static_cast<uint32_t>(state.range(0));
    const Block& dest = r.blocks.at(kCopyQueue);
    auto sock = os::PacketSocket::open({r.links->rx(0).ifname, r.links->rx(0).netns});
    if (!sock) return state.SkipWithError(sock.error().message().c_str());

    std::vector<std::byte> host(size_t{kBatch} * kFrameBytes);  // the socket's user buffers
    std::vector<std::span<std::byte>> buffers;
    for (uint32_t i = 0; i < kBatch; ++i)
        buffers.emplace_back(host.data() + size_t{i} * kFrameBytes, kFrameBytes);
    uint32_t lengths[kBatch];
    std::atomic<uint64_t> taken{0};
    uint64_t bytes = 0, slot = 0;
    std::string error;
    auto take = [&](int timeout_ms) {
        auto n = (*sock)->receive(buffers, lengths, timeout_ms);
        if (!n) {
            error = n.error().message();
            return;
        }
        for (size_t i = 0; i < *n; ++i) {
            std::memcpy(dest.va + slot * kFrameBytes, buffers[i].data(), lengths[i]);  // into the guest
            slot = (slot + 1) % kFrames;
            bytes += lengths[i];
        }
        benchmark::ClobberMemory();
        taken.fetch_add(*n, std::memory_order_release);
    };
    Sender tx(*r.tx, size, taken);
    const Loop loop = timed(state, take, taken, bytes, &error);
    tx.stop();
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (error.empty() && taken.load() < tx.sent() && std::chrono::steady_clock::now() < until) take(10);
    if (!error.empty()) return state.SkipWithError(error.c_str());
    if (!tx.error().empty()) return state.SkipWithError(tx.error().c_str());
    auto k = (*sock)->stats();
    report(state, loop, tx.sent() - taken.load(), k ? k->drops : ~uint64_t{0}, tx.refused());
}

// Payload sizes: the smallest Ethernet frame's (18 bytes of payload pad a
// frame to 60) is not used: 64 bytes is the usual small-packet figure, 1472
// fills a 1500-byte MTU.
BENCHMARK(BM_afxdp_into_guest)
    ->Arg(64)
    ->Arg(1472)
    ->UseRealTime()
    ->MinTime(1.0)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_afpacket_copy_into_guest)
    ->Arg(64)
    ->Arg(1472)
    ->UseRealTime()
    ->MinTime(1.0)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    utsname u{};
    ::uname(&u);
    benchmark::AddCustomContext("kernel", std::string(u.sysname) + " " + u.release);
    benchmark::AddCustomContext("ndisshm_version", ndisshm_version());
#ifdef NDISSHM_BENCH_BUILD
    benchmark::AddCustomContext("ndisshm_build", NDISSHM_BENCH_BUILD);
#endif
    benchmark::AddCustomContext("afxdp_rig",
                                rig().skip.empty() ? "veth pair, copy mode" : "skipped: " + rig().skip);
    Summary summary;
    benchmark::RunSpecifiedBenchmarks(&summary);
    benchmark::Shutdown();
    // The comparison: medians over the repetitions of this run (they may be
    // interleaved, so a ratio per repetition would pair runs at random).
    for (const char* size : {"64", "1472"}) {
        const std::string xdp = std::string("BM_afxdp_into_guest/") + size;
        const std::string packet = std::string("BM_afpacket_copy_into_guest/") + size;
        const auto [xp, xn] = summary.median_of(xdp, "pps");
        const auto [pp, pn] = summary.median_of(packet, "pps");
        const double xc = summary.median_of(xdp, "receiver_cpu_ns_per_packet").first;
        const double pc = summary.median_of(packet, "receiver_cpu_ns_per_packet").first;
        if (xp == 0 || pp == 0 || xc == 0) continue;
        std::fprintf(
            stderr,
            "payload %4s B (medians of %zu and %zu runs): AF_XDP %.0f pps, %.0f ns receiver CPU per packet; "
            "AF_PACKET + copy %.0f pps, %.0f ns; AF_XDP/AF_PACKET %.2fx the packets/s, AF_PACKET costs "
            "the receiver %.2fx the CPU per packet\n",
            size, xn, pn, xp, xc, pp, pc, xp / pp, pc / xc);
    }
    return 0;
}
