// The API tour (`demo --api-tour`). Two adapters run the same miniport
// code: nic0 has a provider ("vswitch", support/pool_provider: the tree's one
// pool provider) registered through NdisSetOptionalHandlers, nic1 has none and gets NDIS's default provider, so
// the only difference between them is the routing. One misuse (a double free) is committed on
// purpose to show the verifier; one allocation is refused on purpose to show
// a provider's status coming back to the driver.
#include "tour/tour.hpp"

#include <cstdio>
#include <map>
#include <memory>
#include <ndisshm/ndisshm.hpp>
#include <set>

#include "tour/ledger.hpp"
#include "tour/driver.hpp"
#include "tour/report.hpp"
#include "tour/scenario.hpp"
#include "tour/violation_watch.hpp"

#include "pool_provider.hpp"

namespace ndisshm::cli {
namespace {

constexpr const char* kVswitch = "vswitch";

struct Nic {
    // Declared parents first, so members go children first.
    std::unique_ptr<ndisshm::Adapter> adapter;
    std::unique_ptr<ndisshm::ProviderBinding> binding;
    std::map<NDIS_RECEIVE_QUEUE_ID, std::unique_ptr<ndisshm::ReceiveQueue>> queues;
    std::unique_ptr<TourDriver> driver;
    AdapterReport report;
};

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return buf;
}

class Tour {
public:
    explicit Tour(const TourOptions& options)
        : options_(options),
          narration_(options.json ? stderr : stdout),
          scenario_(narration_, options.quiet),
          watch_([this](const Finding& f) { show(f); }) {}

    ~Tour() {
        // Whatever the run left, go before the watch the callbacks point at.
        nics_.clear();
        runtime_.reset();
        ndisshm_set_global_violation_callback(nullptr, nullptr);
    }

    int run();

private:
    const Workload& w() const { return options_.workload; }
    Nic& nic(size_t i) { return *nics_.at(i); }
    void show(const Finding& f);
    void compare(const ndisshm_usage_stats& runtime, const Tally& driver, const std::string& where);

    void start_runtime();
    void create_adapters();
    void register_vswitch();
    void create_queues();
    void allocate_blocks();
    void verify_blocks();
    void exhaust_pool();
    void free_queues();
    void reconcile_books();
    void detach_vswitch();
    void tear_down();

