// The line a long run shows while it works: on a terminal one line redrawn
// in place (\r), elsewhere (a log, a pipe, CI) plain lines at most once a
// second, so logs stay readable and short.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace ndisshm::cli {

class Progress {
public:
    // `out` null: silent.
    explicit Progress(std::FILE* out);
    ~Progress() { done(); }
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    void update(const std::string& line);
    // Ends a redrawn line, so what follows starts on a line of its own.
    void done();
    bool tty() const { return tty_; }

private:
    std::FILE* out_;
    bool tty_ = false;
    bool drawn_ = false;
    size_t width_ = 0;
    std::chrono::steady_clock::time_point last_{};
};

}  // namespace ndisshm::cli
