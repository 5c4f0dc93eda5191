#include "metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cstdio>
#include <exception>
#include <map>
#include <sstream>

namespace ndisshm::cli {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Families by name, in the order first met, so that every sample of one
// family lands in it whichever part of the snapshot it came from.
class Families {
public:
    void add(const std::string& name, MetricType type, const std::string& help, Labels labels, double value) {
        auto it = index_.find(name);
        if (it == index_.end()) {
            it = index_.emplace(name, out_.size()).first;
            MetricFamily f;
            f.name = name;
            f.help = help;
            f.type = type;
            out_.push_back(std::move(f));
        }
        ClientMetric m;
        m.label = std::move(labels);
        if (type == MetricType::Counter)
            m.counter.value = value;
        else
            m.gauge.value = value;
        out_[it->second].metric.push_back(std::move(m));
    }
    std::vector<MetricFamily> take() { return std::move(out_); }

private:
    std::map<std::string, size_t> index_;
    std::vector<MetricFamily> out_;
};

bool number(const nlohmann::json& j, const char* key, double* out) {
    if (!j.is_object()) return false;
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return false;
    *out = it->get<double>();
    return true;
}

void counter(Families& f, const nlohmann::json& j, const char* key, const std::string& name, const std::string& help,
             const Labels& labels = {}) {
    double v;
    if (number(j, key, &v)) f.add(name, MetricType::Counter, help, labels, v);
}

void gauge(Families& f, const nlohmann::json& j, const char* key, const std::string& name, const std::string& help,
           const Labels& labels = {}) {
    double v;
    if (number(j, key, &v)) f.add(name, MetricType::Gauge, help, labels, v);
}

// A USAGE object of the snapshot (blocks, bytes, peaks, allocations, frees,
// failures) under `prefix`.
void books(Families& f, const nlohmann::json& u, const std::string& prefix, const std::string& whose,
           const Labels& labels) {
    gauge(f, u, "blocks", prefix + "_blocks", "Shared memory blocks outstanding " + whose, labels);
    gauge(f, u, "bytes", prefix + "_bytes", "Bytes of shared memory outstanding " + whose, labels);
    gauge(f, u, "peak_blocks", prefix + "_peak_blocks", "Most blocks ever outstanding at once " + whose, labels);
    gauge(f, u, "peak_bytes", prefix + "_peak_bytes", "Most bytes ever outstanding at once " + whose, labels);
    counter(f, u, "allocations", prefix + "_allocations_total", "NdisAllocateSharedMemory calls that succeeded " + whose,
            labels);
    counter(f, u, "frees", prefix + "_frees_total", "Blocks freed " + whose, labels);
    counter(f, u, "failures", prefix + "_allocation_failures_total",
            "NdisAllocateSharedMemory calls that failed " + whose, labels);
}

std::string text(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return {};
    auto it = j.find(key);
    if (it == j.end()) return {};
    if (it->is_string()) return it->get<std::string>();
    return it->dump();
}

class SnapshotCollectable final : public prometheus::Collectable {
public:
    explicit SnapshotCollectable(std::function<nlohmann::json()> snapshot) : snapshot_(std::move(snapshot)) {}
    std::vector<MetricFamily> Collect() const override {
        try {
            return metrics_from_snapshot(snapshot_());
        } catch (const std::exception&) {
            return {};  // a snapshot that cannot be had or read: an empty scrape, not a dead server
        }
    }

private:
    std::function<nlohmann::json()> snapshot_;
};

}  // namespace

