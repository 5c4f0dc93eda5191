// The demo's summary, and its two forms: a plain-text table for people and
// JSON for scripts (same content; the JSON also carries the runtime's books).
#pragma once

#include <ndisshm/host.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tour/ledger.hpp"
#include "tour/violation_watch.hpp"
#include "tour/workload.hpp"

namespace ndisshm::cli {

struct AdapterReport {
    std::string name;
    std::string provider;         // the binding that provided, or "default"
    std::string description;      // the provider's own words, where it has some
    ndisshm_usage_stats books{};  // the runtime's, once every block was freed
    std::vector<std::pair<NDIS_RECEIVE_QUEUE_ID, ndisshm_usage_stats>> queues;  // each just before it went
};

struct DemoSummary {
    Workload workload;
    std::vector<LedgerRow> rows;  // the driver's ledger, per adapter, queue and usage
    std::vector<AdapterReport> adapters;
    std::vector<Finding> findings;
    uint64_t figures_compared = 0;  // runtime's books held against the ledger
    uint64_t outstanding_blocks = 0;
    std::vector<std::string> problems;
    bool ok = false;
};

std::string render_table(const DemoSummary& summary);
std::string render_json(const DemoSummary& summary);

}  // namespace ndisshm::cli
