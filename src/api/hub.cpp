// include/ndisshm/hub.h over GuestHub: the host side of guests as a C API, so
// that tools and virtual switches run a host from the public headers alone.
//
// What the hub adds to GuestHub: it owns the adapter (and so knows its name
// and runtime, which the snapshot needs), host queues with a miniport of their
// own (the copy path), the control socket, and a short memory of verifier
// messages for `ndisshm stat`. hub_state.hpp has the struct and its locks;
// api/hub_books.cpp what the hub tells about itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "hub/hub_state.hpp"
#include "ipc/ring.hpp"
#include <ndisshm/hub.h>

namespace {

using ndisshm::ipc::GuestHub;

constexpr uint32_t kMaxGuests = 1024;
// The config as it was before queue_params: callers built then pass this size.
constexpr size_t kConfigBytesBeforeQueueParams = offsetof(ndisshm_hub_config, queue_params);
// ... and before ring_size.
constexpr size_t kConfigBytesBeforeRingSize = offsetof(ndisshm_hub_config, ring_size);
// Packets per deliver_batch call: more than any ring takes at once is refused
// up front, so the per-thread span array stays small.
constexpr size_t kMaxBatch = 1024;

bool known_size(uint32_t size) {
    return size == sizeof(ndisshm_hub_config) || size == kConfigBytesBeforeQueueParams ||
           size == kConfigBytesBeforeRingSize;
}

NDIS_STATUS refuse(char* error, size_t bytes, NDIS_STATUS status, const std::string& why) {
    ndisshm::ipc::copy_out(why, error, bytes);
    return status;
}

std::string check_config(const ndisshm_hub_config& c) {
    auto out_of = [](const char* field, uint64_t v, uint64_t lo, uint64_t hi) {
        return v < lo || v > hi ? std::string(field) + " is " + std::to_string(v) + ", must be " + std::to_string(lo) +
                                      ".." + std::to_string(hi)
                                : std::string();
    };
    if (!known_size(c.struct_size)) return "struct_size is not sizeof(ndisshm_hub_config)";
    std::string why = out_of("max_guests", c.max_guests, 1, kMaxGuests);
    if (why.empty()) why = out_of("blocks_per_queue", c.blocks_per_queue, 1, 1024);
    if (why.empty()) why = out_of("block_bytes", c.block_bytes, 4096, uint64_t{1} << 30);
    if (why.empty()) why = out_of("slot_bytes", c.slot_bytes, 64, c.block_bytes);
    if (why.empty()) why = out_of("first_queue_id", c.first_queue_id, 1, UINT32_MAX - c.max_guests);
    if (why.empty() && c.lookahead_split > 1) why = "lookahead_split must be 0 or 1";
    if (why.empty() && c.lookahead_split) why = out_of("lookahead_size", c.lookahead_size, 1, c.slot_bytes);
    if (why.empty() && (c.ring_size < ndisshm::ipc::kMinHubRingSize || c.ring_size > ndisshm::ipc::kMaxRingSize ||
                        (c.ring_size & (c.ring_size - 1)) != 0))
        why = "ring_size is " + std::to_string(c.ring_size) + ", must be a power of two in " +
              std::to_string(ndisshm::ipc::kMinHubRingSize) + ".." + std::to_string(ndisshm::ipc::kMaxRingSize);
    if (why.empty() && c.reserved != 0) why = "reserved must be 0";
    if (why.empty() && (c.handshake_timeout_ms < 1 || c.handshake_timeout_ms > 3'600'000))
        why = "handshake_timeout_ms is " + std::to_string(c.handshake_timeout_ms) + ", must be 1..3600000";
    return why;
}

void fill_defaults(ndisshm_hub_config& c) {
    if (c.max_guests == 0) c.max_guests = 64;
    if (c.first_queue_id == 0) c.first_queue_id = 1;
    if (c.blocks_per_queue == 0) c.blocks_per_queue = 4;
    if (c.block_bytes == 0) c.block_bytes = 64 * 1024;
    if (c.slot_bytes == 0) c.slot_bytes = std::min<uint32_t>(2048, c.block_bytes);
    if (c.lookahead_split && c.lookahead_size == 0) c.lookahead_size = 128;
    if (c.handshake_timeout_ms == 0) c.handshake_timeout_ms = 5000;
    if (c.ring_size == 0) c.ring_size = 512;
}

}  // namespace

