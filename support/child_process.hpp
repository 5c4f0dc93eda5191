// The one child-process helper of the tree: a process started with
// posix_spawn (fork and exec in one: the only safe way out of a threaded
// process), its stdout on a pipe this side reads, its stderr shared with
// ours. The CLI starts guests of its own binary (/proc/self/exe), the
// benchmark its guest, the tests their peers; each talks to its child through
// the child's stdout (whole output, or one event a line) and its exit status.
//
// Every wait is bounded. The destructor kills (SIGKILL) and reaps a child
// still running, so nothing is left behind when the owner fails.
//
// Threads: one owner thread at a time.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace ndisshm::support {

struct SpawnOptions {
    // The program to run; "" : argv[0]. "/proc/self/exe" runs this binary again.
    std::string program = {};
    // A process group of its own: a Ctrl-C at the terminal reaches the parent
    // alone (which then ends its children its own way), and a group orphaned
    // while stopped gets SIGHUP and SIGCONT from the kernel.
    bool own_process_group = false;
    // false: the child writes to our stdout; nothing is read.
    bool capture_stdout = true;
};

class ChildProcess {
public:
    // Starts `argv` (argv[0] is the child's name, and its program unless
    // options.program says otherwise); started() says whether it did and
    // error() why not.
    explicit ChildProcess(const std::vector<std::string>& argv, const SpawnOptions& options = {});
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    bool started() const { return pid_ > 0; }
    const std::string& error() const { return error_; }
    pid_t pid() const { return pid_; }

    // ---- Its stdout ----
    // The next line starting with `prefix` that was not handed out yet (the
    // lines before it are skipped), or nullopt after timeout_ms or at the end
    // of its output.
    std::optional<std::string> wait_line(const std::string& prefix, int timeout_ms = 5000);
    // Appends the whole lines that arrived and were not handed out yet,
    // without waiting; false once its stdout is at its end.
    bool read_lines(std::vector<std::string>& lines);
    // Every whole line so far, each as "  | line\n" (for failure messages).
    std::string transcript();
    // Every byte read so far (finish() reads to the end).
    const std::string& output() const { return output_; }

    // ---- Its life ----
    // Reads its stdout to the end, then reaps it, waiting up to timeout_ms in
    // all; a child not done by then is killed (SIGKILL). Its exit status, or
    // 128 + signal; -1 if it never started.
    int finish(int timeout_ms);
    // Reaps it once it exits: its exit status (or 128 + signal), or -1 if it
    // is still running after timeout_ms (< 0: waits as long as it takes).
    int wait_exit(int timeout_ms = 5000);
    // Whether it is still running (if not, it is reaped: exit_status() holds).
    bool running();
    // Sends `signal` (nothing once it is reaped).
    void signal(int signal);
    // SIGKILL and reap.
    void kill_now();
    // SIGSTOP, returning once it is stopped; false (reaped) if it exited instead.
    bool stop();
    // SIGCONT after stop().
    void resume();
    // Once reaped: the status, and "exit status 0", "killed by signal 9 (SIGKILL)", ...
    int exit_status() const { return status_; }
    const std::string& how() const { return how_; }

private:
    bool read_more(int timeout_ms);
    void reaped(int wait_status);

    pid_t pid_ = -1;
    int out_fd_ = -1;
    std::string error_;
    std::string output_;
    std::string partial_;  // after the last newline
    std::vector<std::string> lines_;
    size_t next_line_ = 0;  // the first line not handed out yet
    int status_ = -1;       // >= 0 once reaped
    std::string how_;
    bool stopped_ = false;
};

}  // namespace ndisshm::support
