#include "demo/guests.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace ndisshm::cli {

bool GuestProcesses::start(uint32_t count, const std::string& socket, uint64_t memory_bytes,
                           const std::vector<std::string>& flags, std::string& why) {
    const std::string memory = std::to_string(memory_bytes);
    for (uint32_t g = 1; g <= count; ++g) {
        const std::string name = "guest-" + std::to_string(g);
        std::vector<std::string> argv = {"ndisshm", "guest", "--socket", socket, "--name", name, "--memory", memory,
                                         "--verify", "--no-reconnect"};  // they live and die with the demo's host
        argv.insert(argv.end(), flags.begin(), flags.end());
        argv.push_back("--json");
        auto child = std::make_unique<support::ChildProcess>(
            argv, support::SpawnOptions{.program = "/proc/self/exe", .own_process_group = true});
        if (!child->started()) {
            why = name + ": " + child->error();
            return false;
        }
        children_.emplace_back(name, std::move(child));
    }
    return true;
}

pid_t GuestProcesses::pid(const std::string& name) const {
    for (const auto& [n, child] : children_)
        if (n == name) return child->pid();
    return -1;
}

void GuestProcesses::finish(int timeout_ms, std::vector<GuestRow>& rows, std::vector<std::string>& problems) {
    // Each process by the name it was given: a guest that died before it got
    // a queue, or printed nothing, still gets its row and its exit.
    for (auto& [name, child] : children_) {
        const std::string& n = name;
        auto it = std::find_if(rows.begin(), rows.end(), [&](const GuestRow& r) { return r.name == n; });
        if (it == rows.end()) {
            rows.push_back(GuestRow{});
            it = rows.end() - 1;
            it->name = name;
        }
        GuestRow& g = *it;
        g.exit_status = child->finish(timeout_ms);
        g.how = child->how();
        if (child->output().empty()) continue;  // died before its summary: its exit says why
        try {
            const auto j = nlohmann::json::parse(child->output());
            g.packets = j.value("packets", uint64_t{0});
            g.bytes = j.value("bytes", uint64_t{0});
            g.end = j.value("end", std::string());
            const auto& v = j.at("verify");
            g.verified = v.value("verified", uint64_t{0});
            g.lost = v.value("lost", uint64_t{0});
            g.out_of_order = v.value("out_of_order", uint64_t{0});
            g.corrupt = v.value("corrupt", uint64_t{0});
        } catch (const std::exception& e) {
            problems.push_back(name + " (process " + std::to_string(child->pid()) + ", " + g.how +
                               ") printed no readable summary: " + e.what());
        }
    }
}

}  // namespace ndisshm::cli
