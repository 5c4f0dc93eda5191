// The suite's entry point: Google Benchmark's, plus the context a figure
// needs to be read (CPU model, ndisshm version, build flags, THP modes, free
// huge pages, DPDK version), a process that is multi-threaded before the
// first figure, and a clean teardown of every runtime the benchmarks kept
// warm (and of DPDK's EAL, if a DPDK benchmark started it).
#include <gnu/libc-version.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"

#ifndef NDISSHM_BENCH_BUILD
#define NDISSHM_BENCH_BUILD "unknown"
#endif

namespace bench {

namespace {
std::vector<std::function<void()>>& drops() {
    static std::vector<std::function<void()>> v;
    return v;
}
std::vector<std::function<void()>>& bed_drops() {
    static std::vector<std::function<void()>> v;
    return v;
}

std::string first_line_of(const char* path, const std::string& prefix) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(prefix, 0) != 0) continue;
        const size_t colon = line.find(':');
        return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
    return "unknown";
}
}  // namespace

void register_drop(std::function<void()> drop) { drops().push_back(std::move(drop)); }
void register_bed_drop(std::function<void()> drop) { bed_drops().push_back(std::move(drop)); }

void drop_shared_beds() {
    for (auto& d : bed_drops()) d();
}

void drop_shared_state() {
    drop_shared_beds();  // first: their blocks go back before the EAL or a guest rig goes
    for (auto& d : drops()) d();
}

}  // namespace bench

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("cpu_model", bench::first_line_of("/proc/cpuinfo", "model name"));
    benchmark::AddCustomContext("ndisshm_version", ndisshm_version());
    benchmark::AddCustomContext("ndisshm_build", NDISSHM_BENCH_BUILD);
    benchmark::AddCustomContext("glibc", gnu_get_libc_version());
#ifdef NDISSHM_BENCH_DPDK
    benchmark::AddCustomContext("dpdk", NDISSHM_BENCH_DPDK);
#else
    benchmark::AddCustomContext("dpdk", "not built (pkg-config libdpdk not found)");
#endif
    std::string thp;
    std::getline(std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"), thp);
    benchmark::AddCustomContext("transparent_hugepage", thp.empty() ? "unknown" : thp);
    // What a memfd (ndisshm's arenas) gets from MADV_HUGEPAGE, and whether
    // MFD_HUGETLB has pages to give.
    std::string shmem_thp;
    std::getline(std::ifstream("/sys/kernel/mm/transparent_hugepage/shmem_enabled"), shmem_thp);
    benchmark::AddCustomContext("transparent_hugepage_shmem", shmem_thp.empty() ? "unknown" : shmem_thp);
    benchmark::AddCustomContext("hugepages_free", bench::first_line_of("/proc/meminfo", "HugePages_Free"));
    // The environment the runtimes' defaults come from (ndisshm_runtime_config_init).
    for (const char* name : {"NDISSHM_PAGES", "NDISSHM_ZERO_AHEAD"}) {
        const char* v = std::getenv(name);
        benchmark::AddCustomContext(name, v != nullptr ? v : "(unset)");
    }
    // glibc takes and releases a pthread mutex without a locked instruction
    // for as long as the process has never created a thread
    // (__libc_single_threaded), and with one ever after. ndisshm runs in
    // multi-threaded processes, and the first 2-thread benchmark would flip
    // the switch halfway through the suite (measured: a 1-thread routing pair
    // 92 ns before, 136 ns after), so every figure is taken after it.
    // NDISSHM_BENCH_SINGLE_THREADED=1 skips it, to see the difference (run
    // only threads:1 benchmarks then, or the switch flips anyway).
    const char* single = std::getenv("NDISSHM_BENCH_SINGLE_THREADED");
    if (single != nullptr && std::string(single) == "1") {
        benchmark::AddCustomContext("process", "single-threaded until a threads:2 benchmark runs");
    } else {
        std::thread([] {}).join();
        benchmark::AddCustomContext("process", "multi-threaded from the start (a thread is created and joined first)");
    }
    benchmark::RunSpecifiedBenchmarks();
    bench::drop_shared_state();
    benchmark::Shutdown();
    return 0;
}
