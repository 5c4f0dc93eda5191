// Helpers shared by the pagemap and address-mode tests: what the kernel counts as locked, whether real
// frame numbers can be read here (and why not), and giving up CAP_SYS_ADMIN in a forked child.
#pragma once

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "common/memory_support.hpp"  // HugePageReservation
#include "os/pagemap.hpp"

namespace ndisshm::test {

// A "Key:  value" line of a /proc file, as a number (kB for the memory ones); 0 when absent.
inline uint64_t proc_value(const char* file, const std::string& key) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1));
    return 0;
}

// VmLck of this process, in KiB.
inline uint64_t vm_lck_kib() {
    return proc_value("/proc/self/status", "VmLck");
}

// Why real frame numbers cannot be read here, or "" when they can.
inline std::string why_no_frames() {
    if (::geteuid() != 0) return "not root (euid " + std::to_string(::geteuid()) + "): PFNs are hidden";
    auto s = os::check_physical_frames_readable();
    return s ? "" : "root, but PFNs unreadable: " + s.error().message();
}

#define NDISSHM_SKIP_WITHOUT_FRAMES()                                                                       \
    do {                                                                                                    \
        if (std::string why = ::ndisshm::test::why_no_frames(); !why.empty()) GTEST_SKIP() << why; \
    } while (0)

inline uint64_t meminfo_kib(const std::string& key) {
    return proc_value("/proc/meminfo", key);
}

// Drops CAP_SYS_ADMIN from this process's effective set; meant for a forked child.
inline bool drop_cap_sys_admin() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
    return ::syscall(SYS_capset, &header, data) == 0;
}

}  // namespace ndisshm::test
