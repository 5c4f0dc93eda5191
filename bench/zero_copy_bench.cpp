// Zero-copy receive into a guest process vs. copy receive (issue 4), and the
// machine's memcpy bandwidth measured in the same run.
//
//   guest_rx/zero_copy/bytes:B   the emulated NIC writes each packet into the
//                                guest's queue (its memory): ndisshm_hub_deliver_batch
//   guest_rx/copy/bytes:B        the NIC writes into a host queue (host memory),
//                                the host copies into the guest's queue:
//                                ndisshm_hub_deliver_copy_batch
//   guest_rx_own_cores/...       the same two with the host and the guest on
//                                cores of their own: every thread of this
//                                process (the NIC's, the hub's) on one CPU, the
//                                guest on another, as a virtual machine's vCPU
//                                is not the core its host switches packets on
//   guest_rx_own_cores/zero_vs_copy_paired_rxonly/...
//                                the rxonly pair in slices taken in turns:
//                                the speed-up, robust to the machine's spells
//   guest_rx_nic_alone/...       the same two, timing only the NIC's thread while
//                                the guest is stopped (no lock contended)
//   memcpy/in_l1, memcpy/in_l2   memcpy of half the working set into the other
//   memcpy/beyond_llc            half: 32 KiB, 1 MiB, and twice the last-level
//                                cache as sysconf reports it (256 MiB..2 GiB)
//
// B is 64, 1500 and 9000 bytes. The guest is a separate process
// (zero_copy_guest.cpp, on the public guest library) that reads every byte of
// every packet in place and gives each batch back; zero_copy_rig.hpp says
// what both paths share and how the NIC waits for the guest.
//
// One iteration is one batch of 64 packets (real time, ns per batch). The
// counters of guest_rx are over the timed loop, from our own clock:
//   packets_per_s, gbit_per_s  packets (and their bytes, headers included)
//                              the guest read in place per second: what
//                              arrived, not what was offered
//   host_cpu_ns                CPU of the NIC's thread (this one) per packet
//                              sent: the NIC's write, the hub's books, the
//                              copy, the ring, reaping completions, kicking a
//                              sleeping guest, and waiting on contended locks
//   hub_cpu_ns                 CPU of this process's other threads per packet:
//                              the hub thread (reaping completions when
//                              deliveries pause)
//   guest_cpu_ns               CPU of the guest process per packet read
//   waits_per_batch            offers the hub refused (the guest held a full
//                              ring), each followed by a yield (own cores)
//                              or a 20 us sleep
//   drops_per_batch            packets the hub refused and the NIC offered
//                              again (ring full; refused before any write)
//   host_busy, guest_busy      (own_cores only) the share of its CPU that the
//                              host's threads, and the guest, kept busy: the
//                              side near 1.0 is the one that sets the pace
// On a machine with fewer free cores than busy threads (NIC thread, hub
// thread, guest), throughput follows the sum of the three CPU figures, not
// the NIC thread's alone: bench/README.md reads the figures that way.
//
// After each timed loop the guest must give back everything and have read
// every packet intact and in order, or the benchmark is an error. A guest
// that cannot start is an error too (never a hang: zero_copy_rig.hpp).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bare_ring.hpp"
#include "bench_support.hpp"
#include "line_round_trip.hpp"
#include "placement.hpp"
#include "zero_copy_rig.hpp"

#ifndef NDISSHM_BENCH_GUEST
#define NDISSHM_BENCH_GUEST "ndisshm_bench_guest"
#endif

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
using zero_copy::GuestStyle;
using zero_copy::kBatch;
using zero_copy::Path;
using zero_copy::Rig;

// NDISSHM_BENCH_GUEST in the environment, for a binary that moved; else the
// one built next to this benchmark.
std::string guest_path() {
    const char* env = std::getenv("NDISSHM_BENCH_GUEST");
    return env != nullptr && env[0] != '\0' ? env : NDISSHM_BENCH_GUEST;
}

