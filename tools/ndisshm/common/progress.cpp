#include "common/progress.hpp"

#include <unistd.h>

namespace ndisshm::cli {

Progress::Progress(std::FILE* out) : out_(out), tty_(out != nullptr && isatty(fileno(out)) == 1) {}

void Progress::update(const std::string& line) {
    if (out_ == nullptr) return;
    const auto now = std::chrono::steady_clock::now();
    if (tty_) {
        // Pad over the previous line's tail rather than clearing with an
        // escape sequence: works on any terminal.
        std::fprintf(out_, "\r%s%*s", line.c_str(), static_cast<int>(width_ > line.size() ? width_ - line.size() : 0), "");
        width_ = line.size();
        drawn_ = true;
    } else {
        if (last_ != std::chrono::steady_clock::time_point{} && now - last_ < std::chrono::seconds(1)) return;
        std::fprintf(out_, "%s\n", line.c_str());
    }
    last_ = now;
    std::fflush(out_);
}

void Progress::done() {
    if (out_ != nullptr && tty_ && drawn_) {
        std::fputc('\n', out_);
        std::fflush(out_);
    }
    drawn_ = false;
    width_ = 0;
}

}  // namespace ndisshm::cli
