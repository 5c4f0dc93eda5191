// The state snapshot served on the control socket: one JSON object built from
// the public books (ndisshm_adapter_get_stats, ndisshm_queue_get_stats,
// ndisshm_runtime_get_memory_stats, violation counts) and what the hub knows.
//
// JSON is written by hand here rather than with nlohmann-json: the library
// links no JSON package (its static archive's consumers would have to find
// one too), and the output is a fixed shape of numbers and a few strings.
#include <cstdio>
#include <string>

#include "hub/control.hpp"

namespace ndisshm::ipc {
namespace {

const char* kind_name(int kind) {
    // The verifier's names (core/verifier.cpp), which this layer may not include.
    static const char* const names[] = {"",
                                        "bad-handle",
                                        "bad-parameters",
                                        "bad-length",
                                        "sg-buffer-too-short",
                                        "double-free",
                                        "wrong-adapter",
                                        "garbage-handle",
                                        "irql",
                                        "provider-no-context",
                                        "provider-bad-result",
                                        "bad-registration",
                                        "leak",
                                        "queue-freed-with-blocks",
                                        "binding-detached-with-blocks",
                                        "lenient"};
    static_assert(sizeof(names) / sizeof(names[0]) == NDISSHM_VIOLATION_KIND_COUNT);
    return kind > 0 && kind < NDISSHM_VIOLATION_KIND_COUNT ? names[kind] : "unknown";
}

const char* queue_kind_name(uint32_t kind) {
    switch (kind) {
        case NDISSHM_HUB_QUEUE_GUEST: return "guest";
        case NDISSHM_HUB_QUEUE_HOST: return "host";
        default: return "default";
    }
}

// A writer for one JSON document: objects and arrays nest, commas and
// escaping are its business, not the caller's.
class Json {
public:
    Json& open(char bracket) {
        comma();
        out_ += bracket;
        first_ = true;
        return *this;
    }
    Json& close(char bracket) {
        out_ += bracket;
        first_ = false;
        return *this;
    }
    Json& key(const char* k) {
        comma();
        string(k);
        out_ += ": ";
        first_ = true;  // the value that follows takes no comma
        return *this;
    }
    Json& value(uint64_t v) {
        comma();
        out_ += std::to_string(v);
        return *this;
    }
    Json& value(double v) {
        comma();
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.3f", v);
        out_ += buf;
        return *this;
    }
    Json& value(bool v) {
        comma();
        out_ += v ? "true" : "false";
        return *this;
    }
    Json& value(const std::string& v) {
        comma();
        string(v);
        return *this;
    }
    template <class T>
    Json& field(const char* k, const T& v) {
        return key(k).value(v);
    }
    Json& field(const char* k, const char* v) { return key(k).value(std::string(v)); }
    Json& field(const char* k, uint32_t v) { return key(k).value(uint64_t{v}); }
    Json& field(const char* k, int32_t v) { return key(k).value(static_cast<uint64_t>(v < 0 ? 0 : v)); }
    std::string take() { return std::move(out_); }

private:
    void comma() {
        if (!first_) out_ += ", ";
        first_ = false;
    }
    void string(const std::string& s) {
        out_ += '"';
        for (unsigned char c : s) {
            if (c == '"' || c == '\\') {
                out_ += '\\';
                out_ += static_cast<char>(c);
            } else if (c < 0x20 || c == 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                out_ += buf;
            } else {
                out_ += static_cast<char>(c);  // UTF-8 passes through
            }
        }
        out_ += '"';
    }