// One rig (hub, queues, guest process) per packet size, made by the first
// benchmark of that size and kept to the end of the run, so the repetitions,
// interleaved at random, all start warm and no guest is started twice. A rig
// that failed is forgotten (the next repetition tries afresh); one that could
// not be made is not tried again.
class Rigs {
public:
    Rigs() {
        register_drop([this] {
            rigs_.clear();
            failed_.clear();
        });
    }
    Rig* get(uint32_t bytes, std::string* error, GuestStyle style = {}) {
        const Key key{bytes, style};
        if (auto f = failed_.find(key); f != failed_.end()) {
            *error = f->second;
            return nullptr;
        }
        auto& rig = rigs_[key];
        if (!rig) {
            rig = Rig::make(bytes, guest_path(), style, error);
            // A busy-polling guest spins whenever it runs: it is kept stopped
            // (SIGSTOP) between its benchmarks, or the rigs kept for later
            // would take the CPUs every other benchmark measures on.
            if (rig && style.busy && !rig->stop_guest()) *error = rig->error(), rig.reset();
        }
        if (!rig) failed_[key] = *error;
        return rig.get();
    }
    void forget(uint32_t bytes, GuestStyle style = {}) { rigs_.erase(Key{bytes, style}); }

private:
    using Key = std::pair<uint32_t, GuestStyle>;
    std::map<Key, std::unique_ptr<Rig>> rigs_;
    std::map<Key, std::string> failed_;
};

Rigs& rigs() {
    static Rigs r;
    return r;
}

// After a timed loop of an own-cores or shared benchmark on `rig`: the guest
// must give back everything and have read every packet, or the benchmark is
// an error and the rig is forgotten (false). The rig stops spinning either way.
bool settle(benchmark::State& state, Rig* rig, bool ok, uint32_t bytes, GuestStyle style) {
    std::string error;
    if (ok) ok = rig->drain();
    if (ok) error = rig->check_guest();
    rig->spin(false);
    if (ok && error.empty()) return true;
    state.SkipWithError((ok ? error : rig->error()).c_str());
    rigs().forget(bytes, style);
    return false;
}

// A busy guest is continued for one benchmark only (see Rigs::get): this
// stops it again when the benchmark ends, unless the rig was forgotten
// meanwhile (on = false).
struct Restop {
    Rig* rig;
    bool on;
    Restop(Rig* r, bool busy) : rig(r), on(busy) {}
    Restop(const Restop&) = delete;
    Restop& operator=(const Restop&) = delete;
    ~Restop() {
        if (on) rig->stop_guest();
    }
};

enum class Cores { Shared, OwnCores };
enum class Reads { Verify, RxOnly };

void BM_GuestRx(benchmark::State& state, Path path, Cores cores, Reads reads) {
    const auto bytes = static_cast<uint32_t>(state.range(0));
    std::string error;
    // On cores of its own the guest polls its ring, as a polling driver (and
    // dpdk-testpmd) does; sharing cores, it sleeps in interrupt mode.
    const GuestStyle style{reads == Reads::RxOnly, cores == Cores::OwnCores};
    Rig* rig = rigs().get(bytes, &error, style);
    if (rig == nullptr) {
        state.SkipWithError(("guest set-up: " + error).c_str());
        return;
    }
    // Continued for this benchmark only (see Rigs::get); stopped again below.
    if (style.busy) rig->continue_guest();
    Restop restop{rig, style.busy};
    std::optional<Placement> placement;
    if (cores == Cores::OwnCores) {
        const auto cpus = Placement::cpus(&error);
        if (!cpus) {
            state.SkipWithError(error.c_str());
            return;
        }
        placement.emplace(rig->guest_pid(), cpus->first, cpus->second);
        if (!placement->ok()) {
            state.SkipWithError(placement->error().c_str());
            return;
        }
    }
    // The rig is drained here: the guest holds nothing and the window is empty.
    const uint64_t sent0 = rig->sent(), read0 = rig->guest_packets(), waits0 = rig->stalls();
    const uint64_t dropped0 = rig->dropped();
    const uint64_t guest_cpu0 = zero_copy::process_cpu_ns(rig->guest_pid());
    const uint64_t host_cpu0 = zero_copy::thread_cpu_ns(), process_cpu0 = zero_copy::process_cpu_ns();
    rig->spin(cores == Cores::OwnCores);
    const auto t0 = Clock::now();
    bool ok = true;
    for (auto _ : state) {
        if (!rig->send(path)) {
            ok = false;
            break;
        }
    }
    const auto t1 = Clock::now();
    const uint64_t read = rig->guest_packets() - read0;
    const uint64_t host_cpu = zero_copy::thread_cpu_ns() - host_cpu0;
    const uint64_t process_cpu = zero_copy::process_cpu_ns() - process_cpu0;
    const uint64_t guest_cpu = zero_copy::process_cpu_ns(rig->guest_pid()) - guest_cpu0;
    const uint64_t sent = rig->sent() - sent0, waits = rig->stalls() - waits0,
                   dropped = rig->dropped() - dropped0;
    if (!settle(state, rig, ok, bytes, style)) {
        restop.on = false;  // the rig is gone
        return;
    }
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    const auto per = [](uint64_t ns, uint64_t packets) {
        return packets == 0 ? 0.0 : static_cast<double>(ns) / static_cast<double>(packets);
    };
    state.counters["packets_per_s"] = seconds > 0 ? static_cast<double>(read) / seconds : 0;
    state.counters["gbit_per_s"] = seconds > 0 ? static_cast<double>(read) * bytes * 8 / seconds / 1e9 : 0;
    state.counters["host_cpu_ns"] = per(host_cpu, sent);
    state.counters["hub_cpu_ns"] = per(process_cpu - std::min(process_cpu, host_cpu), sent);
    state.counters["guest_cpu_ns"] = per(guest_cpu, read);
    state.counters["waits_per_batch"] =
        sent == 0 ? 0.0 : static_cast<double>(waits) * kBatch / static_cast<double>(sent);
    state.counters["drops_per_batch"] =
        sent == 0 ? 0.0 : static_cast<double>(dropped) * kBatch / static_cast<double>(sent);
    if (cores == Cores::OwnCores && seconds > 0) {
        state.counters["host_busy"] = static_cast<double>(process_cpu) / 1e9 / seconds;
        state.counters["guest_busy"] = static_cast<double>(guest_cpu) / 1e9 / seconds;
    }
    state.counters["window"] = rig->window();
    state.counters["slot_bytes"] = rig->slot_bytes();
    state.counters["queue_slots"] = rig->slots();
}

