// A child process of the CLI's own binary (/proc/self/exe), for the demo's
// guests: its stdout is captured, its stderr shared with ours, and it runs in
// a process group of its own, so a Ctrl-C at the terminal reaches the demo
// alone and the demo ends its guests the clean way (BYE).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ndisshm::cli {

class Child {
public:
    // Starts `/proc/self/exe args...`; started() says whether it did, and
    // error() why not.
    explicit Child(const std::vector<std::string>& args);
    ~Child();  // a child still running is killed (SIGKILL) and reaped
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    bool started() const { return pid_ > 0; }
    const std::string& error() const { return error_; }
    pid_t pid() const { return pid_; }

    // Reads its stdout to the end and reaps it, waiting up to timeout_ms; a
    // child not done by then is killed. The exit status, or 128 + signal.
    int finish(int timeout_ms);
    const std::string& output() const { return output_; }
    // "exit status 0", "killed by signal 9 (SIGKILL)", ...
    const std::string& how() const { return how_; }

private:
    pid_t pid_ = -1;
    int out_fd_ = -1;
    std::string output_;
    std::string error_;
    std::string how_;
    int status_ = -1;
};

}  // namespace ndisshm::cli
