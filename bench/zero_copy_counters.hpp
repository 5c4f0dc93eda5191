// The counters page zero_copy_guest.cpp publishes and zero_copy_rig.cpp
// reads: a memfd the guest inherits and both map. The packets themselves are
// support/packet_format.hpp's, checked by the guest in place.
#pragma once

#include <atomic>
#include <cstdint>

namespace zero_copy {

// The guest stores them after every batch; the bench reads them only outside
// its timed loop. std::atomic<uint64_t> is lock-free, hence address-free, so
// it works across the two mappings.
struct GuestCounters {
    std::atomic<uint64_t> packets;   // handed to the guest's packet callback
    std::atomic<uint64_t> bytes;     // their lengths
    std::atomic<uint64_t> verified;  // intact, each the next in sequence
    std::atomic<uint64_t> corrupt;   // not intact (torn, stale, misplaced, corrupted)
    std::atomic<uint64_t> lost;      // sequence numbers skipped, or gone backwards
    std::atomic<uint64_t> batches;   // reads of the receive ring that found packets
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

}  // namespace zero_copy
