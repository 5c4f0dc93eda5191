// <ndisshm/hub.h>: what a hub can tell about itself (guests, queues,
// statistics, the snapshot) and the control socket's client side.
#include <climits>
#include <cstdlib>
#include <vector>

#include "api/error_buffer.hpp"
#include "hub/hub_state.hpp"

namespace {

using ndisshm::ipc::copy_out;

ndisshm_hub_queue_info queue_info(const ndisshm_hub* h, uint32_t id, uint32_t kind, uint32_t guest_id,
                                  const ndisshm::nic::VmqQueueStats& s) {
    ndisshm_hub_queue_info q{};
    q.queue_id = id;
    q.kind = kind;
    q.guest_id = guest_id;
    if (id != NDIS_DEFAULT_RECEIVE_QUEUE_ID) {
        ndisshm_queue_params p{};
        int complete = 0;
        if (ndisshm_queue_get_params(h->adapter, id, &p, &complete) == NDIS_STATUS_SUCCESS) {
            q.flags = p.flags;
            q.lookahead_size = p.lookahead_size;
        }
    }
    q.lookahead_blocks = s.lookahead_blocks;
    q.post_lookahead_blocks = s.post_lookahead_blocks;
    q.slots = s.slots;
    q.received = s.received;
    q.ring_full = s.ring_full;
    q.too_large = s.too_large;
    q.returned = s.returned;
    q.outstanding = s.outstanding;
    // A queue freed meanwhile (its guest just left) reads as empty books.
    (void)ndisshm_queue_get_stats(h->adapter, id, &q.books);
    return q;
}

std::vector<ndisshm_hub_queue_info> collect_queues(const ndisshm_hub* h) {
    std::vector<ndisshm_hub_queue_info> out;
    out.push_back(queue_info(h, NDIS_DEFAULT_RECEIVE_QUEUE_ID, NDISSHM_HUB_QUEUE_DEFAULT, 0, {}));
    if (h->hub) {
        for (const auto& g : h->hub->guests()) {
            out.push_back(queue_info(h, g.queue_id, NDISSHM_HUB_QUEUE_GUEST, g.guest_id, h->hub->miniport().stats(g.queue_id)));
            out.back().ring_size = h->hub->ring_size();
        }
    }
    {
        std::shared_lock lock(h->host_mu);
        for (const auto& [id, params] : h->host_queues)
            out.push_back(queue_info(h, id, NDISSHM_HUB_QUEUE_HOST, 0, h->host_miniport->stats(id)));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.queue_id < b.queue_id; });
    return out;
}

std::vector<ndisshm_hub_guest_info> collect_guests(const ndisshm_hub* h) {
    std::vector<ndisshm_hub_guest_info> out;
    if (!h->hub) return out;
    for (const auto& g : h->hub->guests()) {
        ndisshm_hub_guest_info i{};
        i.guest_id = g.guest_id;
        i.queue_id = g.queue_id;
        i.memory_bytes = g.memory_bytes;
        i.guest_physical_base = g.guest_physical_base;
        copy_out(g.name, i.name, sizeof(i.name));
        out.push_back(i);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.queue_id < b.queue_id; });
    return out;
}

template <class T>
size_t copy_list(const std::vector<T>& items, T* out, size_t capacity) {
    if (out != nullptr) std::copy_n(items.begin(), std::min(capacity, items.size()), out);
    return items.size();
}

}  // namespace

extern "C" {

size_t ndisshm_hub_list_guests(const ndisshm_hub* h, ndisshm_hub_guest_info* guests, size_t capacity) {
    return h == nullptr ? 0 : copy_list(collect_guests(h), guests, capacity);
}

size_t ndisshm_hub_list_queues(const ndisshm_hub* h, ndisshm_hub_queue_info* queues, size_t capacity) {
    return h == nullptr ? 0 : copy_list(collect_queues(h), queues, capacity);
}

void ndisshm_hub_get_stats(const ndisshm_hub* h, ndisshm_hub_stats* out) {
    if (out == nullptr) return;
    *out = {};
    if (h == nullptr) return;
    if (h->hub) {
        const auto s = h->hub->stats();
        out->accepted = s.accepted;
        out->running = s.running;
        out->closed = s.closed;
        out->refused = s.refused;
        out->delivered = s.delivered;
        out->dropped = s.dropped;
        out->returned = s.returned;
        out->kicks = s.kicks;
    }
    out->copied = h->copied.load(std::memory_order_relaxed);
    {
        std::shared_lock lock(h->host_mu);
        out->host_queues = h->host_queues.size();
    }
    out->control_requests = h->control ? h->control->requests() : 0;
}

int ndisshm_hub_wait_guests(const ndisshm_hub* h, uint32_t count, int timeout_ms) {
    if (h == nullptr || !h->hub) return 0;
    const auto& hub = *h->hub;
    // Ready, not merely running: the rings come last in the handshake, and a
    // caller that delivers as soon as this returns must not find them missing.
    return hub.wait_until([&] { return hub.ready_guests() >= count; }, timeout_ms < 0 ? INT_MAX : timeout_ms) ? 1 : 0;
}

}  // extern "C"

