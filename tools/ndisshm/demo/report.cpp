// The live demo's summary as text (tables) and as JSON (same content; the
// JSON is what tests/cli/live_demo_test.sh asserts).
#include <nlohmann/json.hpp>

#include "common/table.hpp"
#include "common/units.hpp"
#include "demo/summary.hpp"

namespace ndisshm::cli {
namespace {

using Align = Table::Align;
using ordered = nlohmann::ordered_json;

std::string n(uint64_t v) { return std::to_string(v); }

// "split 128 (1+16)": the lookahead size, then its ReceiveLookahead and
// ReceivePostLookahead blocks.
std::string lookahead(const QueueRow& q) {
    if (!q.lookahead_split) return "-";
    return "split " + n(q.lookahead_size) + " (" + n(q.lookahead_blocks) + "+" +
           n(q.post_lookahead_blocks) + ")";
}

ordered usage_json(const ndisshm_usage_stats& u) {
    return {{"blocks", u.blocks},           {"bytes", u.bytes}, {"peak_blocks", u.peak_blocks},
            {"peak_bytes", u.peak_bytes},   {"allocations", u.allocations}, {"frees", u.frees},
            {"failures", u.failures}};
}

ordered phase_json(const PhaseRow& p) {
    return {{"packets", p.packets}, {"bytes", p.bytes},   {"seconds", p.seconds},
            {"gbps", p.gbps},       {"mpps", p.mpps},     {"host_cpu_ns_per_packet", p.cpu_ns_per_packet},
            {"retries", p.retries}};
}

}  // namespace

std::string render_live_table(const LiveSummary& s) {
    std::string out = "\n";
    Table paths({{"path"}, {"packets", Align::Right}, {"bytes", Align::Right}, {"seconds", Align::Right},
                 {"Gbit/s", Align::Right}, {"Mpps", Align::Right}, {"host ns/packet", Align::Right},
                 {"retries", Align::Right}});
    for (const PhaseRow* p : {&s.zero_copy, &s.copy})
        paths.add_row({path_name(p->path), n(p->packets), human_bytes(p->bytes), fixed(p->seconds), fixed(p->gbps),
                       fixed(p->mpps, 3), fixed(p->cpu_ns_per_packet, 0), n(p->retries)});
    out += paths.render();
    if (s.copy.packets != 0 || s.options.nic != "afxdp")
        out += "zero-copy/copy: " + fixed(s.ratio_gbps) + "x the throughput; the copy costs the host " +
               fixed(s.ratio_cpu) + "x the CPU per packet\n\n";
    else  // the AF_XDP NIC has no host queues: its comparison is bench/afxdp_bench
        out += "copy path: not run with --nic afxdp (AF_XDP against AF_PACKET and a copy: bench/afxdp_bench)\n\n";

    Table guests({{"guest"}, {"id", Align::Right}, {"queue", Align::Right}, {"sent", Align::Right},
                  {"verified", Align::Right}, {"bytes", Align::Right}, {"zero-copy Gbit/s", Align::Right},
                  {"copy Gbit/s", Align::Right}, {"drops", Align::Right}, {"lost", Align::Right},
                  {"out of order", Align::Right}, {"corrupt", Align::Right}, {"end"}});
    for (const GuestRow& g : s.guests)
        guests.add_row({g.name, n(g.guest_id), n(g.queue), n(g.sent), n(g.verified), human_bytes(g.bytes),
                        fixed(g.zero_copy_gbps), fixed(g.copy_gbps), n(g.drops), n(g.lost), n(g.out_of_order),
                        n(g.corrupt),
                        g.end.empty() ? g.how : g.end});
    out += guests.render() + "\n";

    Table queues({{"queue", Align::Right}, {"kind"}, {"path"}, {"feeds"}, {"lookahead"}, {"packets", Align::Right},
                  {"bytes", Align::Right}, {"Gbit/s", Align::Right}, {"drops", Align::Right}, {"retries", Align::Right},
                  {"blocks", Align::Right}, {"allocated", Align::Right}, {"peak", Align::Right},
                  {"failures", Align::Right}});
    for (const QueueRow& q : s.queues)
        queues.add_row({n(q.id), q.kind, q.path, q.feeds, lookahead(q), n(q.packets),
                        human_bytes(q.bytes), fixed(q.gbps), n(q.drops), n(q.retries), n(q.books.blocks),
                        human_bytes(q.books.bytes), n(q.books.peak_blocks) + " / " + human_bytes(q.books.peak_bytes),
                        n(q.books.failures)});
    out += queues.render() + "\n";

    out += "drops: " + n(s.drops) + ", lost: " + n(s.lost) + ", out of order: " + n(s.out_of_order) +
           ", corrupt: " + n(s.corrupt) + "\n";
    out += "teardown: " + n(s.teardown.blocks_left) + " blocks outstanding (" + human_bytes(s.teardown.bytes_left) +
           "), " + n(s.teardown.memory_blocks_left) + " in host memory\n";
    out += "verifier findings: " + (s.teardown.findings.empty() ? std::string("none") : n(s.teardown.findings.size())) +
           "\n";
    out += s.ok ? "demo: ok\n" : "demo: FAILED (" + n(s.problems.size()) + " problems, on stderr)\n";
    return out;
}

std::string render_live_json(const LiveSummary& s) {
    const DemoOptions& o = s.options;
    ordered j;
    j["ok"] = s.ok;
    j["problems"] = s.problems;
    j["config"] = {{"nic", o.nic},
                   {"guests", o.guests},
                   {"queues", o.queues},
                   {"packet_sizes", o.packet_sizes},
                   {"rate_pps", o.rate_pps},
                   {"duration_s", o.duration_s},
                   {"batch", o.batch},
                   {"blocks_per_queue", o.blocks_per_queue},
                   {"block_size", o.block_bytes},
                   {"slot_size", s.slot_bytes},
                   {"lookahead_size", o.lookahead_size}};
    j["socket"] = s.socket;
    j["paths"] = {{"zero_copy", phase_json(s.zero_copy)}, {"copy", phase_json(s.copy)}};
    j["ratio"] = {{"zero_copy_over_copy_gbps", s.ratio_gbps}, {"copy_over_zero_copy_host_cpu", s.ratio_cpu}};
    ordered guests = ordered::array();
    for (const GuestRow& g : s.guests)
        guests.push_back({{"name", g.name},
                          {"guest_id", g.guest_id},
                          {"queue", g.queue},
                          {"sent", g.sent},
                          {"packets", g.packets},
                          {"bytes", g.bytes},
                          {"verified", g.verified},
                          {"zero_copy_bytes", g.zero_copy_bytes},
                          {"copy_bytes", g.copy_bytes},
                          {"zero_copy_gbps", g.zero_copy_gbps},
                          {"copy_gbps", g.copy_gbps},
                          {"drops", g.drops},
                          {"lost", g.lost},
                          {"out_of_order", g.out_of_order},
                          {"corrupt", g.corrupt},
                          {"end", g.end},
                          {"exit_status", g.exit_status}});
    j["guests"] = guests;
    ordered queues = ordered::array();
    for (const QueueRow& q : s.queues)
        queues.push_back({{"id", q.id},
                          {"kind", q.kind},
                          {"path", q.path},
                          {"feeds", q.feeds},
                          {"lookahead_split", q.lookahead_split},
                          {"lookahead_size", q.lookahead_size},
                          {"lookahead_blocks", q.lookahead_blocks},
                          {"post_lookahead_blocks", q.lookahead_split ? q.post_lookahead_blocks : 0},
                          {"packets", q.packets},
                          {"bytes", q.bytes},
                          {"gbps", q.gbps},
                          {"drops", q.drops},
                          {"retries", q.retries},
                          {"slots", q.slots},
                          {"books", usage_json(q.books)}});
    j["queues"] = queues;
    j["adapter"] = usage_json(s.adapter);
    j["hub"] = {{"accepted", s.hub.accepted}, {"running", s.hub.running},   {"closed", s.hub.closed},
                {"refused", s.hub.refused},   {"delivered", s.hub.delivered}, {"copied", s.hub.copied},
                {"returned", s.hub.returned}, {"dropped", s.hub.dropped}};
    j["drops"] = s.drops;
    j["lost"] = s.lost;
    j["out_of_order"] = s.out_of_order;
    j["corrupt"] = s.corrupt;
    j["outstanding_blocks"] = s.teardown.blocks_left;
    j["outstanding_bytes"] = s.teardown.bytes_left;
    j["host_memory_blocks_left"] = s.teardown.memory_blocks_left;
    j["verifier_findings"] = s.teardown.findings;
    return j.dump(2, ' ', false, ordered::error_handler_t::replace) + "\n";
}

}  // namespace ndisshm::cli