// Zero copy against copy (rxonly, own cores) in slices of kPairedBatches
// batches taken in turns on one rig, each slice a few milliseconds, so that a
// machine that changes speed for seconds at a time changes both alike.
// Counters: `zero_over_copy`, the median over the iterations of copy's slice
// time / zero copy's (the zero-copy speed-up); `zero_mpps`, `copy_mpps` and
// `zero_host_cpu_ns`, `copy_host_cpu_ns` (the NIC thread's CPU per packet),
// medians of the slices; `core_round_trip_ns`, the median of the two CPUs'
// cache-line round trips (line_round_trip.hpp), measured with the guest
// stopped before the first iteration and after every kRoundTripEvery-th, the
// figure the others depend on most; `bare_ring_ns`, the median of what a bare
// ring of our shape (bare_ring.hpp: the same work, nothing of ours) costs its
// producer a packet on the same two CPUs, measured alongside, the floor for
// `zero_host_cpu_ns`. The time column is one iteration (both slices; the
// measurements with the guest stopped are not in it).
constexpr int kPairedBatches = 128;
constexpr int kRoundTripEvery = 8;
constexpr uint32_t kRoundTrips = 1000;
constexpr uint32_t kBareBatches = kPairedBatches;  // a slice's worth

void BM_GuestRxPaired(benchmark::State& state) {
    const auto bytes = static_cast<uint32_t>(state.range(0));
    std::string error;
    const GuestStyle style{true, true};  // rxonly, busy: as guest_rx_own_cores/*_rxonly
    Rig* rig = rigs().get(bytes, &error, style);
    if (rig == nullptr) {
        state.SkipWithError(("guest set-up: " + error).c_str());
        return;
    }
    rig->continue_guest();
    Restop restop{rig, true};
    const auto cpus = Placement::cpus(&error);
    if (!cpus) {
        state.SkipWithError(error.c_str());
        return;
    }
    Placement placement(rig->guest_pid(), cpus->first, cpus->second);
    if (!placement.ok()) {
        state.SkipWithError(placement.error().c_str());
        return;
    }
    rig->spin(true);
    // Made after the placement, which pins every thread there is to the host's CPU.
    LineRoundTrip line(cpus->second);
    const auto bare = std::make_unique<BareRing>(cpus->second, rig->slot_bytes());
    error.clear();  // from here: the bare ring's
    std::vector<double> ratio, mpps[2], cpu[2], round_trip, bare_ns;
    bool ok = true;
    // The guest stopped meanwhile: the helpers have its CPU to themselves.
    auto measure_placement = [&] {
        if (!rig->stop_guest()) return false;
        round_trip.push_back(line.measure(kRoundTrips));
        const std::optional<double> floor = bare->measure(bytes, kBareBatches);
        if (floor) bare_ns.push_back(*floor);
        if (!floor) error = "bare ring: a packet lost, repeated or misplaced, or no memory or CPU for it";
        return rig->continue_guest();
    };
    ok = measure_placement();
    for (auto _ : state) {
        if (!ok || !error.empty()) break;
        double ns[2] = {0, 0};
        for (const Path path : {Path::ZeroCopy, Path::Copy}) {
            const size_t k = path == Path::ZeroCopy ? 0 : 1;
            const uint64_t sent0 = rig->sent(), cpu0 = zero_copy::thread_cpu_ns();
            const auto t0 = Clock::now();
            for (int i = 0; i < kPairedBatches && ok; ++i) ok = rig->send(path);
            ns[k] = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
            const auto sent = static_cast<double>(rig->sent() - sent0);
            if (!ok || sent == 0) break;
            mpps[k].push_back(sent / ns[k] * 1e3);
            cpu[k].push_back(static_cast<double>(zero_copy::thread_cpu_ns() - cpu0) / sent);
        }
        if (!ok) break;
        ratio.push_back(ns[1] / ns[0]);
        if (ratio.size() % kRoundTripEvery == 0) {
            state.PauseTiming();
            ok = measure_placement();
            state.ResumeTiming();
        }
    }
    if (!settle(state, rig, ok, bytes, style)) {
        restop.on = false;  // the rig is gone
        return;
    }
    if (!error.empty()) {
        state.SkipWithError(error.c_str());
        return;
    }
    state.counters["zero_over_copy"] = median_of(ratio);
    state.counters["zero_mpps"] = median_of(mpps[0]);
    state.counters["copy_mpps"] = median_of(mpps[1]);
    state.counters["zero_host_cpu_ns"] = median_of(cpu[0]);
    state.counters["copy_host_cpu_ns"] = median_of(cpu[1]);
    state.counters["core_round_trip_ns"] = median_of(round_trip);
    state.counters["bare_ring_ns"] = median_of(bare_ns);
}

