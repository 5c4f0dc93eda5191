// Collects the verifier's reports and tells the misuse a scenario commits on
// purpose from the misuse it does not. Runs inside the runtime's violation
// callback, on the thread that made the bad call.
#pragma once

#include <ndisshm/host.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ndisshm::cli {

struct Finding {
    std::string kind;  // "double-free", as the verifier names it
    std::string call;
    std::string message;
    bool on_purpose = false;
};

class ViolationWatch {
public:
    // `shown` is called for every finding as it arrives.
    explicit ViolationWatch(std::function<void(const Finding&)> shown) : shown_(std::move(shown)) {}

    // The next violation of `kind` is committed on purpose.
    void expect(ndisshm_violation_kind kind);
    void on_violation(const ndisshm_violation& v);
    // For ndisshm_set_global_violation_callback and
    // ndisshm_runtime_set_violation_callback; `context` is the watch.
    static void callback(void* context, const ndisshm_violation* v);

    // Expectations not met yet.
    size_t pending() const;
    size_t unexpected() const;
    std::vector<Finding> findings() const;

private:
    std::function<void(const Finding&)> shown_;
    mutable std::mutex mu_;
    std::map<ndisshm_violation_kind, size_t> expected_;
    std::vector<Finding> findings_;
};

}  // namespace ndisshm::cli
