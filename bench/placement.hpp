// Placement (zero_copy_bench.cpp's guest_rx_own_cores and paired slices): see the class.
#pragma once

#include <dirent.h>
#include <sched.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bench {

// Host and guest on cores of their own for the length of one benchmark:
// every thread of this process (the NIC's, which is this one, and the hub's)
// on the first CPU this process may use, the guest on the second. The same
// machine as guest_rx, but the host's cost decides its side of the pipeline
// and the guest's reading decides the other, instead of the three threads
// taking turns on whatever core is free: what a host whose switching core is
// not its guests' vCPU sees. Put back as it was at the end.
class Placement {
public:
    // The two CPUs, or nullopt (with the reason) when this process may use
    // fewer than two.
    static std::optional<std::pair<int, int>> cpus(std::string* why) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
            *why = std::string("sched_getaffinity: ") + std::strerror(errno);
            return std::nullopt;
        }
        std::vector<int> allowed;
        for (int c = 0; c < CPU_SETSIZE && allowed.size() < 2; ++c)
            if (CPU_ISSET(c, &set)) allowed.push_back(c);
        if (allowed.size() < 2) {
            *why = "skipped: this process may use " + std::to_string(allowed.size()) +
                   " CPU, and the host and the guest need one each";
            return std::nullopt;
        }
        return std::pair{allowed[0], allowed[1]};
    }

    Placement(pid_t guest, int host_cpu, int guest_cpu) : guest_(guest) {
        CPU_ZERO(&host_before_);
        CPU_ZERO(&guest_before_);
        ::sched_getaffinity(0, sizeof(host_before_), &host_before_);
        ::sched_getaffinity(guest_, sizeof(guest_before_), &guest_before_);
        const cpu_set_t guest_set = one(guest_cpu);
        ok_ = pin_threads(one(host_cpu)) && ::sched_setaffinity(guest_, sizeof(guest_set), &guest_set) == 0;
        if (!ok_) error_ = std::string("sched_setaffinity: ") + std::strerror(errno);
    }
    ~Placement() {
        pin_threads(host_before_);
        ::sched_setaffinity(guest_, sizeof(guest_before_), &guest_before_);
    }
    Placement(const Placement&) = delete;
    Placement& operator=(const Placement&) = delete;
    bool ok() const { return ok_; }
    const std::string& error() const { return error_; }

private:
    static cpu_set_t one(int cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return set;
    }
    // Every thread of this process, the hub's included (it exists already).
    static bool pin_threads(const cpu_set_t& set) {
        DIR* d = ::opendir("/proc/self/task");
        if (d == nullptr) return false;
        bool ok = true;
        while (const dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            const pid_t tid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
            ok = ::sched_setaffinity(tid, sizeof(set), &set) == 0 && ok;
        }
        ::closedir(d);
        return ok;
    }

    pid_t guest_;
    cpu_set_t host_before_, guest_before_;
    bool ok_ = false;
    std::string error_;
};

}  // namespace bench
