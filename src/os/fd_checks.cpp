// Linux implementations of fd_checks.hpp.
#include "os/fd_checks.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "os/fault.hpp"

namespace ndisshm::os {
namespace {

Error errno_error(std::string operation) {
    int e = errno;
    return Error{std::move(operation), e, std::strerror(e)};
}

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

}  // namespace

Result<MemoryFdFacts> inspect_memory_fd(int fd) {
    struct stat st {};
    if (fault::call("fstat", -1, [&] { return ::fstat(fd, &st); }) != 0)
        return errno_error("fstat(fd " + std::to_string(fd) + ")");
    MemoryFdFacts f;
    f.regular = S_ISREG(st.st_mode);
    f.size = static_cast<uint64_t>(st.st_size);
    const int seals = fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_GET_SEALS); });
    // EINVAL is the answer of a file that takes no seals (not a memfd); any other errno is the kernel
    // failing the call, which must not pass for a fact about the file (a memfd called "not a memfd").
    if (seals < 0 && errno != EINVAL) return errno_error("fcntl(F_GET_SEALS, fd " + std::to_string(fd) + ")");
    f.seals_supported = seals >= 0;
    if (seals >= 0) {
        f.shrink_sealed = (seals & F_SEAL_SHRINK) != 0;
        f.seals_locked = (seals & F_SEAL_SEAL) != 0;
        f.write_sealed = (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0;
    }
    // F_GET_SEALS also works on any tmpfs or hugetlbfs file (a file in
    // /dev/shm, say), which is not what a guest promised: the kernel names a
    // memfd "/memfd:<name> (deleted)", which no path on a filesystem can be.
    char link[64];
    std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    char target[256];
    const ssize_t n = ::readlink(link, target, sizeof(target) - 1);
    if (n > 0) {
        target[n] = '\0';
        f.name = target;
        f.memfd = f.regular && f.seals_supported && std::strncmp(target, "/memfd:", 7) == 0;
    } else {
        f.memfd = f.regular && f.seals_supported;  // no /proc: the best we can tell
    }
    return f;
}

Status seal_against_shrinking(int fd) {
    if (fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK); }) != 0)
        return errno_error("fcntl(F_ADD_SEALS, F_SEAL_SHRINK)");
    return Ok{};
}

Result<int> poll_readable(std::span<PollEntry> entries, int timeout_ms) {
    std::vector<pollfd> fds(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) fds[i] = {entries[i].fd, POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int left = timeout_ms;
    for (;;) {
        const int n = fault::call("poll", -1, [&] { return ::poll(fds.data(), fds.size(), left); });
        if (n >= 0) {
            for (size_t i = 0; i < entries.size(); ++i) {
                entries[i].readable = (fds[i].revents & POLLIN) != 0;
                entries[i].hung_up = (fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
            }
            return n;
        }
        if (errno != EINTR) return errno_error("poll(" + std::to_string(fds.size()) + " fds)");
        if (timeout_ms >= 0) {
            const auto now = std::chrono::steady_clock::now();
            left = now >= deadline
                       ? 0
                       : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
        }
    }
}

Result<WakeFd> WakeFd::create() {
    const int fd = fault::call("eventfd", -1, [] { return ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); });
    if (fd < 0) return errno_error("eventfd");
    return WakeFd(UniqueFd(fd));
}

Result<WakeFd> WakeFd::adopt(UniqueFd fd) {
    if (!fd.valid()) return Error{"eventfd", EBADF, "no file descriptor"};
    if (auto s = set_nonblocking(fd.get()); !s) return s.error();
    return WakeFd(std::move(fd));
}

void WakeFd::signal() const {
    const uint64_t one = 1;
    // EAGAIN only when the counter would overflow: the waiter is awake anyway.
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
}

void WakeFd::drain() const {
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(fd_.get(), &count, sizeof(count));
}

Result<TimerFd> TimerFd::create() {
    const int fd = fault::call("timerfd_create", -1,
                               [] { return ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK); });
    if (fd < 0) return errno_error("timerfd_create");
    return TimerFd(UniqueFd(fd));
}

void TimerFd::arm(uint32_t ms) const {
    itimerspec t{};
    // 0 would disarm: the earliest a timerfd can fire is 1 ns.
    const uint64_t ns = ms == 0 ? 1 : uint64_t{ms} * 1000000;
    t.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    t.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
    // Cannot fail for a timerfd we made with a valid time.
    [[maybe_unused]] int rc = ::timerfd_settime(fd_.get(), 0, &t, nullptr);
}

void TimerFd::disarm() const {
    const itimerspec none{};
    [[maybe_unused]] int rc = ::timerfd_settime(fd_.get(), 0, &none, nullptr);
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(fd_.get(), &count, sizeof(count));
}

Result<UniqueFd> epoll_create() {
    const int fd = fault::call("epoll_create1", -1, [] { return ::epoll_create1(EPOLL_CLOEXEC); });
    if (fd < 0) return errno_error("epoll_create1");
    return UniqueFd(fd);
}

Status epoll_watch(int epoll_fd, int fd) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = fd;
    if (fault::call("epoll_ctl", -1, [&] { return ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &e); }) != 0)
        return errno_error("epoll_ctl(ADD, " + std::to_string(fd) + ")");
    return Ok{};
}

Status set_nonblocking(int fd) {
    const int flags = fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_GETFL); });
    if (flags < 0 || fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_SETFL, flags | O_NONBLOCK); }) != 0)
        return errno_error("fcntl(O_NONBLOCK)");
    return Ok{};
}

}  // namespace ndisshm::os
