// The hub behind <ndisshm/hub.h>: private to api/hub.cpp (life cycle and
// delivery) and api/hub_books.cpp (guests, queues, statistics, snapshot).
#pragma once

#include <ndisshm/hub.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "hub/control.hpp"
#include "hub/guest_hub.hpp"

namespace ndisshm::ipc {

// As snprintf: copies what fits, always NUL-terminates (bytes > 0), returns
// the whole length.
inline size_t copy_out(const std::string& s, char* buffer, size_t bytes) {
    if (buffer != nullptr && bytes > 0) {
        const size_t n = std::min(s.size(), bytes - 1);
        std::memcpy(buffer, s.data(), n);
        buffer[n] = '\0';
    }
    return s.size();
}

inline constexpr size_t kRecentViolations = 16;

}  // namespace ndisshm::ipc

struct ndisshm_hub;
namespace ndisshm::ipc {
// ndisshm_hub_snapshot_json's text, built once (the control socket's reply).
std::string hub_snapshot(const ndisshm_hub* hub);
}  // namespace ndisshm::ipc

// Locks: host_mu is shared by the copy path and exclusive for creating and
// freeing host queues, so no copy reads a host buffer while it is freed.
// recent_mu guards the violation messages only. GuestHub has its own.
struct ndisshm_hub {
    ndisshm_runtime* runtime = nullptr;
    NDIS_HANDLE adapter = nullptr;
    std::string adapter_name;
    ndisshm::ipc::GuestHubConfig config;
    bool serve_control = true;
    ndisshm_hub_log_fn log_fn = nullptr;
    void* log_context = nullptr;
    std::string control_path;  // set at start when serving
    std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();

    std::unique_ptr<ndisshm::ipc::GuestHub> hub;
    std::unique_ptr<ndisshm::ipc::ControlServer> control;
    bool started = false, stopped = false;

    mutable std::shared_mutex host_mu;
    std::unique_ptr<ndisshm::nic::VmqMiniport> host_miniport;
    std::map<uint32_t, ndisshm_queue_params> host_queues;
    std::atomic<uint64_t> copied{0};

    mutable std::mutex recent_mu;
    std::deque<std::string> recent;

    void say(const std::string& line) const {
        if (log_fn != nullptr)
            log_fn(log_context, line.c_str());
        else
            std::fprintf(stderr, "ndisshm hub: %s\n", line.c_str());
    }
    // Whether a queue id is one the hub may give a guest.
    bool guest_range(uint32_t id) const {
        return id >= config.first_queue_id && id - config.first_queue_id < config.max_guests;
    }
};