    const TourOptions& options_;
    std::FILE* narration_;
    Scenario scenario_;
    Ledger ledger_;
    ViolationWatch watch_;
    // The provider outlives the runtime: teardown may still free through it.
    std::unique_ptr<support::PoolProvider> vswitch_;
    std::unique_ptr<ndisshm::Runtime> runtime_;
    std::vector<std::unique_ptr<Nic>> nics_;
    DemoSummary summary_;
};

void Tour::show(const Finding& f) {
    if (f.on_purpose) {
        scenario_.say("caught on purpose: " + f.kind + " in " + f.call + ": " + f.message);
        return;
    }
    std::fprintf(stderr, "ndisshm demo: unexpected verifier finding: %s in %s: %s\n", f.kind.c_str(),
                 f.call.c_str(), f.message.c_str());
    scenario_.fail("unexpected verifier finding: " + f.kind + " in " + f.call);
}

void Tour::compare(const ndisshm_usage_stats& runtime, const Tally& driver, const std::string& where) {
    for (const auto& d : Ledger::compare(runtime, driver)) scenario_.fail(where + ": books disagree: " + d);
    summary_.figures_compared += Ledger::kFiguresCompared;
}

void Tour::start_runtime() {
    ndisshm::RuntimeOptions o;
    o.verifier = true;
    // Findings come to the watch and are printed as part of the story.
    o.report_to_stderr = false;
    runtime_ = std::make_unique<ndisshm::Runtime>(o);
    runtime_->on_violation([this](const ndisshm_violation& v) { watch_.on_violation(v); });
    ndisshm_set_global_violation_callback(&ViolationWatch::callback, &watch_);
    scenario_.say("verifier on; its findings come to this program instead of stderr");
}

void Tour::create_adapters() {
    for (const char* name : {"nic0", "nic1"}) {
        auto n = std::make_unique<Nic>();
        n->adapter = std::make_unique<ndisshm::Adapter>(*runtime_, name);
        n->driver = std::make_unique<TourDriver>(name, n->adapter->handle(), ledger_, scenario_);
        n->report.name = name;
        n->report.provider = "default";
        n->report.description = "default (NDIS's own provider: host memory, memfd)";
        nics_.push_back(std::move(n));
    }
    scenario_.say("nic0, nic1: miniport adapters, each with its default receive queue 0");
}

void Tour::register_vswitch() {
    // The switch serves the VMQ queues it allocates; queue 0 stays NDIS's (the Hyper-V shape).
    size_t slots = 0;
    for (const auto& b : plan_adapter(w())) slots += b.queue != NDIS_DEFAULT_RECEIVE_QUEUE_ID ? 1 : 0;
    vswitch_ = std::make_unique<support::PoolProvider>(kVswitch, slots, w().block_size);
    Nic& n = nic(0);
    n.binding = std::make_unique<ndisshm::ProviderBinding>(*n.adapter, kVswitch);
    ndisshm::check(support::register_through_ndis(*n.binding, *vswitch_), "NdisSetOptionalHandlers");
    n.report.provider = kVswitch;
    n.report.description = vswitch_->describe();
    scenario_.check(n.adapter->stats().has_provider == 1,
                    "nic0 has no provider after NdisSetOptionalHandlers");
    scenario_.check(nic(1).adapter->stats().has_provider == 0, "nic1 has a provider it was never given");
    scenario_.say("nic0: 'vswitch' registered through NdisSetOptionalHandlers (a pool of " +
                  std::to_string(slots) + " slots, one region of its own); it allocates nic0's VMQ queues, "
                  "so it serves them, and queue 0 stays NDIS's own memory");
    scenario_.say("nic1: no provider: NDIS's default provider serves it from host memory (memfd)");
}

void Tour::create_queues() {
    // nic0's queues are allocated by the switch's binding (OID_RECEIVE_FILTER_ALLOCATE_QUEUE), so they
    // are the switch's; nic1's by the miniport itself.
    for (auto& n : nics_)
        for (NDIS_RECEIVE_QUEUE_ID q = 1; q <= w().queues; ++q)
            n->queues[q] = std::make_unique<ndisshm::ReceiveQueue>(*n->adapter, q,
                                                                   n->binding ? n->binding->handle() : nullptr);
    for (NDIS_RECEIVE_QUEUE_ID q = 0; q <= w().queues && q <= 3; ++q)
        scenario_.say("queue " + std::to_string(q) + ": " + describe(layout_of(q)));
    if (w().queues > 3)
        scenario_.say("queues 4.." + std::to_string(w().queues) + ": the same three layouts in turn");
}

void Tour::allocate_blocks() {
    const auto plan = plan_adapter(w());
    for (auto& n : nics_) {
        TourDriver& d = *n->driver;
        for (const auto& b : plan) {
            const NDIS_STATUS s = d.allocate(b);
            scenario_.check(s == NDIS_STATUS_SUCCESS, d.name() + " queue " + std::to_string(b.queue) + " " +
                                                          ndisshm_usage_name(b.usage) +
                                                          ": NdisAllocateSharedMemory -> " +
                                                          ndisshm_status_name(s));
        }
        std::set<std::string> providers;
        uint64_t bytes = 0;
        for (const auto& b : d.blocks()) {
            providers.insert(b.provider);
            bytes += b.length;
            // Queue 0 is no binding's: NDIS's own memory, whatever the switch provides.
            const std::string want = b.queue == NDIS_DEFAULT_RECEIVE_QUEUE_ID ? "default" : n->report.provider;
            scenario_.check(b.provider == want, d.name() + " queue " + std::to_string(b.queue) + ": a block from '" +
                                                    b.provider + "', not from '" + want + "'");
        }
        std::string from;
        for (const auto& p : providers) from += (from.empty() ? "" : ", ") + p;
        scenario_.say(d.name() + ": " + std::to_string(d.blocks().size()) + " blocks, " + mib(bytes) +
                      ", from " + from + "; a pattern written into each");
    }
    size_t switched = 0;
    for (const auto& b : nic(0).driver->blocks()) switched += b.queue != NDIS_DEFAULT_RECEIVE_QUEUE_ID ? 1 : 0;
    scenario_.check(vswitch_->live() == switched, "the vswitch does not hold nic0's VMQ blocks");
}

void Tour::verify_blocks() {
    size_t n = 0;
    for (auto& nic : nics_) n += nic->driver->verify_patterns();
    scenario_.say(std::to_string(n) + " blocks read back: each holds its own pattern, no two overlap");
}

void Tour::exhaust_pool() {
    const NDIS_STATUS s = nic(0).driver->allocate({1, NdisSharedMemoryUsageReceive, w().block_size});
    scenario_.check(s == NDIS_STATUS_RESOURCES, std::string("one block more than the vswitch pool holds: ") +
                                                    ndisshm_status_name(s) +
                                                    ", expected NDIS_STATUS_RESOURCES");
    scenario_.say(
        std::string("refused on purpose: nic0 queue 1 asks for one block more than the vswitch pool "
                    "holds -> ") +
        ndisshm_status_name(s) + " (the provider's status, counted as a failure)");
}

void Tour::free_queues() {
    for (auto& n : nics_) {
        const std::string& name = n->driver->name();
        // The miniport frees a queue's memory before it completes the free of
        // the queue (spec section 4).
        for (NDIS_RECEIVE_QUEUE_ID q = 1; q <= w().queues; ++q) {
            auto freed = n->driver->free_queue(q);
            if (n.get() == &nic(0) && q == 1 && !freed.empty()) {
                watch_.expect(NDISSHM_VIOLATION_DOUBLE_FREE);
                NdisFreeSharedMemory(n->adapter->handle(), freed.front());
                scenario_.check(watch_.pending() == 0,
                                "the double free committed on purpose went unreported");
            }
            const ndisshm_usage_stats books = n->queues.at(q)->stats();
            n->report.queues.emplace_back(q, books);
            compare(books, ledger_.at(name, q, Ledger::kAnyUsage), name + " queue " + std::to_string(q));
            n->queues.erase(q);
        }
        // Transmit and ring blocks last, as a miniport halts.
        n->driver->free_queue(NDIS_DEFAULT_RECEIVE_QUEUE_ID);
        ndisshm_usage_stats books{};
        ndisshm::check(ndisshm_queue_get_stats(n->adapter->handle(), NDIS_DEFAULT_RECEIVE_QUEUE_ID, &books),
                       "ndisshm_queue_get_stats");
        n->report.queues.emplace(n->report.queues.begin(), NDIS_DEFAULT_RECEIVE_QUEUE_ID, books);
        compare(books, ledger_.at(name, NDIS_DEFAULT_RECEIVE_QUEUE_ID, Ledger::kAnyUsage), name + " queue 0");
        scenario_.say(name + ": every block freed, queues 1.." + std::to_string(w().queues) +
                      " freed after their blocks, queue 0's blocks last");
    }
}

void Tour::reconcile_books() {
    uint64_t outstanding = 0;
    for (auto& n : nics_) {
        const std::string& name = n->driver->name();
        const ndisshm_adapter_stats s = n->adapter->stats();
        n->report.books = s.total;
        compare(s.total, ledger_.at(name, Ledger::kAnyQueue, Ledger::kAnyUsage), name);
        for (int u = 0; u < NdisSharedMemoryUsageMax; ++u)
            compare(s.by_usage[u], ledger_.at(name, Ledger::kAnyQueue, u),
                    name + " " + ndisshm_usage_name(static_cast<NDIS_SHARED_MEMORY_USAGE>(u)));
        outstanding += s.total.blocks;
    }
    scenario_.check(outstanding == 0, "blocks still outstanding in the runtime's books");
    scenario_.check(ledger_.outstanding() == 0, "the driver still holds blocks");
    scenario_.say("the runtime's books and the driver's ledger agree on " +
                  std::to_string(summary_.figures_compared) +
                  " figures; outstanding blocks: " + std::to_string(outstanding));
}

void Tour::detach_vswitch() {
    Nic& n = nic(0);
    for (const auto& [q, c] : vswitch_->queues()) {
        const Tally t = ledger_.at(n.driver->name(), q, Ledger::kAnyUsage);
        const std::string where = "vswitch queue " + std::to_string(q) + ": ";
        scenario_.check(c.allocations == t.allocations, where + std::to_string(c.allocations) +
                                                            " blocks served, the driver got " +
                                                            std::to_string(t.allocations));
        scenario_.check(c.frees == c.allocations, where + std::to_string(c.allocations) +
                                                      " contexts given, " + std::to_string(c.frees) +
                                                      " taken back");
        scenario_.check(c.refusals == t.failures, where + std::to_string(c.refusals) +
                                                      " refusals, the driver saw " +
                                                      std::to_string(t.failures) + " failures");
    }
    scenario_.check(vswitch_->bad_frees() == 0, "NDIS freed a vswitch context twice or one it never gave");
    scenario_.check(vswitch_->live() == 0, "the vswitch still has blocks out");
    n.report.description = vswitch_->describe();
    n.binding.reset();
    scenario_.check(n.adapter->stats().has_provider == 0, "nic0 still has a provider after its binding went");
    scenario_.say(n.report.description);
    scenario_.say(
        "every vswitch context freed exactly once; binding detached, nic0 is back on the default provider");
}

void Tour::tear_down() {
    if (runtime_ != nullptr)
        scenario_.check(runtime_->violations() == watch_.findings().size(),
                        "the runtime counted " + std::to_string(runtime_->violations()) + " violations, " +
                            std::to_string(watch_.findings().size()) + " reached the callback");
    // Counted here rather than in the books step, so that a run that broke
    // early still reports what it left.
    summary_.outstanding_blocks = 0;
    for (auto& n : nics_) {
        summary_.outstanding_blocks += n->adapter->stats().total.blocks;
        summary_.adapters.push_back(n->report);
    }
    // Adapters, then the runtime: a leak would be reported here, as unexpected.
    nics_.clear();
    runtime_.reset();
    ndisshm_set_global_violation_callback(nullptr, nullptr);
    scenario_.say("adapters and runtime torn down");
}

int Tour::run() {
    if (!options_.quiet)
        std::fprintf(
            narration_,
            "ndisshm %s demo: nic0 (provider 'vswitch') and nic1 (default provider), %u VMQ queues each, "
            "%u buffers per queue, %u-byte blocks\n",
            ndisshm_version(), w().queues, w().blocks_per_queue, w().block_size);
    scenario_.step("runtime", [this] { start_runtime(); });
    scenario_.step("adapters", [this] { create_adapters(); });
    scenario_.step("provider: register vswitch on nic0", [this] { register_vswitch(); });
    scenario_.step("queues", [this] { create_queues(); });
    scenario_.step("allocate: every usage, spread over the queues", [this] { allocate_blocks(); });
    scenario_.step("read back", [this] { verify_blocks(); });
    scenario_.step("exhaust the vswitch pool on purpose", [this] { exhaust_pool(); });
    scenario_.step("free: blocks, a double free on purpose, queues", [this] { free_queues(); });
    scenario_.step("books", [this] { reconcile_books(); });
    scenario_.step("provider: detach vswitch", [this] { detach_vswitch(); });
    scenario_.cleanup("teardown", [this] { tear_down(); });
    const bool ok = scenario_.run();

    summary_.workload = w();
    summary_.rows = ledger_.rows();
    summary_.findings = watch_.findings();
    summary_.problems = scenario_.problems();
    summary_.ok = ok && watch_.pending() == 0;
    std::string out = options_.json ? render_json(summary_) : render_table(summary_);
    if (!options_.json && !options_.quiet) out.insert(0, "\n");
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    if (!summary_.ok) {
        std::fprintf(stderr, "ndisshm demo: FAILED: %zu problem(s)\n", summary_.problems.size());
        for (const auto& p : summary_.problems) std::fprintf(stderr, "  %s\n", p.c_str());
    }
    return summary_.ok ? 0 : 1;
}

}  // namespace

int run_tour(const TourOptions& options) {
    Tour tour(options);
    return tour.run();
}

}  // namespace ndisshm::cli
