/// @file
/// hub.hpp: the host side of guests in C++. RAII over <ndisshm/hub.h>,
/// header-only so it binds to the same exported C ABI as C callers do.
///
/// Two owners: ndisshm::Hub is one hub on a runtime the caller owns;
/// ndisshm::HubHost is a whole host as `ndisshm host` and `ndisshm demo` run
/// one: a runtime of its own with the verifier on, a started hub, and an
/// audited end (shut_down) that says what was left behind.
///
/// @code
///   ndisshm::HubHost host({.socket_path = path, .blocks_per_queue = 16});  // throws HubError with the reason
///   host.hub().wait_guests(1, 5000);
///   host.hub().deliver(queue_id, packet);
///   ndisshm::HubTeardown t = host.shut_down();  // guests told BYE, books read, all gone
///   if (!t.clean()) ... t.blocks_left, t.findings
/// @endcode
///
/// Callbacks (log, queue_params) run on the hub's own threads; an exception
/// from one is swallowed (it must not cross the C library). Threads: as
/// <ndisshm/hub.h> says: delivery from any thread, the life cycle from one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ndisshm/hub.h>

namespace ndisshm {

/// A hub call that failed: what the library said, and its NDIS_STATUS.
class HubError : public std::runtime_error {
public:
    HubError(const std::string& what, NDIS_STATUS status) : std::runtime_error(what), status_(status) {}
    NDIS_STATUS status() const { return status_; }

private:
    NDIS_STATUS status_;
};

/// ndisshm_hub_config in C++: every 0 or empty value is the C default.
struct HubOptions {
    std::string socket_path = {};         ///< guests connect here; "": ndisshm_default_socket_path
    std::string adapter_name = {};        ///< the hub's adapter; "": "nic0"
    uint32_t max_guests = 0;              ///< guests running at once, 1..1024; 0: 64
    uint32_t first_queue_id = 0;          ///< guests' queues are numbered from here; 0: 1
    uint32_t blocks_per_queue = 0;        ///< receive blocks per queue, 1..1024; 0: 4
    uint32_t block_bytes = 0;             ///< bytes per receive block, 4096..1 GiB; 0: 65536
    uint32_t slot_bytes = 0;              ///< largest packet, 64..block_bytes; 0: 2048
    bool lookahead_split = false;         ///< every guest's queue with NDISSHM_QUEUE_LOOKAHEAD_SPLIT
    uint32_t lookahead_size = 0;          ///< with lookahead split; 0: 128
    int handshake_timeout_ms = 0;         ///< HELLO and SET_MEMORY must be done by then; 0: 5000
    uint64_t max_guest_memory_bytes = 0;  ///< larger guest memory is refused; 0: 64 GiB
    bool serve_control = true;            ///< serve the control socket (`ndisshm stat`)
    /// One line per hub event (a guest connected, refused, gone); empty: each to stderr.
    std::function<void(const std::string& line)> log = {};
    /// Chooses one guest's queue parameters (ndisshm_hub_queue_params_fn): `params` holds what
    /// lookahead_split and lookahead_size say and may be changed. Empty: as they say.
    std::function<void(uint32_t guest_id, const std::string& guest_name, uint32_t queue_id,
                       ndisshm_queue_params& params)>
        queue_params = {};
};

/// One hub on a runtime the caller owns (ndisshm_hub_create ...
/// ndisshm_hub_destroy). Not movable: the C side holds `this` for the
/// callbacks.
class Hub {
public:
    /// Creates the hub's adapter on `runtime`, which must outlive the hub;
    /// nothing listens until start(). Throws HubError: INVALID_PARAMETER with
    /// the reason for a bad option, or the adapter creation's status.
    explicit Hub(ndisshm_runtime* runtime, const HubOptions& options = {})
        : log_(options.log), queue_params_(options.queue_params) {
        ndisshm_hub_config c;
        ndisshm_hub_config_init(&c);
        c.socket_path = options.socket_path.c_str();
        c.adapter_name = options.adapter_name.empty() ? nullptr : options.adapter_name.c_str();
        c.max_guests = options.max_guests;
        c.first_queue_id = options.first_queue_id;
        c.blocks_per_queue = options.blocks_per_queue;
        c.block_bytes = options.block_bytes;
        c.slot_bytes = options.slot_bytes;
        c.lookahead_split = options.lookahead_split ? 1 : 0;
        c.lookahead_size = options.lookahead_size;
        c.handshake_timeout_ms = options.handshake_timeout_ms;
        c.max_guest_memory_bytes = options.max_guest_memory_bytes;
        c.serve_control = options.serve_control ? 1 : 0;
        if (log_) {
            c.log = &Hub::log_trampoline;
            c.log_context = this;
        }
        if (queue_params_) {
            c.queue_params = &Hub::queue_params_trampoline;
            c.queue_params_context = this;
        }
        char error[512] = {};
        const NDIS_STATUS s = ndisshm_hub_create(runtime, &c, &h_, error, sizeof(error));
        if (s != NDIS_STATUS_SUCCESS)
            throw HubError(error[0] != '\0' ? std::string(error) : std::string("ndisshm_hub_create: ") +
                                                                        ndisshm_status_name(s),
                           s);
    }
    /// Stops (guests told BYE, every block freed) and destroys the adapter.
    ~Hub() { ndisshm_hub_destroy(h_); }
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    /// Registers the guest provider, listens on both sockets, starts the
    /// hub's threads. Once. Throws HubError (FAILURE) with the reason.
    void start() {
        char error[512] = {};
        const NDIS_STATUS s = ndisshm_hub_start(h_, error, sizeof(error));
        if (s != NDIS_STATUS_SUCCESS) throw HubError(error, s);
    }
    /// Stops serving (ndisshm_hub_stop): idempotent; the adapter stays.
    void stop() { ndisshm_hub_stop(h_); }

