// Fault injection: a seam in front of every Linux call ndisshm makes whose
// failure has a meaning, so tests can make the kernel say no.
//
// Why a seam here and not mocks above: everything above os/ runs unchanged, so
// a test sees exactly what a driver, provider or guest would see when the
// kernel refuses memory, a socket or a descriptor, down to the NDIS status and
// the log line. Each wrapped call site asks check(operation) just before the
// call, inside any EINTR retry loop: a fault then goes through the same
// handling as the kernel's own errno would, retries included.
//
// Operations are named after the Linux call ("mmap", "ftruncate", ...), so one
// name covers every site that makes that call (operations() lists them). Arm
// one (the test API below): its nth call from then on, and `times` calls in a
// row, are not made and fail with the armed errno instead. While armed, every
// operation's calls are counted, which is how a test learns how many sites a
// scenario passes through before failing each in turn.
//
// Always compiled in; disarmed (always, outside tests) it costs one relaxed
// atomic load per call. Process-wide and thread-safe; one fault armed at a time.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ndisshm::os::fault {

// Arms `operation`: its nth_call-th call from now (1 = the next) and the
// `times` - 1 after it fail with `err`. nth_call 0 injects nothing and only
// counts. Replaces any earlier arming and zeroes every counter. False, arming
// nothing, for an operation no site wraps (a typo would otherwise inject
// nothing and prove nothing).
bool arm(std::string_view operation, uint64_t nth_call, int err, uint64_t times = 1);
// Counts every operation's calls without injecting anything.
void count_only();
// Back to normal: no injection, no counting (the counters keep their values).
void disarm();

// Calls of `operation` since the last arm/count_only.
uint64_t calls(std::string_view operation);
// Faults injected since the last arm, into `operation` or (empty) any.
uint64_t injected(std::string_view operation = {});
// Every operation name a site uses.
const std::vector<std::string>& operations();

namespace detail {
extern std::atomic<bool> active;
int hit(const char* operation);
}  // namespace detail

// 0: make the call; else the errno it must fail with.
inline int check(const char* operation) {
    if (!detail::active.load(std::memory_order_relaxed)) [[likely]] return 0;
    return detail::hit(operation);
}

// `f()` (the Linux call), or `failed` with errno set when a fault is due: the
// caller's error path cannot tell the two apart.
template <class R, class F>
R call(const char* operation, R failed, F&& f) {
    if (const int e = check(operation); e != 0) {
        errno = e;
        return failed;
    }
    return f();
}

}  // namespace ndisshm::os::fault
