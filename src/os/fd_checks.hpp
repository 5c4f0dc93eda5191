// Checks on a file descriptor another process handed us, and the few calls
// the host's guest server needs around them (poll over many sockets, a
// wake-up fd, non-blocking sends).
//
// Why here: only src/os/ includes Linux headers. The guest's memfd is the one
// thing a guest gives the host that the host then maps and writes into, so
// before mapping we learn what it really is (a memfd, its seals, its size)
// instead of trusting the size the guest wrote in its message.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"
#include "os/os.hpp"

namespace ndisshm::os {

struct MemoryFdFacts {
    bool regular = false;         // S_ISREG (memfds are)
    bool memfd = false;           // /proc/self/fd names it "/memfd:...", or F_GET_SEALS worked where /proc is absent
    bool seals_supported = false; // F_GET_SEALS succeeded: shmem or hugetlbfs
    bool shrink_sealed = false;   // F_SEAL_SHRINK present: the file can never get smaller
    bool seals_locked = false;    // F_SEAL_SEAL present: no seal can be added any more
    bool write_sealed = false;    // F_SEAL_WRITE or F_SEAL_FUTURE_WRITE: a shared writable map would fail
    uint64_t size = 0;            // fstat's st_size
    std::string name;             // what /proc/self/fd says (for logs), empty if unknown
};

// Never fails for a valid fd (what cannot be learnt stays false); fails with
// EBADF and the like when fstat does, and when F_GET_SEALS fails other than
// with EINVAL (the kernel failing, not the file taking no seals).
Result<MemoryFdFacts> inspect_memory_fd(int fd);

// F_ADD_SEALS(F_SEAL_SHRINK): after this, ftruncate to a smaller size fails
// with EPERM in every process holding the file, so pages we map stay backed
// and touching them can never SIGBUS. EPERM when F_SEAL_SEAL is set.
Status seal_against_shrinking(int fd);

// One fd to wait on. `events` out: readable (data or a hang-up to read).
struct PollEntry {
    int fd = -1;
    bool readable = false;
    bool hung_up = false;  // POLLHUP/POLLERR/POLLNVAL: the peer is gone or the fd is bad
};
// Waits until at least one entry is readable or hung up, or timeout_ms passes
// (< 0: forever). Returns how many entries have something; EINTR restarts
// with the time left.
Result<int> poll_readable(std::span<PollEntry> entries, int timeout_ms);

// An eventfd one thread signals to wake another from poll_readable. The
// rings' kicks are ones too, passed between processes (SCM_RIGHTS).
class WakeFd {
public:
    static Result<WakeFd> create();
    // One received from a peer: made non-blocking, so that neither signal
    // nor drain can ever wait, whatever kind of fd the peer sent.
    static Result<WakeFd> adopt(UniqueFd fd);
    WakeFd() = default;
    void signal() const;  // async-signal-safe, never blocks
    void drain() const;   // reads the count back to 0
    int fd() const { return fd_.get(); }

private:
    explicit WakeFd(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

// A timerfd on CLOCK_MONOTONIC: readable once `ms` have passed since arm().
// A guest that is waiting to reconnect puts one in the epoll set it gives
// its caller (ndisshm_guest_fd), so a caller asleep there wakes when the
// next attempt is due, with no thread of ours.
class TimerFd {
public:
    static Result<TimerFd> create();
    TimerFd() = default;
    void arm(uint32_t ms) const;  // fires once, after ms (0: at once)
    void disarm() const;          // and drains what fired
    int fd() const { return fd_.get(); }

private:
    explicit TimerFd(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

// An epoll instance (close-on-exec) and the fds it watches for input: one fd
// a caller can sleep on for several (the guest's socket and its kicks).
Result<UniqueFd> epoll_create();
Status epoll_watch(int epoll_fd, int fd);

// O_NONBLOCK: a send on a full socket fails with EAGAIN instead of waiting
// for a peer that may never read.
Status set_nonblocking(int fd);

}  // namespace ndisshm::os