    std::string out_;
    bool first_ = true;
};

void usage(Json& j, const char* k, const ndisshm_usage_stats& u) {
    j.key(k).open('{');
    j.field("blocks", u.blocks).field("bytes", u.bytes).field("peak_blocks", u.peak_blocks);
    j.field("peak_bytes", u.peak_bytes).field("allocations", u.allocations).field("frees", u.frees);
    j.field("failures", u.failures);
    j.close('}');
}

bool used(const ndisshm_usage_stats& u) { return u.allocations != 0 || u.failures != 0 || u.blocks != 0; }

void adapter(Json& j, const SnapshotSource& src) {
    ndisshm_adapter_stats a{};
    j.open('{').field("name", src.adapter_name);
    if (src.adapter == nullptr || ndisshm_adapter_get_stats(src.adapter, &a) != NDIS_STATUS_SUCCESS) {
        j.field("error", "the adapter is gone").close('}');
        return;
    }
    j.field("provider", a.has_provider ? src.binding_name : std::string("default"));
    j.field("bindings", a.bindings).field("queues", a.queues).field("limit_bytes", a.limit_bytes);
    usage(j, "total", a.total);
    // Only what was ever used: ten usages and 64 nodes of zeros hide the books.
    j.key("by_usage").open('{');
    for (uint32_t u = 0; u < NdisSharedMemoryUsageMax; ++u)
        if (used(a.by_usage[u])) usage(j, ndisshm_usage_name(static_cast<NDIS_SHARED_MEMORY_USAGE>(u)), a.by_usage[u]);
    j.close('}');
    j.key("by_node").open('{');
    for (uint32_t n = 0; n < NDISSHM_MAX_NODES; ++n)
        if (used(a.by_node[n])) usage(j, std::to_string(n).c_str(), a.by_node[n]);
    j.close('}');
    j.close('}');
}

void queues(Json& j, const SnapshotSource& src) {
    j.key("queues").open('[');
    for (const auto& q : src.queues) {
        j.open('{').field("adapter", src.adapter_name).field("id", q.queue_id).field("kind", queue_kind_name(q.kind));
        j.field("guest_id", q.guest_id);
        j.field("lookahead_split", (q.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0).field("lookahead_size", q.lookahead_size);
        j.field("lookahead_blocks", q.lookahead_blocks).field("post_lookahead_blocks", q.post_lookahead_blocks);
        j.field("ring_size", q.ring_size);
        j.field("slots", q.slots).field("received", q.received).field("ring_full", q.ring_full);
        j.field("too_large", q.too_large).field("returned", q.returned).field("outstanding", q.outstanding);
        usage(j, "books", q.books);
        j.close('}');
    }
    j.close(']');
}

void memory(Json& j, ndisshm_runtime* runtime) {
    ndisshm_memory_stats m{};
    j.key("memory").open('{');
    if (runtime == nullptr || ndisshm_runtime_get_memory_stats(runtime, &m) != NDIS_STATUS_SUCCESS) {
        j.field("error", "no memory statistics").close('}');
        return;
    }
    static const char* const pages[] = {"auto", "huge", "base"};
    static const char* const addresses[] = {"iova", "physical", "arena-offset"};
    j.field("page_mode", m.page_mode < 3 ? pages[m.page_mode] : "unknown").field("page_bytes", m.page_bytes);
    j.field("thp_advised", m.thp_advised != 0);
    j.field("address_mode", m.address_mode < 3 ? addresses[m.address_mode] : "unknown");
    j.field("arenas", m.arenas).field("numa_nodes", m.numa_nodes).field("reserved_bytes", m.reserved_bytes);
    j.field("file_bytes", m.file_bytes).field("bytes_in_use", m.bytes_in_use).field("blocks_in_use", m.blocks_in_use);
    j.field("high_water_bytes", m.high_water_bytes).field("largest_free_bytes", m.largest_free_bytes);
    j.field("zeroed_by_memset_bytes", m.zeroed_by_memset_bytes);
    j.field("zeroed_by_release_bytes", m.zeroed_by_release_bytes);
    j.field("cache_hits", m.cache_hits).field("cache_misses", m.cache_misses);
    j.field("owner_reuses", m.owner_reuses).field("zeroed_ahead_bytes", m.zeroed_ahead_bytes);
    j.field("served_pre_zeroed", m.served_pre_zeroed).field("zero_ahead", m.zero_ahead);
    j.key("node_bytes_in_use").open('{');
    for (uint32_t n = 0; n < NDISSHM_MAX_NODES; ++n)
        if (m.node_bytes_in_use[n] != 0) j.field(std::to_string(n).c_str(), m.node_bytes_in_use[n]);
    j.close('}');
    j.close('}');
}

void verifier(Json& j, const SnapshotSource& src) {
    uint64_t total = 0;
    j.key("verifier").open('{');
    j.key("by_kind").open('{');
    for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k) {
        const uint64_t n =
            src.runtime == nullptr ? 0 : ndisshm_runtime_violation_count(src.runtime, static_cast<ndisshm_violation_kind>(k));
        total += n;
        if (n != 0) j.field(kind_name(k), n);
    }
    j.close('}');
    j.field("total", total);
    // Violations no runtime could be named for (garbage handles, IRQL misuse).
    j.field("global", ndisshm_global_violation_count());
    j.key("recent").open('[');
    for (const auto& line : src.recent_violations) j.value(line);
    j.close(']');
    j.close('}');
}

}  // namespace

std::string snapshot_json(const SnapshotSource& src) {
    Json j;
    j.open('{');
    j.field("version", uint64_t{1}).field("library", ndisshm_version());
    j.field("running", src.running).field("uptime_s", src.uptime_s);
    j.field("socket", src.socket_path).field("control", src.control_path);
    const ndisshm_hub_stats& h = src.stats;
    j.key("hub").open('{');
    j.field("accepted", h.accepted).field("running", h.running).field("closed", h.closed).field("refused", h.refused);
    j.field("delivered", h.delivered).field("dropped", h.dropped).field("returned", h.returned);
    j.field("copied", h.copied).field("host_queues", h.host_queues).field("control_requests", h.control_requests);
    j.field("kicks", h.kicks);
    j.close('}');
    j.key("adapters").open('[');
    adapter(j, src);
    j.close(']');
    const providers::GuestProviderStats& p = src.provider_stats;
    j.key("providers").open('[');
    if (!src.binding_name.empty()) {
        j.open('{').field("adapter", src.adapter_name).field("binding", src.binding_name);
        j.field("description", src.provider_description).field("guests", p.guests);
        j.field("assigned_queues", p.assigned_queues).field("guest_blocks", p.guest_blocks);
        j.field("host_blocks", p.host_blocks).field("refused_frees", p.refused_frees);
        j.close('}');
    }
    j.close(']');
    queues(j, src);
    j.key("guests").open('[');
    for (const auto& g : src.guests) {
        j.open('{').field("id", g.guest_id).field("name", std::string(g.name)).field("queue", g.queue_id);
        j.field("memory_bytes", g.memory_bytes).field("guest_physical_base", g.guest_physical_base);
        j.close('}');
    }
    j.close(']');
    memory(j, src.runtime);
    verifier(j, src);
    j.key("sessions").open('[');
    for (const auto& line : src.closed_sessions) j.value(line);
    j.close(']');
    j.close('}');
    return j.take();
}

}  // namespace ndisshm::ipc