std::vector<MetricFamily> metrics_from_snapshot(const nlohmann::json& s) {
    Families f;
    gauge(f, s, "uptime_s", "ndisshm_uptime_seconds", "Seconds since the host started");
    double running = 0;
    if (s.contains("running") && s["running"].is_boolean()) {
        running = s["running"].get<bool>() ? 1 : 0;
        f.add("ndisshm_running", MetricType::Gauge, "1 while the host serves guests", {}, running);
    }

    const nlohmann::json hub = s.value("hub", nlohmann::json::object());
    counter(f, hub, "accepted", "ndisshm_guests_accepted_total", "Guest sessions accepted");
    gauge(f, hub, "running", "ndisshm_guests", "Guest sessions running now");
    counter(f, hub, "closed", "ndisshm_guests_closed_total", "Guest sessions that ended");
    counter(f, hub, "refused", "ndisshm_guests_refused_total", "Guest connections refused");
    counter(f, hub, "delivered", "ndisshm_packets_delivered_total", "Packets written into guests' memory (zero copy)");
    counter(f, hub, "dropped", "ndisshm_packets_dropped_total",
            "Packets the hub did not deliver (the guest's ring or buffers full, its rings not yet attached, too "
            "large); a sender may offer them again");
    counter(f, hub, "returned", "ndisshm_packets_returned_total", "Packets the guests gave back");
    counter(f, hub, "copied", "ndisshm_packets_copied_total", "Packets delivered through host memory and copied");
    gauge(f, hub, "host_queues", "ndisshm_host_queues", "Queues in host memory (the copy path)");
    counter(f, hub, "control_requests", "ndisshm_control_requests_total", "Requests served on the control socket");
    counter(f, hub, "kicks", "ndisshm_guest_kicks_total",
            "Eventfd writes that woke a sleeping guest (need-wakeup); none under load");

    for (const auto& a : s.value("adapters", nlohmann::json::array())) {
        const Labels l{{"adapter", text(a, "name")}};
        gauge(f, a, "queues", "ndisshm_adapter_queues", "Receive queues of the adapter", l);
        gauge(f, a, "bindings", "ndisshm_adapter_bindings", "Provider bindings of the adapter", l);
        gauge(f, a, "limit_bytes", "ndisshm_adapter_limit_bytes", "The adapter's cap on outstanding bytes (0: none)",
              l);
        if (a.contains("total")) books(f, a["total"], "ndisshm_adapter", "on the adapter", l);
        // Named, not iterated as value(...).items(): the range-for would keep
        // only items()'s proxy alive, not the JSON it walks (C++20).
        const nlohmann::json by_usage = a.value("by_usage", nlohmann::json::object());
        const nlohmann::json by_node = a.value("by_node", nlohmann::json::object());
        for (const auto& [usage, u] : by_usage.items())
            books(f, u, "ndisshm_adapter_usage", "on the adapter, by NDIS_SHARED_MEMORY_USAGE",
                  {{"adapter", text(a, "name")}, {"usage", usage}});
        for (const auto& [node, u] : by_node.items())
            books(f, u, "ndisshm_adapter_node", "on the adapter, by NUMA node", {{"adapter", text(a, "name")}, {"node", node}});
    }

    for (const auto& q : s.value("queues", nlohmann::json::array())) {
        const Labels l{{"adapter", text(q, "adapter")},
                       {"queue", text(q, "id")},
                       {"kind", text(q, "kind")},
                       {"guest", text(q, "guest_id")}};
        counter(f, q, "received", "ndisshm_queue_packets_received_total", "Packets delivered on the queue", l);
        counter(f, q, "returned", "ndisshm_queue_packets_returned_total", "Packets of the queue given back", l);
        gauge(f, q, "outstanding", "ndisshm_queue_packets_outstanding", "Packets of the queue not given back yet", l);
        gauge(f, q, "slots", "ndisshm_queue_slots", "Receive slots of the queue", l);
        gauge(f, q, "ring_size", "ndisshm_queue_ring_entries", "Entries of a guest queue's receive and completion rings", l);
        Labels full = l, large = l;
        full.push_back({"reason", "ring_full"});
        large.push_back({"reason", "too_large"});
        counter(f, q, "ring_full", "ndisshm_queue_packets_dropped_total", "Packets of the queue dropped, by reason", full);
        counter(f, q, "too_large", "ndisshm_queue_packets_dropped_total", "Packets of the queue dropped, by reason", large);
        if (q.contains("books")) books(f, q["books"], "ndisshm_queue", "on the queue", l);
    }

    for (const auto& g : s.value("guests", nlohmann::json::array())) {
        const Labels l{{"guest", text(g, "id")}, {"name", text(g, "name")}, {"queue", text(g, "queue")}};
        gauge(f, g, "memory_bytes", "ndisshm_guest_memory_bytes", "Bytes of memory the guest handed over", l);
    }

    for (const auto& p : s.value("providers", nlohmann::json::array())) {
        const Labels l{{"adapter", text(p, "adapter")}, {"binding", text(p, "binding")}};
        gauge(f, p, "guest_blocks", "ndisshm_provider_guest_blocks", "Blocks the provider carved out of guests' memory", l);
        gauge(f, p, "host_blocks", "ndisshm_provider_host_blocks", "Blocks the provider gave from host memory", l);
        counter(f, p, "refused_frees", "ndisshm_provider_refused_frees_total", "Frees the provider refused", l);
    }

    const nlohmann::json m = s.value("memory", nlohmann::json::object());
    gauge(f, m, "reserved_bytes", "ndisshm_memory_reserved_bytes", "Address space reserved for host memory arenas");
    gauge(f, m, "file_bytes", "ndisshm_memory_committed_bytes", "Bytes committed under host memory arenas");
    gauge(f, m, "bytes_in_use", "ndisshm_memory_in_use_bytes", "Bytes of host memory (NDIS's own) handed out now");
    gauge(f, m, "blocks_in_use", "ndisshm_memory_in_use_blocks", "Blocks of host memory (NDIS's own) handed out now");
    gauge(f, m, "high_water_bytes", "ndisshm_memory_high_water_bytes", "Most host memory ever handed out at once");
    gauge(f, m, "arenas", "ndisshm_memory_arenas", "Host memory arenas");
    gauge(f, m, "page_bytes", "ndisshm_memory_page_bytes", "Page size of host memory arenas");
    counter(f, m, "zeroed_by_memset_bytes", "ndisshm_memory_zeroed_bytes_total",
            "Bytes of host memory zeroed before reuse, by how", {{"how", "memset"}});
    counter(f, m, "zeroed_by_release_bytes", "ndisshm_memory_zeroed_bytes_total",
            "Bytes of host memory zeroed before reuse, by how", {{"how", "release"}});
    counter(f, m, "zeroed_ahead_bytes", "ndisshm_memory_zeroed_bytes_total",
            "Bytes of host memory zeroed before reuse, by how", {{"how", "ahead"}});
    counter(f, m, "owner_reuses", "ndisshm_memory_owner_reuses_total",
            "Allocations given back a block their own adapter freed, not cleared");
    counter(f, m, "served_pre_zeroed", "ndisshm_memory_served_pre_zeroed_total",
            "Allocations served by a block the background zeroer had cleared");
    gauge(f, m, "zero_ahead", "ndisshm_memory_zero_ahead", "1 while the background zeroer runs");
    counter(f, m, "cache_hits", "ndisshm_memory_cache_hits_total", "Allocations served from a per-CPU cache");
    counter(f, m, "cache_misses", "ndisshm_memory_cache_misses_total", "Allocations that missed the per-CPU cache");

    const nlohmann::json v = s.value("verifier", nlohmann::json::object());
    const nlohmann::json by_kind = v.value("by_kind", nlohmann::json::object());  // named: as by_usage above
    for (const auto& [kind, n] : by_kind.items())
        if (n.is_number())
            f.add("ndisshm_verifier_findings_total", MetricType::Counter, "Verifier findings, by kind",
                  {{"kind", kind}}, n.get<double>());
    counter(f, v, "global", "ndisshm_verifier_unattributed_findings_total",
            "Verifier findings no runtime could be named for (garbage handles, IRQL misuse)");
    return f.take();
}