// Every guest_rx benchmark: the three packet sizes, real time, ns per batch.
void packet_sizes(benchmark::internal::Benchmark* b) {
    b->ArgName("bytes")->Arg(64)->Arg(1500)->Arg(9000)->UseRealTime()->Unit(benchmark::kNanosecond);
}

BENCHMARK_CAPTURE(BM_GuestRx, zero_copy, Path::ZeroCopy, Cores::Shared, Reads::Verify)
    ->Name("guest_rx/zero_copy")
    ->Apply(packet_sizes);
BENCHMARK_CAPTURE(BM_GuestRx, copy, Path::Copy, Cores::Shared, Reads::Verify)
    ->Name("guest_rx/copy")
    ->Apply(packet_sizes);
BENCHMARK_CAPTURE(BM_GuestRx, zero_copy_own_cores, Path::ZeroCopy, Cores::OwnCores, Reads::Verify)
    ->Name("guest_rx_own_cores/zero_copy")
    ->Apply(packet_sizes);
BENCHMARK_CAPTURE(BM_GuestRx, copy_own_cores, Path::Copy, Cores::OwnCores, Reads::Verify)
    ->Name("guest_rx_own_cores/copy")
    ->Apply(packet_sizes);
// The guest reads each descriptor and the first 64 bytes, as a switch reads
// headers (dpdk-testpmd's rxonly): the path's own cost, beside memif/copy.
BENCHMARK_CAPTURE(BM_GuestRx, zero_copy_rxonly, Path::ZeroCopy, Cores::OwnCores, Reads::RxOnly)
    ->Name("guest_rx_own_cores/zero_copy_rxonly")
    ->Apply(packet_sizes);
BENCHMARK_CAPTURE(BM_GuestRx, copy_rxonly, Path::Copy, Cores::OwnCores, Reads::RxOnly)
    ->Name("guest_rx_own_cores/copy_rxonly")
    ->Apply(packet_sizes);

