// `ndisshm stat`: reads a running host's books over its control socket
// (ndisshm_control_query, "stat") and shows them: adapters, providers,
// queues, guests, blocks by usage and by node, memory, verifier findings.
// Works against any host built on the library that serves the control socket
// (`ndisshm host`, `ndisshm demo`, a virtual switch on <ndisshm/hub.h>).
#pragma once

#include <string>

namespace ndisshm::cli {

struct StatOptions {
    std::string socket;      // the host's guest socket or control socket; empty: the default
    bool json = false;       // the host's JSON as it came (one line per refresh with --watch)
    std::string format = "table";  // table, json (= --json), prometheus, openmetrics
    double watch_s = 0;      // > 0: refresh every so many seconds until Ctrl-C
    unsigned count = 0;      // with --watch: stop after this many refreshes (0: never)
    int timeout_ms = 2000;   // for each query
};

// 0: shown (every refresh worked); 1: no host answered or its reply was
// unreadable (the reason on stderr).
int run_stat(const StatOptions& options);

// The text form of one snapshot (exposed for the demo's --json-less output
// and for tests); with the same host's previous snapshot (--watch), rates
// per second between the two beside the totals. Throws std::exception on a
// reply that is not a snapshot.
std::string render_snapshot(const std::string& json, const std::string& previous = {});

}  // namespace ndisshm::cli
