// A child process the test starts (posix_spawn: fork+exec, safe in a
// threaded test process) and talks to through its stdout: one event a line.
// Every wait is bounded; the destructor kills and reaps whatever is left, so
// a failing test leaves no process behind.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace ndisshm_mp {

class ChildProcess {
public:
    explicit ChildProcess(const std::vector<std::string>& argv) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) return;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);  // dup2 clears CLOEXEC on fd 1
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
        posix_spawn_file_actions_destroy(&fa);
        ::close(p[1]);
        out_ = p[0];
    }
    ~ChildProcess() {
        if (pid_ > 0 && !exited_) {
            ::kill(pid_, SIGKILL);
            int status;
            ::waitpid(pid_, &status, 0);
        }
        if (out_ >= 0) ::close(out_);
    }
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    bool started() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }

    // The next line starting with `prefix` (earlier lines are kept in
    // lines()), or nullopt after timeout_ms or at end of output.
    std::optional<std::string> wait_line(const std::string& prefix, int timeout_ms = 5000) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            while (next_ < lines_.size()) {
                const std::string& l = lines_[next_++];
                if (l.rfind(prefix, 0) == 0) return l;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now()).count();
            if (left <= 0 || !read_more(static_cast<int>(left))) return std::nullopt;
        }
    }
    // Everything it printed so far (for failure messages).
    std::string transcript() {
        while (read_more(0)) {
        }
        std::string t;
        for (const auto& l : lines_) t += "  | " + l + "\n";
        return t;
    }

    void kill9() { ::kill(pid_, SIGKILL); }
    // Its exit status (WEXITSTATUS, or 128 + signal), or -1 after timeout_ms.
    int wait_exit(int timeout_ms = 5000) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (!exited_) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                exited_ = true;
                status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) return -1;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return status_;
    }

private:
    bool read_more(int timeout_ms) {
        pollfd p{out_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        char buf[4096];
        const ssize_t n = ::read(out_, buf, sizeof(buf));
        if (n <= 0) return false;
        partial_.append(buf, static_cast<size_t>(n));
        for (size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
            lines_.push_back(partial_.substr(0, nl));
            partial_.erase(0, nl + 1);
        }
        return true;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    bool exited_ = false;
    int status_ = -1;
    std::string partial_;
    std::vector<std::string> lines_;
    size_t next_ = 0;
};

}  // namespace ndisshm_mp
