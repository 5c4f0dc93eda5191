// The one DPDK EAL of the benchmark process, shared by dpdk_bench.cpp and
// memif_bench.cpp: rte_eal_init may run once per process, so whichever DPDK
// benchmark runs first starts it, and a filter that selects none never does.
#pragma once

#include <functional>
#include <string>

namespace bench::dpdk {

struct Eal {
    bool ok = false;
    std::string error;    // "skipped: ..." when !ok: the machine cannot start an EAL
    int main_cpu = 0;     // the two CPUs on the EAL's -l list: the first two this
    int second_cpu = -1;  // process may use (second_cpu -1 when it has one)
};

// Starts the EAL on the first call, from the thread that runs the suite, with
//   --no-huge --no-pci -m 1024 --no-shconf --no-telemetry -l A,B --log-level=*:error
// and puts that thread's CPU affinity back afterwards (rte_eal_init pins it to
// lcore A). Later calls return the same result; a failed start is not retried.
const Eal& eal();

// Runs `close` when the run is over, before rte_eal_cleanup: for what lives in
// the EAL's memory or its devices (ports, mempools). Last registered, first run.
void before_cleanup(std::function<void()> close);

}  // namespace bench::dpdk
