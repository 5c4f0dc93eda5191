// A scenario: named steps run in order, narrated as they go, with checks that
// collect problems instead of stopping at the first. New behaviour (guest
// processes, traffic, another NIC) is added as steps, not as a new program.
//
// A step that throws ends the run: the problem is recorded, the remaining
// steps are skipped, and the cleanup steps still run, so a broken run still
// tears down (and the verifier still reports what it left behind).
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace ndisshm::cli {

class Scenario {
public:
    // Narration goes to `narration` unless `quiet`; problems are kept either way.
    Scenario(std::FILE* narration, bool quiet) : out_(narration), quiet_(quiet) {}

    void step(std::string title, std::function<void()> body);
    void cleanup(std::string title, std::function<void()> body);

    // Runs every step, then every cleanup step. True when nothing threw and
    // every check held.
    bool run();

    // One line of narration under the current step.
    void say(const std::string& line);
    // A check that failed is a problem; the step goes on.
    void check(bool ok, const std::string& what) {
        if (!ok) fail(what);
    }
    void fail(const std::string& what);

    const std::vector<std::string>& problems() const { return problems_; }

private:
    struct Step {
        std::string title;
        std::function<void()> body;
        bool cleanup;
    };
    void run_one(size_t index);

    std::FILE* out_;
    bool quiet_;
    std::vector<Step> steps_;
    std::vector<std::string> problems_;
    std::string current_;
};

}  // namespace ndisshm::cli