std::string ndisshm::ipc::hub_snapshot(const ndisshm_hub* h) {
    if (h == nullptr) return "{}";
    SnapshotSource s;
    s.runtime = h->runtime;
    s.adapter = h->adapter;
    s.adapter_name = h->adapter_name;
    s.socket_path = h->config.socket_path;
    s.control_path = h->control_path;
    s.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - h->created).count();
    s.running = h->started && !h->stopped && h->hub != nullptr;
    ndisshm_hub_get_stats(h, &s.stats);
    s.queues = collect_queues(h);
    s.guests = collect_guests(h);
    if (s.running) {
        // The binding exists from start to stop (GuestHub's "guest-hub").
        s.binding_name = "guest-hub";
        s.provider_description = h->hub->provider().describe();
        s.provider_stats = h->hub->provider().stats();
    }
    if (h->hub) {
        auto reasons = h->hub->closed_reasons();
        const size_t keep = std::min<size_t>(reasons.size(), 8);
        s.closed_sessions.assign(reasons.end() - static_cast<std::ptrdiff_t>(keep), reasons.end());
    }
    {
        std::lock_guard lock(h->recent_mu);
        s.recent_violations.assign(h->recent.begin(), h->recent.end());
    }
    return snapshot_json(s);
}

extern "C" {

size_t ndisshm_hub_snapshot_json(const ndisshm_hub* h, char* buffer, size_t buffer_bytes) {
    return copy_out(ndisshm::ipc::hub_snapshot(h), buffer, buffer_bytes);
}

void ndisshm_hub_record_violation(void* hub, const ndisshm_violation* v) {
    if (hub == nullptr || v == nullptr) return;
    auto* h = static_cast<ndisshm_hub*>(hub);
    std::string line = std::string(v->kind_name != nullptr ? v->kind_name : "?") + " in " +
                       (v->call != nullptr ? v->call : "?") + ": " + (v->message != nullptr ? v->message : "");
    std::lock_guard lock(h->recent_mu);
    if (h->recent.size() == ndisshm::ipc::kRecentViolations) h->recent.pop_front();
    h->recent.push_back(std::move(line));
}

size_t ndisshm_default_socket_path(char* buffer, size_t buffer_bytes) {
    return copy_out(ndisshm::ipc::default_socket_dir() + "/host.sock", buffer, buffer_bytes);
}

size_t ndisshm_control_path_for(const char* socket_path, char* buffer, size_t buffer_bytes) {
    return copy_out(ndisshm::ipc::control_path_for(socket_path != nullptr ? socket_path : ""), buffer, buffer_bytes);
}

NDIS_STATUS ndisshm_control_query(const char* path, const char* request, int timeout_ms, char** reply_out,
                                  char* error, size_t error_bytes) {
    using ndisshm::api::fail;
    if (reply_out == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "reply must not be NULL");
    *reply_out = nullptr;
    if (path == nullptr || request == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "path and request must not be NULL");
    auto reply = ndisshm::ipc::control_query(path, request, timeout_ms);
    if (!reply) return fail(error, error_bytes, NDIS_STATUS_FAILURE, reply.error().message());
    // The server's refusal is an object whose only key is "error".
    if (reply->rfind("{\"error\"", 0) == 0)
        return fail(error, error_bytes, NDIS_STATUS_NOT_SUPPORTED, "the host refused the request: " + *reply);
    char* out = static_cast<char*>(std::malloc(reply->size() + 1));
    if (out == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_RESOURCES,
                    "out of memory for a reply of " + std::to_string(reply->size()) + " bytes");
    std::memcpy(out, reply->data(), reply->size());
    out[reply->size()] = '\0';
    *reply_out = out;
    ndisshm::api::clear_error(error, error_bytes);
    return NDIS_STATUS_SUCCESS;
}

void ndisshm_control_free(char* reply) { std::free(reply); }

}  // extern "C"
