// A running host's books and data path as Prometheus metrics, made from its
// snapshot (ndisshm_hub_snapshot_json; docs/control-socket.md), so that
// `ndisshm host --metrics-listen`, `ndisshm stat --format prometheus|openmetrics`
// and the control socket can never disagree: one source, one translation.
//
// Names follow Prometheus' conventions: an `ndisshm_` prefix, base units
// (`_bytes`, `_seconds`), counters end in `_total`, and what varies (adapter,
// queue, guest, usage, reason, kind) is a label, never part of a name.
// The HTTP side is prometheus-cpp's Exposer (Debian: prometheus-cpp-dev).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace prometheus {
struct MetricFamily;
}

namespace ndisshm::cli {

// Every metric the snapshot carries; a key the snapshot lacks (an older
// host) leaves its metric out rather than report a made-up zero.
std::vector<prometheus::MetricFamily> metrics_from_snapshot(const nlohmann::json& snapshot);

// The Prometheus text exposition format (version 0.0.4), as /metrics serves it.
std::string prometheus_text(const nlohmann::json& snapshot);
// The same families in OpenMetrics 1.0 text: a counter's family is named
// without `_total` and its sample with it, and the text ends in `# EOF`.
std::string openmetrics_text(const nlohmann::json& snapshot);

// Serves /metrics over HTTP on `listen` ("ADDR:PORT"; port 0 picks a free
// one), taking a fresh snapshot through `snapshot` at each scrape (on the
// server's thread; it must be safe to call from there). Stops when destroyed.
class MetricsServer {
public:
    // nullptr with the reason in *error when it cannot listen there.
    static std::unique_ptr<MetricsServer> start(const std::string& listen, std::function<nlohmann::json()> snapshot,
                                                std::string* error);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // The port it listens on (the one picked, for port 0).
    int port() const;

private:
    struct State;
    explicit MetricsServer(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

}  // namespace ndisshm::cli
