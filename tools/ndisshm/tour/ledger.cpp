#include "tour/ledger.hpp"

#include <algorithm>

namespace ndisshm::cli {

template <class Fn>
void Ledger::each_level(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue,
                        NDIS_SHARED_MEMORY_USAGE usage, Fn fn) {
    const auto q = static_cast<int64_t>(queue);
    const auto u = static_cast<int>(usage);
    fn(tallies_[Key{adapter, q, u}]);
    fn(tallies_[Key{adapter, q, kAnyUsage}]);
    fn(tallies_[Key{adapter, kAnyQueue, u}]);
    fn(tallies_[Key{adapter, kAnyQueue, kAnyUsage}]);
}

void Ledger::on_allocate(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue,
                         NDIS_SHARED_MEMORY_USAGE usage, ULONG length, const std::string& provider) {
    providers_[Key{adapter, queue, usage}] = provider;
    each_level(adapter, queue, usage, [&](Tally& t) {
        ++t.allocations;
        t.bytes += length;
        ++t.live_blocks;
        t.live_bytes += length;
        t.peak_blocks = std::max(t.peak_blocks, t.live_blocks);
        t.peak_bytes = std::max(t.peak_bytes, t.live_bytes);
    });
}

void Ledger::on_free(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                     ULONG length) {
    each_level(adapter, queue, usage, [&](Tally& t) {
        ++t.frees;
        --t.live_blocks;
        t.live_bytes -= length;
    });
}

void Ledger::on_failure(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue,
                        NDIS_SHARED_MEMORY_USAGE usage) {
    each_level(adapter, queue, usage, [](Tally& t) { ++t.failures; });
}

Tally Ledger::at(const std::string& adapter, int64_t queue, int usage) const {
    auto it = tallies_.find(Key{adapter, queue, usage});
    return it != tallies_.end() ? it->second : Tally{};
}

std::vector<LedgerRow> Ledger::rows() const {
    std::vector<LedgerRow> out;
    for (const auto& [key, tally] : tallies_) {
        const auto& [adapter, queue, usage] = key;
        if (queue == kAnyQueue || usage == kAnyUsage) continue;
        auto p = providers_.find(key);
        out.push_back({adapter, static_cast<NDIS_RECEIVE_QUEUE_ID>(queue),
                       static_cast<NDIS_SHARED_MEMORY_USAGE>(usage),
                       p != providers_.end() ? p->second : std::string(), tally});
    }
    return out;
}

uint64_t Ledger::outstanding() const {
    uint64_t n = 0;
    for (const auto& [key, tally] : tallies_)
        if (std::get<1>(key) == kAnyQueue && std::get<2>(key) == kAnyUsage) n += tally.live_blocks;
    return n;
}

std::vector<std::string> Ledger::compare(const ndisshm_usage_stats& runtime, const Tally& driver) {
    std::vector<std::string> out;
    auto figure = [&](const char* name, uint64_t r, uint64_t d) {
        if (r != d)
            out.push_back(std::string(name) + ": runtime " + std::to_string(r) + ", driver " +
                          std::to_string(d));
    };
    figure("blocks", runtime.blocks, driver.live_blocks);
    figure("bytes", runtime.bytes, driver.live_bytes);
    figure("peak_blocks", runtime.peak_blocks, driver.peak_blocks);
    figure("peak_bytes", runtime.peak_bytes, driver.peak_bytes);
    figure("allocations", runtime.allocations, driver.allocations);
    figure("frees", runtime.frees, driver.frees);
    figure("failures", runtime.failures, driver.failures);
    return out;
}

}  // namespace ndisshm::cli
