// fault.hpp's counters. Kept behind one mutex: only armed (test) runs come
// here, and there exactness matters more than speed.
#include "os/fault.hpp"

#include <algorithm>
#include <map>
#include <mutex>

namespace ndisshm::os::fault {
namespace {

struct State {
    std::mutex mu;
    std::map<std::string, uint64_t, std::less<>> calls;     // by operation, since arming
    std::map<std::string, uint64_t, std::less<>> injected;  // by operation, since arming
    std::string armed;  // empty: count only
    uint64_t first = 0, last = 0;  // the armed operation's calls [first, last] fail
    int err = 0;
};

State& state() {
    static State s;
    return s;
}

}  // namespace

namespace detail {
std::atomic<bool> active{false};

int hit(const char* operation) {
    State& s = state();
    std::lock_guard lock(s.mu);
    const uint64_t n = ++s.calls[operation];
    if (s.armed.empty() || s.armed != operation || n < s.first || n > s.last) return 0;
    ++s.injected[operation];
    return s.err;
}
}  // namespace detail

const std::vector<std::string>& operations() {
    // Every name a wrapped call site passes to check(): os.cpp, unix_socket.cpp, fd_checks.cpp, pagemap.cpp.
    static const std::vector<std::string> names = {
        "memfd_create", "mmap",   "ftruncate", "fallocate", "madvise", "mbind",   "fcntl",  "fstat",
        "socket",       "bind",   "listen",    "accept4",   "connect", "socketpair", "sendmsg", "recvmsg",
        "poll",         "eventfd", "open",     "pread",     "mlock",   "munlock"};
    return names;
}

bool arm(std::string_view operation, uint64_t nth_call, int err, uint64_t times) {
    const auto& known = operations();
    if (std::find(known.begin(), known.end(), operation) == known.end()) return false;
    State& s = state();
    std::lock_guard lock(s.mu);
    s.calls.clear();
    s.injected.clear();
    s.armed = nth_call == 0 || times == 0 ? std::string() : std::string(operation);
    s.first = nth_call;
    s.last = times > UINT64_MAX - nth_call ? UINT64_MAX : nth_call + times - 1;
    s.err = err;
    detail::active.store(true, std::memory_order_relaxed);
    return true;
}

void count_only() {
    State& s = state();
    std::lock_guard lock(s.mu);
    s.calls.clear();
    s.injected.clear();
    s.armed.clear();
    detail::active.store(true, std::memory_order_relaxed);
}

void disarm() {
    State& s = state();
    std::lock_guard lock(s.mu);
    s.armed.clear();
    detail::active.store(false, std::memory_order_relaxed);
}

uint64_t calls(std::string_view operation) {
    State& s = state();
    std::lock_guard lock(s.mu);
    auto it = s.calls.find(operation);
    return it == s.calls.end() ? 0 : it->second;
}

uint64_t injected(std::string_view operation) {
    State& s = state();
    std::lock_guard lock(s.mu);
    uint64_t total = 0;
    for (const auto& [op, n] : s.injected)
        if (operation.empty() || op == operation) total += n;
    return total;
}

}  // namespace ndisshm::os::fault
