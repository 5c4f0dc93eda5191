#include "child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

namespace ndisshm::cli {

Child::Child(const std::vector<std::string>& args) {
    int fds[2];
    // Close-on-exec, so no other child inherits this pipe and keeps it open
    // past our child's end; dup2 onto fd 1 clears the flag for ours alone.
    if (pipe2(fds, O_CLOEXEC) != 0) {
        error_ = std::string("pipe2: ") + std::strerror(errno);
        return;
    }
    std::vector<std::string> argv_storage = {"ndisshm"};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    // posix_spawn, not fork: the host runs threads, and only exec is safe
    // after forking a threaded process.
    const int rc = posix_spawn(&pid_, "/proc/self/exe", &actions, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        pid_ = -1;
        close(fds[0]);
        error_ = std::string("posix_spawn(/proc/self/exe): ") + std::strerror(rc);
        return;
    }
    out_fd_ = fds[0];
}

Child::~Child() {
    if (pid_ > 0 && status_ < 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
}

int Child::finish(int timeout_ms) {
    if (pid_ <= 0) return -1;
    if (status_ >= 0) return status_;
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    char buf[4096];
    // Read to the end first: a child blocked on a full pipe would never exit.
    while (out_fd_ >= 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) break;
        pollfd p{out_fd_, POLLIN, 0};
        const int n = poll(&p, 1, static_cast<int>(left));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        const ssize_t got = read(out_fd_, buf, sizeof(buf));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            close(out_fd_);
            out_fd_ = -1;
            break;
        }
        output_.append(buf, static_cast<size_t>(got));
    }
    int status = 0;
    pid_t w = 0;
    while (Clock::now() < deadline && (w = waitpid(pid_, &status, WNOHANG)) == 0)
        poll(nullptr, 0, 10);
    if (w != pid_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
    }
    if (WIFEXITED(status)) {
        status_ = WEXITSTATUS(status);
        how_ = "exit status " + std::to_string(status_);
    } else {
        const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        status_ = 128 + sig;
        const char* name = sig != 0 ? sigabbrev_np(sig) : nullptr;
        how_ = "killed by signal " + std::to_string(sig) + " (SIG" + (name != nullptr ? name : "?") + ")";
    }
    return status_;
}

}  // namespace ndisshm::cli