extern "C" {

void ndisshm_hub_config_init(ndisshm_hub_config* c) {
    if (c == nullptr) return;
    *c = {};
    c->struct_size = sizeof(*c);
    c->serve_control = 1;
    fill_defaults(*c);
}

NDIS_STATUS ndisshm_hub_create(ndisshm_runtime* runtime, const ndisshm_hub_config* config, ndisshm_hub** out,
                               char* error, size_t error_bytes) {
    if (out == nullptr || runtime == nullptr)
        return refuse(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "runtime and hub must not be NULL");
    *out = nullptr;
    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    if (config != nullptr) {
        if (!known_size(config->struct_size))
            return refuse(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER,
                          "struct_size is not sizeof(ndisshm_hub_config)");
        // Only as many bytes as the caller's struct has: the rest keep
        // config_init's values (NULL for the fields added since).
        std::memcpy(&c, config, config->struct_size);
        c.struct_size = sizeof(c);
        fill_defaults(c);
    }
    if (std::string why = check_config(c); !why.empty())
        return refuse(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "hub config: " + why);

    auto h = std::make_unique<ndisshm_hub>();
    h->runtime = runtime;
    h->adapter_name = c.adapter_name != nullptr && c.adapter_name[0] != '\0' ? c.adapter_name : "nic0";
    h->serve_control = c.serve_control != 0;
    h->log_fn = c.log;
    h->log_context = c.log_context;
    auto& g = h->config;
    g.socket_path = c.socket_path != nullptr && c.socket_path[0] != '\0' ? c.socket_path
                                                                          : ndisshm::ipc::default_socket_dir() + "/host.sock";
    g.miniport = {c.blocks_per_queue, c.block_bytes, c.slot_bytes};
    if (c.lookahead_split) g.queue_params = {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, c.lookahead_size};
    if (c.queue_params != nullptr) {
        g.choose_queue_params = [fn = c.queue_params, context = c.queue_params_context](
                                    const ndisshm::ipc::GuestInfo& guest, ndisshm_queue_params& params) {
            fn(context, guest.guest_id, guest.name.c_str(), guest.queue_id, &params);
        };
    }
    g.first_queue_id = c.first_queue_id;
    g.max_guests = c.max_guests;
    g.handshake_timeout_ms = c.handshake_timeout_ms;
    g.ring_size = c.ring_size;
    if (c.max_guest_memory_bytes != 0) g.memory_limits.max_bytes = c.max_guest_memory_bytes;
    ndisshm_hub* raw = h.get();
    g.log = [raw](const std::string& line) { raw->say(line); };
    if (NDIS_STATUS s = ndisshm_adapter_create(runtime, h->adapter_name.c_str(), &h->adapter); s != NDIS_STATUS_SUCCESS)
        return refuse(error, error_bytes, s, std::string("ndisshm_adapter_create: ") + ndisshm_status_name(s));
    *out = h.release();
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS ndisshm_hub_start(ndisshm_hub* h, char* error, size_t error_bytes) {
    if (h == nullptr) return refuse(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "hub is NULL");
    if (h->started) return refuse(error, error_bytes, NDIS_STATUS_FAILURE, "the hub was started already");
    h->started = true;
    auto hub = GuestHub::start(h->adapter, h->config);
    if (!hub) return refuse(error, error_bytes, NDIS_STATUS_FAILURE, hub.error().message());
    h->hub = std::move(*hub);
    h->host_miniport = std::make_unique<ndisshm::nic::VmqMiniport>(h->adapter, h->config.miniport);
    if (h->serve_control) {
        const std::string path = ndisshm::ipc::control_path_for(h->hub->socket_path());
        auto handler = [h](std::string_view request, bool& ok) -> std::string {
            if (request == "stat") return ndisshm::ipc::hub_snapshot(h);
            ok = false;
            return R"({"error": "unknown request; the only one is \"stat\""})";
        };
        auto control = ndisshm::ipc::ControlServer::start(path, handler, [h](const std::string& l) { h->say(l); });
        if (!control) {
            ndisshm_hub_stop(h);
            return refuse(error, error_bytes, NDIS_STATUS_FAILURE, "control socket: " + control.error().message());
        }
        h->control = std::move(*control);
        h->control_path = path;
    }
    return NDIS_STATUS_SUCCESS;
}

