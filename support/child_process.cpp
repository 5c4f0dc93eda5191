#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

extern char** environ;

namespace ndisshm::support {
namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const SpawnOptions& options) {
    if (argv.empty()) {
        error_ = "no program";
        return;
    }
    int fds[2] = {-1, -1};
    // Close-on-exec, so no other child inherits the pipe and keeps it open
    // past this one's end; dup2 onto fd 1 clears the flag for this child
    // alone. Our end alone is non-blocking: the child's stdout blocks as any.
    if (options.capture_stdout) {
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            error_ = std::string("pipe2: ") + std::strerror(errno);
            return;
        }
        ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    }
    std::vector<std::string> storage = argv;
    std::vector<char*> args;
    for (auto& a : storage) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (options.capture_stdout) posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    if (options.own_process_group) {
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    }
    const std::string& program = options.program.empty() ? argv[0] : options.program;
    const int rc = ::posix_spawn(&pid_, program.c_str(), &actions, &attr, args.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (fds[1] >= 0) ::close(fds[1]);
    if (rc != 0) {
        pid_ = -1;
        if (fds[0] >= 0) ::close(fds[0]);
        error_ = "posix_spawn(" + program + "): " + std::strerror(rc);
        return;
    }
    out_fd_ = fds[0];
}

ChildProcess::~ChildProcess() {
    kill_now();
    if (out_fd_ >= 0) ::close(out_fd_);
}

bool ChildProcess::read_more(int timeout_ms) {
    if (out_fd_ < 0) return false;
    pollfd p{out_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) return true;
    if (ready <= 0) return false;
    char buf[4096];
    bool got_any = false;
    for (;;) {
        const ssize_t n = ::read(out_fd_, buf, sizeof(buf));
        if (n > 0) {
            got_any = true;
            output_.append(buf, static_cast<size_t>(n));
            partial_.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {  // at its end
            ::close(out_fd_);
            out_fd_ = -1;
        }
        break;
    }
    for (size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
        lines_.push_back(partial_.substr(0, nl));
        partial_.erase(0, nl + 1);
    }
    return got_any;
}

std::optional<std::string> ChildProcess::wait_line(const std::string& prefix, int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        while (next_line_ < lines_.size()) {
            const std::string& l = lines_[next_line_++];
            if (l.rfind(prefix, 0) == 0) return l;
        }
        const int left = ms_left(deadline);
        if (left <= 0 || out_fd_ < 0) return std::nullopt;
        read_more(left);
    }
}

bool ChildProcess::read_lines(std::vector<std::string>& lines) {
    while (read_more(0)) {
    }
    for (; next_line_ < lines_.size(); ++next_line_) lines.push_back(lines_[next_line_]);
    return out_fd_ >= 0;
}

std::string ChildProcess::transcript() {
    while (read_more(0)) {
    }
    std::string t;
    for (const auto& l : lines_) t += "  | " + l + "\n";
    return t;
}

void ChildProcess::reaped(int wait_status) {
    if (WIFEXITED(wait_status)) {
        status_ = WEXITSTATUS(wait_status);
        how_ = "exit status " + std::to_string(status_);
        return;
    }
    const int sig = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    status_ = 128 + sig;
    const char* name = sig != 0 ? sigabbrev_np(sig) : nullptr;
    how_ = "killed by signal " + std::to_string(sig) + " (SIG" + (name != nullptr ? name : "?") + ")";
}

int ChildProcess::finish(int timeout_ms) {
    if (pid_ <= 0) return -1;
    if (status_ >= 0) return status_;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    // Read to the end first: a child blocked on a full pipe would never exit.
    while (out_fd_ >= 0 && ms_left(deadline) > 0) read_more(ms_left(deadline));
    if (wait_exit(ms_left(deadline)) < 0) kill_now();
    return status_;
}

int ChildProcess::wait_exit(int timeout_ms) {
    if (pid_ <= 0) return -1;
    if (status_ >= 0) return status_;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int ws = 0;
        const pid_t r = ::waitpid(pid_, &ws, timeout_ms < 0 ? 0 : WNOHANG);
        if (r == pid_) {
            reaped(ws);
            return status_;
        }
        if (r < 0 && errno != EINTR) return -1;
        if (timeout_ms >= 0 && Clock::now() >= deadline) return -1;
        if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

bool ChildProcess::running() {
    return pid_ > 0 && status_ < 0 && wait_exit(0) < 0;
}

void ChildProcess::signal(int sig) {
    if (pid_ > 0 && status_ < 0) ::kill(pid_, sig);
}

void ChildProcess::kill_now() {
    if (pid_ <= 0 || status_ >= 0) return;
    ::kill(pid_, SIGKILL);
    wait_exit(-1);
}

bool ChildProcess::stop() {
    if (pid_ <= 0 || status_ >= 0) return false;
    ::kill(pid_, SIGSTOP);
    int ws = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &ws, WUNTRACED)) < 0 && errno == EINTR) {
    }
    if (r != pid_) return false;
    if (WIFSTOPPED(ws)) {
        stopped_ = true;
        return true;
    }
    reaped(ws);
    return false;
}

void ChildProcess::resume() {
    if (!stopped_) return;
    stopped_ = false;
    signal(SIGCONT);
}

}  // namespace ndisshm::support
