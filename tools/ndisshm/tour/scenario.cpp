#include "tour/scenario.hpp"

#include <exception>

namespace ndisshm::cli {

void Scenario::step(std::string title, std::function<void()> body) {
    steps_.push_back({std::move(title), std::move(body), false});
}

void Scenario::cleanup(std::string title, std::function<void()> body) {
    steps_.push_back({std::move(title), std::move(body), true});
}

void Scenario::say(const std::string& line) {
    if (!quiet_) std::fprintf(out_, "      %s\n", line.c_str());
}

void Scenario::fail(const std::string& what) {
    problems_.push_back(current_.empty() ? what : current_ + ": " + what);
    if (!quiet_) std::fprintf(out_, "      PROBLEM: %s\n", what.c_str());
}

void Scenario::run_one(size_t index) {
    const Step& s = steps_[index];
    current_ = s.title;
    if (!quiet_) {
        std::fprintf(out_, "[%zu/%zu] %s\n", index + 1, steps_.size(), s.title.c_str());
        std::fflush(out_);
    }
    s.body();
}

bool Scenario::run() {
    bool broken = false;
    for (size_t i = 0; i < steps_.size(); ++i) {
        if (broken && !steps_[i].cleanup) continue;
        try {
            run_one(i);
        } catch (const std::exception& e) {
            fail(std::string("stopped: ") + e.what());
            broken = true;
        }
    }
    current_.clear();
    if (!quiet_) std::fflush(out_);
    return !broken && problems_.empty();
}

}  // namespace ndisshm::cli
