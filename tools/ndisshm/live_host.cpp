#include "live_host.hpp"

#include <stdexcept>

namespace ndisshm::cli {

LiveHost::LiveHost(const HostConfig& config, std::function<void(const std::string&)> log)
    : log_(std::move(log)), after_stop_(config.after_stop) {
    ndisshm_runtime_config rc;
    ndisshm_runtime_config_init(&rc);
    rc.verifier = 1;
    // Findings come to on_violation, which keeps them for the audit and for
    // `ndisshm stat`, and the tool prints them in its own words.
    rc.report_to_stderr = 0;
    if (NDIS_STATUS s = ndisshm_runtime_create(&rc, &runtime_, nullptr, 0); s != NDIS_STATUS_SUCCESS)
        throw std::runtime_error(std::string("ndisshm_runtime_create: ") + ndisshm_status_name(s));
    ndisshm_runtime_set_violation_callback(runtime_, &LiveHost::on_violation, this);

    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    c.socket_path = config.socket.c_str();
    c.max_guests = config.max_guests;
    c.blocks_per_queue = config.blocks_per_queue;
    c.block_bytes = config.block_bytes;
    c.slot_bytes = config.slot_bytes;
    c.lookahead_split = config.lookahead_size != 0 && config.split_queue == 0;
    c.lookahead_size = config.lookahead_size;
    if (config.lookahead_size != 0 && config.split_queue != 0) {
        // One queue split, the others not: the hub asks us per guest.
        split_queue_ = config.split_queue;
        lookahead_size_ = config.lookahead_size;
        c.queue_params = &LiveHost::choose_queue_params;
        c.queue_params_context = this;
    }
    c.log = &LiveHost::on_log;
    c.log_context = this;
    char error[512] = {};
    NDIS_STATUS s = ndisshm_hub_create(runtime_, &c, &hub_, error, sizeof(error));
    std::string why;
    if (s == NDIS_STATUS_SUCCESS && config.before_start) why = config.before_start(hub_);
    if (s == NDIS_STATUS_SUCCESS && why.empty()) s = ndisshm_hub_start(hub_, error, sizeof(error));
    if (s != NDIS_STATUS_SUCCESS || !why.empty()) {
        if (hub_ != nullptr) ndisshm_hub_stop(hub_);
        if (after_stop_) after_stop_();
        ndisshm_hub_destroy(hub_);
        hub_ = nullptr;
        ndisshm_runtime_destroy(runtime_);
        runtime_ = nullptr;
        throw std::runtime_error(why.empty() ? std::string(error) : why);
    }
}

LiveHost::~LiveHost() {
    if (runtime_ != nullptr) shut_down();
}

void LiveHost::on_violation(void* self, const ndisshm_violation* v) {
    auto* h = static_cast<LiveHost*>(self);
    if (h->hub_ != nullptr) ndisshm_hub_record_violation(h->hub_, v);
    const std::string line = std::string(v->kind_name) + " in " + v->call + ": " + v->message;
    {
        std::lock_guard lock(h->mu_);
        h->findings_.push_back(line);
    }
    if (h->log_) h->log_("verifier: " + line);
}

void LiveHost::choose_queue_params(void* self, uint32_t, const char*, uint32_t queue_id, ndisshm_queue_params* params) {
    const auto* h = static_cast<const LiveHost*>(self);
    if (queue_id == h->split_queue_) *params = {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, h->lookahead_size_};
}

void LiveHost::on_log(void* self, const char* line) {
    auto* h = static_cast<LiveHost*>(self);
    if (h->log_) h->log_(line);
}

std::vector<std::string> LiveHost::findings() const {
    std::lock_guard lock(mu_);
    return findings_;
}

ndisshm_adapter_stats LiveHost::adapter_stats() const {
    ndisshm_adapter_stats a{};
    if (hub_ != nullptr) ndisshm_adapter_get_stats(ndisshm_hub_adapter(hub_), &a);
    return a;
}

std::vector<ndisshm_hub_queue_info> LiveHost::queues() const {
    std::vector<ndisshm_hub_queue_info> q(ndisshm_hub_list_queues(hub_, nullptr, 0) + 8);
    q.resize(std::min(q.size(), ndisshm_hub_list_queues(hub_, q.data(), q.size())));
    return q;
}

std::vector<ndisshm_hub_guest_info> LiveHost::guests() const {
    std::vector<ndisshm_hub_guest_info> g(ndisshm_hub_list_guests(hub_, nullptr, 0) + 8);
    g.resize(std::min(g.size(), ndisshm_hub_list_guests(hub_, g.data(), g.size())));
    return g;
}

TeardownReport LiveHost::shut_down() {
    TeardownReport r;
    if (runtime_ == nullptr) return r;
    ndisshm_hub_stop(hub_);
    if (after_stop_) after_stop_();  // the hub's queue driver goes once its queues are stopped
    // What is still on the adapter now would be a leak: every guest and host
    // queue's buffers were freed through the provider by stop.
    const ndisshm_adapter_stats a = adapter_stats();
    r.blocks_left = a.total.blocks;
    r.bytes_left = a.total.bytes;
    // The adapter goes (with a leak report for any block still on it).
    ndisshm_hub_destroy(hub_);
    hub_ = nullptr;
    ndisshm_memory_stats m{};
    if (ndisshm_runtime_get_memory_stats(runtime_, &m) == NDIS_STATUS_SUCCESS) r.memory_blocks_left = m.blocks_in_use;
    ndisshm_runtime_destroy(runtime_);
    runtime_ = nullptr;
    r.findings = findings();
    return r;
}

}  // namespace ndisshm::cli