    ndisshm_hub* handle() const { return h_; }
    /// The hub's adapter: the NdisHandle drivers of the same NIC allocate with.
    NDIS_HANDLE adapter() const { return ndisshm_hub_adapter(h_); }
    std::string socket_path() const { return ndisshm_hub_socket_path(h_); }
    /// "" when the hub serves no control socket.
    std::string control_path() const { return ndisshm_hub_control_path(h_); }

    /// ndisshm_hub_deliver: one packet into guest queue `queue_id`.
    ndisshm_hub_delivery deliver(uint32_t queue_id, std::span<const std::byte> packet) {
        return ndisshm_hub_deliver(h_, queue_id, packet.data(), static_cast<uint32_t>(packet.size()));
    }
    /// ndisshm_hub_deliver_batch: how many were delivered, a prefix of `packets`.
    size_t deliver_batch(uint32_t queue_id, std::span<const ndisshm_hub_packet> packets) {
        return ndisshm_hub_deliver_batch(h_, queue_id, packets.data(), packets.size());
    }
    /// ndisshm_hub_deliver_copy_batch: the copy path through host queue `host_queue_id`.
    size_t deliver_copy_batch(uint32_t host_queue_id, uint32_t guest_queue_id,
                              std::span<const ndisshm_hub_packet> packets) {
        return ndisshm_hub_deliver_copy_batch(h_, host_queue_id, guest_queue_id, packets.data(), packets.size());
    }

    /// ndisshm_hub_host_queue_create: a queue no guest owns (host memory). After start.
    /// @return NDIS_STATUS_SUCCESS, INVALID_PARAMETER for a bad or taken id, or the failing call's status.
    [[nodiscard]] NDIS_STATUS create_host_queue(uint32_t queue_id, const ndisshm_queue_params* params = nullptr) {
        return ndisshm_hub_host_queue_create(h_, queue_id, params);
    }
    /// ndisshm_hub_host_queue_free. @return INVALID_PARAMETER if unknown.
    NDIS_STATUS free_host_queue(uint32_t queue_id) { return ndisshm_hub_host_queue_free(h_, queue_id); }

