// The miniport's own books: what the driver asked for and got, kept apart from
// the runtime's books so that the demo can hold one against the other. Tallies
// are kept per (adapter, queue, usage) and rolled up per queue, per usage and
// per adapter as the runtime rolls them up, peaks included (a peak cannot be
// summed from finer peaks).
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace ndisshm::cli {

struct Tally {
    uint64_t allocations = 0;  // successful
    uint64_t bytes = 0;        // requested Length of those, summed
    uint64_t frees = 0;
    uint64_t failures = 0;
    uint64_t live_blocks = 0;
    uint64_t live_bytes = 0;
    uint64_t peak_blocks = 0;
    uint64_t peak_bytes = 0;
};

struct LedgerRow {
    std::string adapter;
    NDIS_RECEIVE_QUEUE_ID queue;
    NDIS_SHARED_MEMORY_USAGE usage;
    std::string provider;  // who served the row's blocks, as the runtime named it; empty if none was served
    Tally tally;
};

class Ledger {
public:
    static constexpr int64_t kAnyQueue = -1;
    static constexpr int kAnyUsage = -1;

    void on_allocate(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                     ULONG length, const std::string& provider);
    void on_free(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                 ULONG length);
    void on_failure(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage);

    // A zero tally for keys never touched; kAnyQueue / kAnyUsage select a roll-up.
    Tally at(const std::string& adapter, int64_t queue, int usage) const;
    // The finest rows, ordered by adapter, queue, usage.
    std::vector<LedgerRow> rows() const;
    // Blocks the driver still holds, over every adapter.
    uint64_t outstanding() const;

    // Where the runtime's books and the driver's disagree, one line per figure
    // ("peak_blocks: runtime 3, driver 4"); empty when they agree.
    static std::vector<std::string> compare(const ndisshm_usage_stats& runtime, const Tally& driver);
    static constexpr int kFiguresCompared = 7;

private:
    using Key = std::tuple<std::string, int64_t, int>;
    template <class Fn>
    void each_level(const std::string& adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                    Fn fn);

    std::map<Key, Tally> tallies_;
    std::map<Key, std::string> providers_;
};

}  // namespace ndisshm::cli