std::string prometheus_text(const nlohmann::json& snapshot) {
    return prometheus::TextSerializer().Serialize(metrics_from_snapshot(snapshot));
}

std::string openmetrics_text(const nlohmann::json& snapshot) {
    std::ostringstream out;
    auto escape = [](const std::string& v) {
        std::string e;
        for (char c : v) {
            if (c == '\\' || c == '"') e += '\\';
            if (c == '\n') {
                e += "\\n";
                continue;
            }
            e += c;
        }
        return e;
    };
    char num[64];
    for (const MetricFamily& fam : metrics_from_snapshot(snapshot)) {
        const bool is_counter = fam.type == MetricType::Counter;
        std::string family = fam.name;
        if (is_counter && family.size() > 6 && family.compare(family.size() - 6, 6, "_total") == 0)
            family.resize(family.size() - 6);
        out << "# TYPE " << family << (is_counter ? " counter" : " gauge") << '\n';
        out << "# HELP " << family << ' ' << fam.help << '\n';
        for (const ClientMetric& m : fam.metric) {
            out << family << (is_counter ? "_total" : "");
            if (!m.label.empty()) {
                out << '{';
                for (size_t i = 0; i < m.label.size(); ++i)
                    out << (i ? "," : "") << m.label[i].name << "=\"" << escape(m.label[i].value) << '"';
                out << '}';
            }
            std::snprintf(num, sizeof(num), "%.17g", is_counter ? m.counter.value : m.gauge.value);
            out << ' ' << num << '\n';
        }
    }
    out << "# EOF\n";
    return out.str();
}

struct MetricsServer::State {
    std::unique_ptr<prometheus::Exposer> exposer;
    std::shared_ptr<SnapshotCollectable> collectable;
};

MetricsServer::MetricsServer(std::unique_ptr<State> state) : state_(std::move(state)) {}
MetricsServer::~MetricsServer() = default;

std::unique_ptr<MetricsServer> MetricsServer::start(const std::string& listen, std::function<nlohmann::json()> snapshot,
                                                    std::string* error) {
    auto state = std::make_unique<State>();
    try {
        state->exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
    } catch (const std::exception& e) {
        *error = "cannot serve metrics on " + listen + ": " + e.what() +
                 " (is the address ADDR:PORT, and the port free? port 0 picks a free one)";
        return nullptr;
    }
    state->collectable = std::make_shared<SnapshotCollectable>(std::move(snapshot));
    state->exposer->RegisterCollectable(state->collectable, "/metrics");
    return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(state)));
}

int MetricsServer::port() const {
    const auto ports = state_->exposer->GetListeningPorts();
    return ports.empty() ? 0 : ports.front();
}

}  // namespace ndisshm::cli
