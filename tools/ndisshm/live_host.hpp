// The host both `ndisshm host` and `ndisshm demo` run: a runtime with the
// verifier on, a hub (<ndisshm/hub.h>) whose adapter is the emulated VMQ NIC
// with the guest provider registered on it, the guest socket and the control
// socket. Everything through the public C API, as any host would.
//
// shut_down() is the clean end and its audit: the hub stops (guests told BYE,
// their queues' buffers freed through the guest provider), the books are
// read (blocks and bytes still outstanding on the adapter, in the default
// provider's memory), then the adapter and the runtime go, and any block
// still there would be reported by the verifier as a leak. Every verifier
// finding from start to end is kept.
#pragma once

#include <ndisshm/hub.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace ndisshm::cli {

struct HostConfig {
    std::string socket;             // empty: ndisshm_default_socket_path
    uint32_t max_guests = 64;
    uint32_t blocks_per_queue = 16;
    uint32_t block_bytes = 64 * 1024;
    uint32_t slot_bytes = 2048;
    uint32_t lookahead_size = 0;    // non-zero: guests' queues get lookahead split of this size
    uint32_t split_queue = 0;       // non-zero (with lookahead_size): only this guest queue is split
    // A queue driver that must exist before the hub starts and outlive its
    // stop (demo --nic afxdp): before_start runs between ndisshm_hub_create
    // and ndisshm_hub_start ("" to go on, else why not: the constructor
    // throws it); after_stop between ndisshm_hub_stop and ndisshm_hub_destroy.
    std::function<std::string(ndisshm_hub*)> before_start;
    std::function<void()> after_stop;
};

struct TeardownReport {
    uint64_t blocks_left = 0;       // on the adapter once the hub stopped: leaked by a driver or provider
    uint64_t bytes_left = 0;
    uint64_t memory_blocks_left = 0;  // in the default provider's memory once everything is gone
    std::vector<std::string> findings;  // every verifier finding of the run, "kind in call: message"
    bool clean() const { return blocks_left == 0 && bytes_left == 0 && memory_blocks_left == 0 && findings.empty(); }
};

class LiveHost {
public:
    // Throws std::runtime_error with the library's reason. `log` gets the
    // hub's lines (guests coming and going); empty: they are dropped.
    LiveHost(const HostConfig& config, std::function<void(const std::string&)> log);
    ~LiveHost();
    LiveHost(const LiveHost&) = delete;
    LiveHost& operator=(const LiveHost&) = delete;

    ndisshm_hub* hub() const { return hub_; }
    ndisshm_runtime* runtime() const { return runtime_; }
    std::string socket_path() const { return ndisshm_hub_socket_path(hub_); }
    std::string control_path() const { return ndisshm_hub_control_path(hub_); }
    std::vector<std::string> findings() const;

    // The adapter's books and the hub's queues as they are now.
    ndisshm_adapter_stats adapter_stats() const;
    std::vector<ndisshm_hub_queue_info> queues() const;
    std::vector<ndisshm_hub_guest_info> guests() const;

    // The clean end (above). Once; the hub and runtime are gone afterwards.
    TeardownReport shut_down();

private:
    static void on_violation(void* self, const ndisshm_violation* v);
    static void on_log(void* self, const char* line);

    static void choose_queue_params(void* self, uint32_t guest_id, const char* name, uint32_t queue_id,
                                    ndisshm_queue_params* params);

    std::function<void(const std::string&)> log_;
    uint32_t split_queue_ = 0, lookahead_size_ = 0;
    std::function<void()> after_stop_;
    ndisshm_runtime* runtime_ = nullptr;
    ndisshm_hub* hub_ = nullptr;
    mutable std::mutex mu_;
    std::vector<std::string> findings_;
};

}  // namespace ndisshm::cli
