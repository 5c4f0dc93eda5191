#include "commands/stat.hpp"

#include <ndisshm/hub.hpp>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.hpp"
#include "common/self_command.hpp"
#include "common/signals.hpp"
#include "common/table.hpp"
#include "common/units.hpp"

namespace ndisshm::cli {
namespace {

using json = nlohmann::json;
using Align = Table::Align;

// A member, or null when the host's snapshot lacks it (an older or newer
// library): never the undefined behaviour of const operator[].
const json& field(const json& o, const char* k) {
    static const json null;
    if (!o.is_object()) return null;
    auto it = o.find(k);
    return it == o.end() ? null : *it;
}

std::string num(const json& v) { return v.is_number() ? v.dump() : "-"; }
std::string bytes(const json& v) { return v.is_number_unsigned() ? human_bytes(v.get<uint64_t>()) : "-"; }

// A row of a usage object (blocks, bytes, peak, allocations, frees, failures).
std::vector<std::string> usage_cells(const std::string& name, const json& u) {
    return {name,           num(field(u, "blocks")), bytes(field(u, "bytes")), num(field(u, "peak_blocks")), bytes(field(u, "peak_bytes")),
            num(field(u, "allocations")), num(field(u, "frees")), num(field(u, "failures"))};
}

Table usage_table(const std::string& first) {
    return Table({{first},
                  {"blocks", Align::Right},
                  {"bytes", Align::Right},
                  {"peak blocks", Align::Right},
                  {"peak bytes", Align::Right},
                  {"allocations", Align::Right},
                  {"frees", Align::Right},
                  {"failures", Align::Right}});
}

std::string section(const std::string& title, const Table& t) { return "\n" + title + "\n" + t.render(); }

std::string query(const StatOptions& o, std::string& error) {
    const std::string path = o.socket.empty() ? ndisshm::Hub::default_socket_path() : o.socket;
    try {
        return ndisshm::Hub::control_query(path, "stat", o.timeout_ms);
    } catch (const ndisshm::HubError& e) {
        error = e.what();
        return {};
    }
}

// Per second between two snapshots of one host, over the host's own clock
// (uptime_s), so a slow query does not bend the figure; -1 when unknown.
double per_second(const json& now, const json& before, double seconds) {
    if (!now.is_number_unsigned() || !before.is_number_unsigned() || seconds <= 0) return -1;
    const uint64_t a = now.get<uint64_t>(), b = before.get<uint64_t>();
    return a >= b ? static_cast<double>(a - b) / seconds : -1;
}

std::string rate(double per_s) { return per_s < 0 ? "-" : human_count(per_s); }

// After "no host serves PATH": how to start the host stat was looking for
// (the guest socket that goes with a control socket given).
std::string start_hint(const std::string& given) {
    std::string socket = given;
    if (socket.size() > 4 && socket.ends_with(".ctl")) socket = socket.substr(0, socket.size() - 4) + ".sock";
    return "  is a host running? start one with: " + self_command() + " host" +
           (socket.empty() ? "" : " --socket " + socket) + "\n";
}

}  // namespace

std::string render_snapshot(const std::string& text, const std::string& previous) {
    const json s = json::parse(text);
    const json before = previous.empty() ? json() : json::parse(previous);
    const double dt = before.is_object() && field(before, "uptime_s").is_number() && field(s, "uptime_s").is_number()
                          ? s.value("uptime_s", 0.0) - before.value("uptime_s", 0.0)
                          : 0;
    const bool rates = dt > 0;
    std::string out;
    const json& h = s.at("hub");
    out += "host: socket " + s.value("socket", "") + ", control " + s.value("control", "") + ", up " +
           fixed(s.value("uptime_s", 0.0), 1) + " s, library " + s.value("library", "") +
           (s.value("running", false) ? "" : " (stopped)") + "\n";
    out += "guests: " + num(field(h, "running")) + " running, " + num(field(h, "accepted")) + " connected so far, " +
           num(field(h, "closed")) + " gone (" + num(field(h, "refused")) + " refused)\n";
    out += "packets: " + num(field(h, "delivered")) + " delivered (" + num(field(h, "copied")) + " through host queues), " +
           num(field(h, "dropped")) + " dropped, " + num(field(h, "returned")) + " given back\n";
    if (rates) {
        const json& hb = field(before, "hub");
        out += "rates: " + rate(per_second(field(h, "delivered"), field(hb, "delivered"), dt)) + " packets/s delivered, " +
               rate(per_second(field(h, "dropped"), field(hb, "dropped"), dt)) + "/s dropped, " +
               rate(per_second(field(h, "returned"), field(hb, "returned"), dt)) + "/s given back (last " +
               fixed(dt, 1) + " s)\n";
    }

    Table adapters({{"adapter"}, {"provider"}, {"queues", Align::Right}, {"bindings", Align::Right},
                    {"blocks", Align::Right}, {"bytes", Align::Right}, {"peak blocks", Align::Right},
                    {"peak bytes", Align::Right}, {"failures", Align::Right}});
    Table by_usage = usage_table("adapter/usage"), by_node = usage_table("adapter/node");
    for (const json& a : s.at("adapters")) {
        const json& t = field(a, "total");
        adapters.add_row({a.value("name", ""), a.value("provider", ""), num(field(a, "queues")), num(field(a, "bindings")),
                          num(field(t, "blocks")), bytes(field(t, "bytes")), num(field(t, "peak_blocks")), bytes(field(t, "peak_bytes")),
                          num(field(t, "failures"))});
        for (const auto& [k, u] : field(a, "by_usage").items()) by_usage.add_row(usage_cells(a.value("name", "") + "/" + k, u));
        for (const auto& [k, u] : field(a, "by_node").items())
            by_node.add_row(usage_cells(a.value("name", "") + "/node " + k, u));
    }
    out += section("adapters", adapters);
    if (by_usage.rows() != 0) out += section("blocks by usage", by_usage);
    if (by_node.rows() != 0) out += section("blocks by node", by_node);

    Table providers({{"adapter"}, {"binding"}, {"description"}});
    for (const json& p : s.at("providers"))
        providers.add_row({p.value("adapter", ""), p.value("binding", ""), p.value("description", "")});
    if (providers.rows() != 0) out += section("providers", providers);

    std::vector<Table::Column> columns{{"queue", Align::Right}, {"kind"}, {"guest", Align::Right}, {"lookahead"},
                                       {"slots", Align::Right}, {"received", Align::Right}};
    if (rates) columns.push_back({"received/s", Align::Right});
    for (const char* c : {"ring full", "outstanding", "blocks", "bytes", "peak blocks", "failures"})
        columns.push_back({c, Align::Right});
    Table queues(columns);
    for (const json& q : s.at("queues")) {
        const json& b = field(q, "books");
        const std::string split = q.value("lookahead_split", false) ? "split " + num(field(q, "lookahead_size")) : "-";
        const std::string guest = q.value("guest_id", 0u) != 0 ? num(field(q, "guest_id")) : "-";
        std::vector<std::string> row{num(field(q, "id")), q.value("kind", ""), guest, split, num(field(q, "slots")),
                                     num(field(q, "received"))};
        if (rates) {
            // The same queue a refresh ago: same id and the same guest (a queue id is reused by the next guest).
            json was;
            for (const json& p : field(before, "queues"))
                if (field(p, "id") == field(q, "id") && field(p, "guest_id") == field(q, "guest_id")) was = p;
            row.push_back(rate(per_second(field(q, "received"), field(was, "received"), dt)));
        }
        for (const std::string& cell : {num(field(q, "ring_full")), num(field(q, "outstanding")), num(field(b, "blocks")),
                                        bytes(field(b, "bytes")), num(field(b, "peak_blocks")), num(field(b, "failures"))})
            row.push_back(cell);
        queues.add_row(row);
    }
    out += section("queues (adapter " + (field(s, "adapters").empty() ? std::string("?") : field(s, "adapters")[0].value("name", "")) + ")",
                   queues);

    Table guests({{"guest", Align::Right}, {"name"}, {"queue", Align::Right}, {"its memory", Align::Right}, {"base"}});
    for (const json& g : s.at("guests")) {
        char base[24];
        std::snprintf(base, sizeof(base), "0x%llx", static_cast<unsigned long long>(g.value("guest_physical_base", 0ull)));
        guests.add_row({num(field(g, "id")), g.value("name", ""), num(field(g, "queue")), bytes(field(g, "memory_bytes")), base});
    }
    if (guests.rows() != 0) out += section("guests", guests);

    const json& m = s.at("memory");
    // The runtime's own memory (NDIS's default provider, host queues); the
    // guests' memory is theirs and shows in the guests table above.
    out += "\nhost memory (NDIS's default provider; guests' memory is theirs, above): " +
           m.value("page_mode", std::string("?")) + " pages (" + bytes(field(m, "page_bytes")) + "), " +
           num(field(m, "arenas")) + " arenas, " + bytes(field(m, "bytes_in_use")) + " in " + num(field(m, "blocks_in_use")) +
           " blocks, high water " + bytes(field(m, "high_water_bytes")) + ", file " + bytes(field(m, "file_bytes")) + "\n";

    const json& v = s.at("verifier");
    out += "verifier: " + num(field(v, "total")) + " findings";
    std::string kinds;
    for (const auto& [k, n] : field(v, "by_kind").items()) kinds += (kinds.empty() ? "" : ", ") + k + " " + n.dump();
    out += kinds.empty() ? "" : " (" + kinds + ")";
    out += ", " + num(field(v, "global")) + " outside any runtime\n";
    for (const json& line : field(v, "recent")) out += "  " + line.get<std::string>() + "\n";
    if (!field(s, "sessions").empty()) {
        out += "\nsessions ended (latest last):\n";
        for (const json& line : field(s, "sessions")) out += "  " + line.get<std::string>() + "\n";
    }
    return out;
}

int run_stat(const StatOptions& o) {
    const std::atomic<bool>& stop = stop_on_signals();
    const bool tty = isatty(STDOUT_FILENO) == 1;
    std::string previous;  // the last refresh's snapshot: --watch's rates
    for (unsigned shown = 0;;) {
        std::string error;
        const std::string reply = query(o, error);
        if (reply.empty()) {
            std::fprintf(stderr, "ndisshm stat: %s\n%s", error.c_str(), shown == 0 && error.find("no host serves") != std::string::npos ? start_hint(o.socket).c_str() : "");
            return 1;
        }
        std::string text;
        try {
            // --json passes the host's reply on unchanged; one line each, so
            // --watch --json is a stream of JSON lines.
            const bool as_json = o.json || o.format == "json";
            if (as_json)
                text = json::parse(reply).dump() + "\n";
            else if (o.format == "prometheus")
                text = prometheus_text(json::parse(reply));
            else if (o.format == "openmetrics")
                text = openmetrics_text(json::parse(reply));
            else
                text = render_snapshot(reply, previous);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ndisshm stat: the host's reply is not a snapshot: %s\n", e.what());
            return 1;
        }
        // Watching on a terminal: redraw from the top, as top(1) does.
        const bool table = !o.json && o.format == "table";
        if (o.watch_s > 0 && tty && table) std::fputs("\033[H\033[2J", stdout);
        std::fputs(text.c_str(), stdout);
        if (o.watch_s > 0 && !tty && table) std::fputs("\n", stdout);
        std::fflush(stdout);
        ++shown;
        previous = reply;
        if (o.watch_s <= 0 || (o.count != 0 && shown >= o.count)) return 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.watch_s);
        while (std::chrono::steady_clock::now() < until) {
            if (stop.load()) return 0;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
}

}  // namespace ndisshm::cli
