// See dpdk_eal.hpp. --no-huge: no hugetlbfs here, so the EAL's 1 GiB is
// anonymous memory; it implies legacy memory, which --in-memory refuses, hence
// --no-shconf (the EAL still creates /var/run/dpdk/rte/). With --no-shconf the
// EAL's IPC is off, and hot-plugging a vdev (rte_dev_probe) treats that as "no
// secondary process to tell", so memif_bench.cpp can add its ports after init.
#include "dpdk_eal.hpp"

#include <pthread.h>
#include <sched.h>

#include <rte_eal.h>
#include <rte_errno.h>

#include <vector>

#include "bench_support.hpp"

namespace bench::dpdk {
namespace {

std::vector<std::function<void()>>& closers() {
    static std::vector<std::function<void()>> c;
    return c;
}

}  // namespace

void before_cleanup(std::function<void()> close) { closers().push_back(std::move(close)); }

const Eal& eal() {
    static Eal state = [] {
        Eal s;
        cpu_set_t mine;
        CPU_ZERO(&mine);
        if (pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine) != 0) {
            s.error = "skipped: pthread_getaffinity_np failed";
            return s;
        }
        int found = 0;
        for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; ++cpu) {
            if (!CPU_ISSET(cpu, &mine)) continue;
            (found++ == 0 ? s.main_cpu : s.second_cpu) = cpu;
        }
        std::string lcores = std::to_string(s.main_cpu);
        if (s.second_cpu >= 0) lcores += ',' + std::to_string(s.second_cpu);
        std::vector<std::string> args = {"ndisshm_bench", "--no-huge", "--no-pci", "-m", "1024", "--no-shconf",
                                         "--no-telemetry", "-l", lcores, "--log-level=*:error"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc = rte_eal_init(static_cast<int>(args.size()), argv.data());
        // rte_eal_init pinned this thread to the main lcore's CPU; every later
        // figure, and every thread Google Benchmark spawns from it, would run there.
        pthread_setaffinity_np(pthread_self(), sizeof(mine), &mine);
        if (rc < 0) {
            s.error = std::string("skipped: rte_eal_init failed: ") + rte_strerror(rte_errno);
            return s;
        }
        s.ok = true;
        // After the Shared<> beds' drops (drop_shared_state runs those first), so
        // the blocks still outstanding go back before the EAL does; ports and
        // mempools (before_cleanup) go first, newest first.
        register_drop([] {
            auto& c = closers();
            for (auto it = c.rbegin(); it != c.rend(); ++it) (*it)();
            c.clear();
            rte_eal_cleanup();
        });
        return s;
    }();
    return state;
}

}  // namespace bench::dpdk