void ndisshm_hub_stop(ndisshm_hub* h) {
    if (h == nullptr || h->stopped || !h->started) return;
    h->stopped = true;
    // The control socket first: nothing reads the books while they are torn down.
    if (h->control) h->control->stop();
    {
        // Host queues' buffers before the binding goes, so they are freed
        // through the guest provider that gave them, with no violation.
        std::unique_lock lock(h->host_mu);
        for (const auto& [id, params] : h->host_queues) {
            h->host_miniport->stop_queue(id);
            ndisshm_queue_free(h->adapter, id);
        }
        h->host_queues.clear();
    }
    if (h->hub) h->hub->stop();
}

void ndisshm_hub_destroy(ndisshm_hub* h) {
    if (h == nullptr) return;
    ndisshm_hub_stop(h);
    h->control.reset();
    h->host_miniport.reset();
    h->hub.reset();
    ndisshm_adapter_destroy(h->adapter);
    delete h;
}

NDIS_HANDLE ndisshm_hub_adapter(const ndisshm_hub* h) { return h == nullptr ? nullptr : h->adapter; }
const char* ndisshm_hub_socket_path(const ndisshm_hub* h) { return h == nullptr ? "" : h->config.socket_path.c_str(); }
const char* ndisshm_hub_control_path(const ndisshm_hub* h) { return h == nullptr ? "" : h->control_path.c_str(); }

ndisshm_hub_delivery ndisshm_hub_deliver(ndisshm_hub* h, uint32_t queue_id, const void* data, uint32_t length) {
    if (h == nullptr || !h->hub || data == nullptr) return NDISSHM_HUB_NO_GUEST;
    switch (h->hub->deliver(queue_id, {static_cast<const std::byte*>(data), length})) {
        case ndisshm::ipc::Delivery::Delivered: return NDISSHM_HUB_DELIVERED;
        case ndisshm::ipc::Delivery::Dropped: return NDISSHM_HUB_DROPPED;
        case ndisshm::ipc::Delivery::NoGuest: break;
    }
    return NDISSHM_HUB_NO_GUEST;
}

size_t ndisshm_hub_deliver_batch(ndisshm_hub* h, uint32_t queue_id, const ndisshm_hub_packet* packets, size_t count) {
    if (h == nullptr || !h->hub || packets == nullptr || count == 0) return 0;
    count = std::min(count, kMaxBatch);
    // thread_local: the data path allocates nothing per batch.
    static thread_local std::vector<std::span<const std::byte>> spans;
    spans.clear();
    for (size_t i = 0; i < count; ++i) spans.emplace_back(static_cast<const std::byte*>(packets[i].data), packets[i].length);
    return h->hub->deliver_batch(queue_id, spans);
}