BENCHMARK(BM_GuestRxPaired)->Name("guest_rx_own_cores/zero_vs_copy_paired_rxonly")->Apply(packet_sizes);

// The NIC thread's cost alone: the guest is stopped (SIGSTOP) while the NIC
// sends up to 16 batches (within the window and the socket's buffer), so no
// completion comes back meanwhile: no hub thread takes the miniport's locks,
// and no other thread of ours wants this CPU. Then, untimed, the guest
// continues, reads and checks everything, and is stopped again. What each
// path costs the host when nothing contends, against guest_rx's figures where
// everything runs at once.
void BM_NicAlone(benchmark::State& state, Path path) {
    const auto bytes = static_cast<uint32_t>(state.range(0));
    std::string error;
    Rig* rig = rigs().get(bytes, &error);
    if (rig == nullptr) {
        state.SkipWithError(("guest set-up: " + error).c_str());
        return;
    }
    const uint32_t per_stop = std::min<uint32_t>(16, rig->window() / kBatch);
    const uint64_t sent0 = rig->sent();
    uint64_t cpu = 0;
    bool ok = rig->stop_guest();
    uint32_t batches = 0;
    uint64_t start = zero_copy::thread_cpu_ns();
    for (auto _ : state) {
        if (!ok || !rig->send(path)) {
            ok = false;
            break;
        }
        if (++batches < per_stop) continue;
        state.PauseTiming();
        cpu += zero_copy::thread_cpu_ns() - start;
        ok = rig->continue_guest() && rig->drain() && rig->stop_guest();
        batches = 0;
        start = zero_copy::thread_cpu_ns();
        state.ResumeTiming();
    }
    cpu += zero_copy::thread_cpu_ns() - start;
    if (ok) ok = rig->continue_guest() && rig->drain();
    if (ok) error = rig->check_guest();
    if (!ok || !error.empty()) {
        state.SkipWithError((ok ? error : rig->error()).c_str());
        rigs().forget(bytes);
        return;
    }
    const uint64_t sent = rig->sent() - sent0;
    state.counters["host_cpu_ns"] = sent == 0 ? 0.0 : static_cast<double>(cpu) / static_cast<double>(sent);
}

BENCHMARK_CAPTURE(BM_NicAlone, zero_copy, Path::ZeroCopy)
    ->Name("guest_rx_nic_alone/zero_copy")
    ->Apply(packet_sizes);
BENCHMARK_CAPTURE(BM_NicAlone, copy, Path::Copy)->Name("guest_rx_nic_alone/copy")->Apply(packet_sizes);

