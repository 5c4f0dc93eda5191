#include "tour/violation_watch.hpp"

namespace ndisshm::cli {

void ViolationWatch::expect(ndisshm_violation_kind kind) {
    std::lock_guard lock(mu_);
    ++expected_[kind];
}

void ViolationWatch::on_violation(const ndisshm_violation& v) {
    Finding f{v.kind_name != nullptr ? v.kind_name : "unknown", v.call != nullptr ? v.call : "?",
              v.message != nullptr ? v.message : "", false};
    {
        std::lock_guard lock(mu_);
        auto it = expected_.find(v.kind);
        if (it != expected_.end() && it->second != 0) {
            --it->second;
            f.on_purpose = true;
        }
        findings_.push_back(f);
    }
    // Outside the lock: the sink may be slow (a terminal) or call back in.
    shown_(f);
}

void ViolationWatch::callback(void* context, const ndisshm_violation* v) {
    if (context != nullptr && v != nullptr) static_cast<ViolationWatch*>(context)->on_violation(*v);
}

size_t ViolationWatch::pending() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [kind, count] : expected_) n += count;
    return n;
}

size_t ViolationWatch::unexpected() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& f : findings_) n += f.on_purpose ? 0 : 1;
    return n;
}

std::vector<Finding> ViolationWatch::findings() const {
    std::lock_guard lock(mu_);
    return findings_;
}

}  // namespace ndisshm::cli