    /// The running guests, by queue id, all of them.
    std::vector<ndisshm_hub_guest_info> guests() const { return list(&ndisshm_hub_list_guests); }
    /// Queue 0, the guests' queues and the host queues, by id, all of them.
    std::vector<ndisshm_hub_queue_info> queues() const { return list(&ndisshm_hub_list_queues); }
    ndisshm_hub_stats stats() const {
        ndisshm_hub_stats s{};
        ndisshm_hub_get_stats(h_, &s);
        return s;
    }
    /// The adapter's books (ndisshm_adapter_get_stats); zeros if unreadable.
    ndisshm_adapter_stats adapter_stats() const {
        ndisshm_adapter_stats a{};
        ndisshm_adapter_get_stats(adapter(), &a);
        return a;
    }
    /// Whether at least `count` guests are running within timeout_ms (< 0: forever).
    bool wait_guests(uint32_t count, int timeout_ms) const { return ndisshm_hub_wait_guests(h_, count, timeout_ms) != 0; }
    /// ndisshm_hub_snapshot_json: what `ndisshm stat` shows, as one JSON object.
    std::string snapshot_json() const {
        std::string s(ndisshm_hub_snapshot_json(h_, nullptr, 0) + 1, '\0');
        s.resize(std::min(s.size() - 1, ndisshm_hub_snapshot_json(h_, s.data(), s.size())));
        return s;
    }
    /// Keeps a violation for the snapshot's "verifier.recent" (ndisshm_hub_record_violation).
    void record_violation(const ndisshm_violation& v) { ndisshm_hub_record_violation(h_, &v); }

    /// ndisshm_default_socket_path.
    static std::string default_socket_path() { return snprintf_string(&ndisshm_default_socket_path); }
    /// ndisshm_control_path_for: the control socket that goes with a guest socket.
    static std::string control_path_for(const std::string& socket_path) {
        std::string p(ndisshm_control_path_for(socket_path.c_str(), nullptr, 0) + 1, '\0');
        p.resize(ndisshm_control_path_for(socket_path.c_str(), p.data(), p.size()));
        return p;
    }
    /// ndisshm_control_query: sends `request` ("stat") to a host's control
    /// socket (or the one next to its guest socket) and returns the reply.
    /// Throws HubError with the reason and its status (<ndisshm/status.h>):
    /// no host, no answer within timeout_ms, or the request refused.
    static std::string control_query(const std::string& path, const std::string& request, int timeout_ms) {
        char error[512] = {};
        char* reply = nullptr;
        const NDIS_STATUS s = ndisshm_control_query(path.c_str(), request.c_str(), timeout_ms, &reply, error,
                                                    sizeof(error));
        if (s != NDIS_STATUS_SUCCESS) throw HubError(error, s);
        std::string r(reply);
        ndisshm_control_free(reply);
        return r;
    }

private:
    template <class Info>
    std::vector<Info> list(size_t (*fn)(const ndisshm_hub*, Info*, size_t)) const {
        std::vector<Info> v(fn(h_, nullptr, 0) + 8);
        for (;;) {
            const size_t n = fn(h_, v.data(), v.size());
            if (n <= v.size()) {
                v.resize(n);
                return v;
            }
            v.resize(n + 8);  // more came meanwhile
        }
    }
    static std::string snprintf_string(size_t (*fn)(char*, size_t)) {
        std::string s(fn(nullptr, 0) + 1, '\0');
        s.resize(fn(s.data(), s.size()));
        return s;
    }
    static void log_trampoline(void* self, const char* line) {
        try {
            static_cast<Hub*>(self)->log_(line);
        } catch (...) {
        }
    }
    static void queue_params_trampoline(void* self, uint32_t guest_id, const char* name, uint32_t queue_id,
                                        ndisshm_queue_params* params) {
        try {
            static_cast<Hub*>(self)->queue_params_(guest_id, name, queue_id, *params);
        } catch (...) {
        }
    }

