#include "tour/report.hpp"

#include <nlohmann/json.hpp>

#include "common/table.hpp"

namespace ndisshm::cli {
namespace {

nlohmann::ordered_json books_json(const ndisshm_usage_stats& s) {
    return {{"blocks", s.blocks},           {"bytes", s.bytes},
            {"peak_blocks", s.peak_blocks}, {"peak_bytes", s.peak_bytes},
            {"allocations", s.allocations}, {"frees", s.frees},
            {"failures", s.failures}};
}

std::string finding_line(const Finding& f) {
    return std::string(f.on_purpose ? "caught on purpose: " : "UNEXPECTED: ") + f.kind + " in " + f.call +
           ": " + f.message;
}

}  // namespace

std::string render_table(const DemoSummary& s) {
    using A = Table::Align;
    Table t({{"adapter"},
             {"queue", A::Right},
             {"usage"},
             {"provider"},
             {"blocks", A::Right},
             {"bytes", A::Right},
             {"peak", A::Right},
             {"frees", A::Right},
             {"failures", A::Right}});
    for (const auto& r : s.rows)
        t.add_row({r.adapter, std::to_string(r.queue), ndisshm_usage_name(r.usage),
                   r.provider.empty() ? "-" : r.provider, std::to_string(r.tally.allocations),
                   std::to_string(r.tally.bytes), std::to_string(r.tally.peak_blocks),
                   std::to_string(r.tally.frees), std::to_string(r.tally.failures)});
    std::string out =
        "summary: blocks per adapter, queue and usage (the driver's ledger; the runtime's books agree on " +
        std::to_string(s.figures_compared) + " figures)\n";
    out += t.render();
    out += "\nproviders\n";
    for (const auto& a : s.adapters)
        out += "  " + a.name + ": " + (a.description.empty() ? a.provider : a.description) + "\n";
    size_t on_purpose = 0;
    for (const auto& f : s.findings) on_purpose += f.on_purpose ? 1 : 0;
    out += "\nverifier findings: " + std::to_string(s.findings.size()) + " (" + std::to_string(on_purpose) +
           " on purpose, " + std::to_string(s.findings.size() - on_purpose) + " unexpected)\n";
    for (const auto& f : s.findings) out += "  " + finding_line(f) + "\n";
    out += "\noutstanding blocks: " + std::to_string(s.outstanding_blocks) + "\n";
    if (!s.problems.empty()) {
        out += "\nproblems: " + std::to_string(s.problems.size()) + "\n";
        for (const auto& p : s.problems) out += "  " + p + "\n";
    }
    out += std::string("demo: ") + (s.ok ? "ok" : "FAILED") + "\n";
    return out;
}

std::string render_json(const DemoSummary& s) {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& r : s.rows)
        rows.push_back({{"adapter", r.adapter},
                        {"queue", r.queue},
                        {"usage", ndisshm_usage_name(r.usage)},
                        {"usage_value", static_cast<int>(r.usage)},
                        {"provider", r.provider},
                        {"blocks", r.tally.allocations},
                        {"bytes", r.tally.bytes},
                        {"peak", r.tally.peak_blocks},
                        {"peak_bytes", r.tally.peak_bytes},
                        {"frees", r.tally.frees},
                        {"failures", r.tally.failures}});
    nlohmann::ordered_json adapters = nlohmann::ordered_json::array();
    for (const auto& a : s.adapters) {
        nlohmann::ordered_json queues = nlohmann::ordered_json::array();
        for (const auto& [id, books] : a.queues)
            queues.push_back({{"queue", id}, {"books", books_json(books)}});
        adapters.push_back({{"name", a.name},
                            {"provider", a.provider},
                            {"description", a.description},
                            {"books", books_json(a.books)},
                            {"queues", queues}});
    }
    nlohmann::ordered_json findings = nlohmann::ordered_json::array();
    for (const auto& f : s.findings)
        findings.push_back(
            {{"kind", f.kind}, {"call", f.call}, {"message", f.message}, {"on_purpose", f.on_purpose}});
    nlohmann::ordered_json j = {
        {"ndisshm", ndisshm_version()},
        {"ok", s.ok},
        {"workload",
         {{"queues", s.workload.queues},
          {"blocks_per_queue", s.workload.blocks_per_queue},
          {"block_size", s.workload.block_size}}},
        {"outstanding_blocks", s.outstanding_blocks},
        {"findings", findings},
        {"problems", s.problems},
        {"figures_compared", s.figures_compared},
        {"rows", rows},
        {"adapters", adapters},
    };
    // Messages quote driver-supplied names; never let bad UTF-8 abort the dump.
    return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace ndisshm::cli
