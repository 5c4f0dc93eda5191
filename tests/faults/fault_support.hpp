// Shared by the fault injection tests: the errnos injected, what a process
// must look like after a scenario (no fd, no mapping left), and a tally of
// faults injected per operation for the figures in docs/reliability.md.
//
// Each test runs a scenario once to count the calls of every operation
// (os::fault::count_only), then again for each call of each operation and
// each errno in turn, with that one call failing (os::fault::arm).
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "os/fault.hpp"
#include "os/unix_socket.hpp"

namespace ndisshm::test {

namespace fault = ndisshm::os::fault;

// Every scenario gets these; EPIPE only where a peer can be gone (sends).
inline const std::vector<int> kMemoryErrnos = {ENOMEM, EINTR, EAGAIN};
inline const std::vector<int> kSocketErrnos = {ENOMEM, EINTR, EAGAIN, EPIPE};

inline const char* errno_name(int e) {
    switch (e) {
        case ENOMEM: return "ENOMEM";
        case EINTR: return "EINTR";
        case EAGAIN: return "EAGAIN";
        case EPIPE: return "EPIPE";
        default: return "errno";
    }
}

// Operations whose every wrapped call retries EINTR (the kernel may interrupt
// them; asking again is the answer), so an injected EINTR must change nothing.
inline bool retries_eintr(const std::string& op) {
    static const std::vector<std::string> ops = {"ftruncate", "fallocate", "sendmsg", "recvmsg",
                                                 "poll",      "accept4",   "pread"};
    for (const auto& o : ops)
        if (o == op) return true;
    return false;
}

inline size_t open_fds() {
    auto n = ndisshm::os::open_fd_count();
    return n.ok() ? *n : 0;
}

// Lines of /proc/self/maps naming `what` (a memfd name): memory still mapped.
inline int mappings_of(const std::string& what) {
    std::ifstream maps("/proc/self/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);)
        if (line.find(what) != std::string::npos) ++n;
    return n;
}

// Faults injected per operation by every test of this process, printed at
// exit: the figures docs/reliability.md records (ctest --verbose shows them).
class Tally {
public:
    static Tally& get() {
        static Tally t;
        return t;
    }
    void add(const std::string& suite, const std::string& op, uint64_t injected, uint64_t runs) {
        std::lock_guard lock(mu_);
        auto& e = by_op_[suite + " " + op];
        e.first += injected;
        e.second += runs;
    }
    ~Tally() {
        if (by_op_.empty()) return;
        std::printf("faults injected (scenario operation: faults, runs):\n");
        for (const auto& [k, v] : by_op_)
            std::printf("  %-28s %6llu %6llu\n", k.c_str(), static_cast<unsigned long long>(v.first),
                        static_cast<unsigned long long>(v.second));
    }

private:
    std::mutex mu_;
    std::map<std::string, std::pair<uint64_t, uint64_t>> by_op_;
};

// Disarms whatever a test armed, whichever way it leaves.
struct Disarm {
    ~Disarm() { fault::disarm(); }
};

}  // namespace ndisshm::test