NDIS_STATUS ndisshm_hub_host_queue_create(ndisshm_hub* h, uint32_t queue_id, const ndisshm_queue_params* params) {
    if (h == nullptr || !h->hub || h->stopped || queue_id == 0 || h->guest_range(queue_id))
        return NDIS_STATUS_INVALID_PARAMETER;
    std::unique_lock lock(h->host_mu);
    if (h->host_queues.count(queue_id) != 0) return NDIS_STATUS_INVALID_PARAMETER;
    const ndisshm_queue_params p = params != nullptr ? *params : ndisshm_queue_params{sizeof(ndisshm_queue_params), 0, 0};
    // The VMQ life cycle as for a guest's queue, but assigned to nobody: the
    // guest provider serves its buffers from host memory.
    // The switch's binding allocates it, so it owns the queue and its
    // provider (the guest provider, host memory here) serves it.
    if (NDIS_STATUS s = ndisshm_queue_allocate(h->hub->binding(), queue_id, &p); s != NDIS_STATUS_SUCCESS) return s;
    NDIS_STATUS s = ndisshm_queue_allocation_complete(h->adapter, queue_id);
    std::string why;
    if (s == NDIS_STATUS_SUCCESS) s = h->host_miniport->start_queue(queue_id, &why);
    if (s != NDIS_STATUS_SUCCESS) {
        h->say("host queue " + std::to_string(queue_id) + ": " + ndisshm_status_name(s) + (why.empty() ? "" : ": " + why));
        ndisshm_queue_free(h->adapter, queue_id);
        return s;
    }
    h->host_queues.emplace(queue_id, p);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS ndisshm_hub_host_queue_free(ndisshm_hub* h, uint32_t queue_id) {
    if (h == nullptr) return NDIS_STATUS_INVALID_PARAMETER;
    std::unique_lock lock(h->host_mu);
    if (h->host_queues.erase(queue_id) == 0) return NDIS_STATUS_INVALID_PARAMETER;
    h->host_miniport->stop_queue(queue_id);  // every buffer, then the queue: no violation
    return ndisshm_queue_free(h->adapter, queue_id);
}

size_t ndisshm_hub_deliver_copy_batch(ndisshm_hub* h, uint32_t host_queue_id, uint32_t guest_queue_id,
                                      const ndisshm_hub_packet* packets, size_t count) {
    if (h == nullptr || !h->hub || packets == nullptr || count == 0) return 0;
    count = std::min(count, kMaxBatch);
    std::shared_lock lock(h->host_mu);
    if (h->host_queues.count(host_queue_id) == 0) return 0;
    static thread_local std::vector<ndisshm::nic::RxDescriptor> held;
    static thread_local std::vector<std::span<const std::byte>> spans;
    static thread_local std::vector<std::byte> joined;  // split packets made whole again
    held.clear();
    spans.clear();
    static thread_local std::vector<std::span<const std::byte>> in;
    in.clear();
    for (size_t i = 0; i < count; ++i) in.emplace_back(static_cast<const std::byte*>(packets[i].data), packets[i].length);
    // The NIC's write into host memory...
    h->host_miniport->receive_batch(host_queue_id, in, SIZE_MAX, held);
    if (held.empty()) return 0;
    const auto blocks = h->host_miniport->blocks(host_queue_id);
    auto at = [&](uint64_t handle, uint32_t offset) {
        auto b =
            std::find_if(blocks.begin(), blocks.end(), [&](const auto& x) { return x.handle == handle; });
        return b->address + offset;
    };
    // A packet split on the host queue is joined (the copy path copies
    // anyway); sized first, so the spans into `joined` stay valid.
    size_t split_bytes = 0;
    for (const auto& d : held)
        if (d.segments > 1) split_bytes += d.packet_length();
    joined.resize(std::max(joined.size(), split_bytes));
    size_t used = 0;
    for (const auto& d : held) {
        if (d.segments == 1) {
            spans.emplace_back(at(d.handle, d.offset), d.length);
            continue;
        }
        std::byte* whole = joined.data() + used;
        std::memcpy(whole, at(d.handle, d.offset), d.length);
        std::memcpy(whole + d.length, at(d.next.handle, d.next.offset), d.next.length);
        spans.emplace_back(whole, d.packet_length());
        used += d.packet_length();
    }
    // ... then the host's copy into the guest's buffer, and the host slots go back.
    const size_t delivered = h->hub->deliver_batch(guest_queue_id, spans);
    h->host_miniport->give_back_batch(host_queue_id, held);
    h->copied.fetch_add(delivered, std::memory_order_relaxed);
    return delivered;
}

}  // extern "C"