    std::function<void(const std::string&)> log_;
    std::function<void(uint32_t, const std::string&, uint32_t, ndisshm_queue_params&)> queue_params_;
    ndisshm_hub* h_ = nullptr;
};

/// What a host's audited end found (HubHost::shut_down). Clean when nothing
/// was left and the verifier found nothing from start to end.
struct HubTeardown {
    uint64_t blocks_left = 0;         ///< on the adapter once the hub stopped: leaked by a driver or provider
    uint64_t bytes_left = 0;          ///< their bytes
    uint64_t memory_blocks_left = 0;  ///< in the default provider's memory once the adapter was gone
    std::vector<std::string> findings;  ///< every verifier finding of the run, "kind in call: message"
    bool clean() const { return blocks_left == 0 && bytes_left == 0 && memory_blocks_left == 0 && findings.empty(); }
};

/// A whole host: a runtime of its own with the verifier on (whatever
/// NDISSHM_VERIFIER says: the audit is the point; findings are kept and
/// logged, not printed by the runtime) and one started hub on it.
class HubHost {
public:
    /// Creates the runtime and the hub, runs `before_start` (where a queue
    /// driver attaches, e.g. ndisshm_afxdp_attach; it may throw to refuse),
    /// then starts the hub. `options.log` gets the hub's lines and each
    /// verifier finding ("verifier: kind in call: message"). `after_stop`
    /// runs between the hub's stop and its destruction, in shut_down or the
    /// destructor (where such a driver goes). Throws what failed (HubError
    /// with the library's reason); nothing is left behind then.
    explicit HubHost(const HubOptions& options, const std::function<void(Hub&)>& before_start = {},
                     std::function<void()> after_stop = {})
        : log_(options.log), after_stop_(std::move(after_stop)) {
        ndisshm_runtime_config rc;
        ndisshm_runtime_config_init(&rc);
        rc.verifier = 1;
        rc.report_to_stderr = 0;  // findings come to on_violation, and the host words them itself
        char error[512] = {};
        if (NDIS_STATUS s = ndisshm_runtime_create(&rc, &runtime_, error, sizeof(error)); s != NDIS_STATUS_SUCCESS)
            throw HubError(std::string("ndisshm_runtime_create: ") + error, s);
        ndisshm_runtime_set_violation_callback(runtime_, &HubHost::on_violation, this);
        try {
            hub_ = std::make_unique<Hub>(runtime_, options);
            if (before_start) before_start(*hub_);
            hub_->start();
        } catch (...) {
            if (hub_) hub_->stop();
            if (after_stop_) after_stop_();
            hub_.reset();
            ndisshm_runtime_destroy(runtime_);
            runtime_ = nullptr;
            throw;
        }
    }
    ~HubHost() { shut_down(); }
    HubHost(const HubHost&) = delete;
    HubHost& operator=(const HubHost&) = delete;

    /// The hub; valid until shut_down.
    Hub& hub() const { return *hub_; }
    ndisshm_runtime* runtime() const { return runtime_; }
    /// Every verifier finding so far, "kind in call: message".
    std::vector<std::string> findings() const {
        std::lock_guard lock(mu_);
        return findings_;
    }

    /// The clean end and its audit: the hub stops (guests told BYE, their
    /// buffers freed through the guest provider), after_stop runs, the
    /// adapter's books are read (anything still there is a leak), the
    /// adapter goes (the verifier reports any block left), the default
    /// provider's memory is read, the runtime goes. Once; later calls return
    /// an empty report, and hub() is gone.
    HubTeardown shut_down() {
        HubTeardown r;
        if (runtime_ == nullptr) return r;
        hub_->stop();
        if (after_stop_) after_stop_();
        const ndisshm_adapter_stats a = hub_->adapter_stats();
        r.blocks_left = a.total.blocks;
        r.bytes_left = a.total.bytes;
        {
            std::unique_ptr<Hub> gone;
            std::lock_guard lock(mu_);
            gone = std::move(hub_);  // on_violation no longer records into it
        }
        ndisshm_memory_stats m{};
        if (ndisshm_runtime_get_memory_stats(runtime_, &m) == NDIS_STATUS_SUCCESS) r.memory_blocks_left = m.blocks_in_use;
        ndisshm_runtime_destroy(runtime_);
        runtime_ = nullptr;
        r.findings = findings();
        return r;
    }

private:
    static void on_violation(void* self, const ndisshm_violation* v) {
        auto* h = static_cast<HubHost*>(self);
        const std::string line = std::string(v->kind_name) + " in " + v->call + ": " + v->message;
        {
            std::lock_guard lock(h->mu_);
            if (h->hub_) h->hub_->record_violation(*v);
            h->findings_.push_back(line);
        }
        if (h->log_) {
            try {
                h->log_("verifier: " + line);
            } catch (...) {
            }
        }
    }

    std::function<void(const std::string&)> log_;
    std::function<void()> after_stop_;
    ndisshm_runtime* runtime_ = nullptr;
    mutable std::mutex mu_;  // findings_, and hub_ against on_violation
    std::unique_ptr<Hub> hub_;
    std::vector<std::string> findings_;
};

}  // namespace ndisshm