// ---- Interrupt mode: what an idle or lightly loaded pair costs ---------------
//
// guest_rx_interrupt/packets_per_s:R: the guest in interrupt mode (it sleeps
// when its ring is empty: need-wakeup set, an eventfd), reading every byte;
// the NIC delivers R packets per second, paced in batches of 64 (R = 0: no
// traffic at all). One iteration is 100 ms. Counters: the share of one core
// the host process (the NIC's thread and the hub's) and the guest used over
// the run, and the eventfd kicks per second. Targets (the rings issue): idle
// under 1% each, 100 kpps under 10%.
void BM_Interrupt(benchmark::State& state) {
    const auto rate = static_cast<uint64_t>(state.range(0));
    std::string error;
    Rig* rig = rigs().get(64, &error);  // verify, interrupt mode: the shared-cores guest
    if (rig == nullptr) {
        state.SkipWithError(("guest set-up: " + error).c_str());
        return;
    }
    const auto interval = rate == 0 ? std::chrono::nanoseconds(0)
                                    : std::chrono::nanoseconds(uint64_t{kBatch} * 1'000'000'000 / rate);
    const uint64_t host0 = zero_copy::process_cpu_ns(), guest0 = zero_copy::process_cpu_ns(rig->guest_pid());
    const uint64_t read0 = rig->guest_packets(), kicks0 = rig->kicks();
    const auto t0 = Clock::now();
    auto next = t0;
    bool ok = true;
    for (auto _ : state) {
        const auto end = Clock::now() + std::chrono::milliseconds(100);
        if (rate == 0) {
            std::this_thread::sleep_until(end);
            continue;
        }
        while (ok && next < end) {
            std::this_thread::sleep_until(next);
            ok = rig->send(Path::ZeroCopy);
            next += interval;
        }
    }
    const auto t1 = Clock::now();
    const uint64_t host_cpu = zero_copy::process_cpu_ns() - host0;
    const uint64_t guest_cpu = zero_copy::process_cpu_ns(rig->guest_pid()) - guest0;
    const uint64_t read = rig->guest_packets() - read0, kicks = rig->kicks() - kicks0;
    if (ok) ok = rig->drain();
    if (ok) error = rig->check_guest();
    if (!ok || !error.empty()) {
        state.SkipWithError((ok ? error : rig->error()).c_str());
        rigs().forget(64);
        return;
    }
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    state.counters["packets_per_s"] = static_cast<double>(read) / seconds;
    state.counters["host_cpu_share"] = static_cast<double>(host_cpu) / 1e9 / seconds;
    state.counters["guest_cpu_share"] = static_cast<double>(guest_cpu) / 1e9 / seconds;
    state.counters["kicks_per_s"] = static_cast<double>(kicks) / seconds;
}
BENCHMARK(BM_Interrupt)
    ->Name("guest_rx_interrupt")
    ->ArgName("packets_per_s")
    ->Arg(0)
    ->Arg(100'000)
    ->Iterations(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- memcpy: the physical limit, in the same run ----------------------------

enum class Where { L1, L2, BeyondLlc };

size_t working_set_bytes(Where w) {
    switch (w) {
        case Where::L1:
            return 32 * 1024;
        case Where::L2:
            return 1024 * 1024;
        case Where::BeyondLlc:
            break;
    }
    const long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
    const size_t twice = llc > 0 ? 2 * static_cast<size_t>(llc) : 0;
    return std::clamp<size_t>(twice, size_t{256} << 20, size_t{2} << 30);
}

// Source and destination halves of one working set, touched before the timed
// loop; THP advised, so a large copy is not a TLB benchmark. Kept until the
// end of the run: faulting in a gigabyte again for every call Google Benchmark
// makes would cost more than the measurement.
class CopyBuffers {
public:
    explicit CopyBuffers(size_t bytes) : bytes_(bytes) {
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die("memcpy working set: mmap of " + std::to_string(bytes) + " bytes failed");
        ::madvise(p, bytes, MADV_HUGEPAGE);
        base_ = static_cast<unsigned char*>(p);
        std::memset(base_, 0x5a, bytes);
    }
    ~CopyBuffers() { ::munmap(base_, bytes_); }
    CopyBuffers(const CopyBuffers&) = delete;
    CopyBuffers& operator=(const CopyBuffers&) = delete;
    unsigned char* src() { return base_; }
    unsigned char* dst() { return base_ + bytes_ / 2; }
    size_t half() const { return bytes_ / 2; }

private:
    size_t bytes_;
    unsigned char* base_;
};

CopyBuffers& copy_buffers(Where w) {
    static auto* all = [] {
        auto* m = new std::map<Where, std::unique_ptr<CopyBuffers>>;
        register_drop([m] { m->clear(); });
        return m;
    }();
    auto& b = (*all)[w];
    if (!b) b = std::make_unique<CopyBuffers>(working_set_bytes(w));
    return *b;
}

void BM_Memcpy(benchmark::State& state, Where where) {
    CopyBuffers& b = copy_buffers(where);
    const auto t0 = Clock::now();
    for (auto _ : state) {
        std::memcpy(b.dst(), b.src(), b.half());
        benchmark::ClobberMemory();
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double copied = static_cast<double>(b.half()) * static_cast<double>(state.iterations());
    state.SetBytesProcessed(static_cast<int64_t>(copied));
    state.counters["gbit_per_s"] = seconds > 0 ? copied * 8 / seconds / 1e9 : 0;
    state.counters["working_set_bytes"] = static_cast<double>(2 * b.half());
}

BENCHMARK_CAPTURE(BM_Memcpy, in_l1, Where::L1)->Name("memcpy/in_l1")->UseRealTime();
BENCHMARK_CAPTURE(BM_Memcpy, in_l2, Where::L2)->Name("memcpy/in_l2")->UseRealTime();
BENCHMARK_CAPTURE(BM_Memcpy, beyond_llc, Where::BeyondLlc)
    ->Name("memcpy/beyond_llc")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench
