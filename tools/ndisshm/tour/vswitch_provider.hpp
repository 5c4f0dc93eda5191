// "vswitch": a shared memory provider of our own, in the role Hyper-V's
// virtual switch plays on Windows. It serves every block of the adapter it is
// registered on from one region it owns (a pool of equal, page-aligned slots),
// zeroes a slot before handing it out, and counts per receive queue what it
// was asked for, so the tour can hold its counts against NDIS's books.
//
// Why one of its own: the library's providers (src/providers: NDIS's default
// provider over host memory, and the hub's guest provider over a guest's
// memory) are NDIS's side and internal; this is the filter's side, what a
// user registers through NdisSetOptionalHandlers, which the tour exists to
// show (examples/provider.c is the same model in C, for readers). The tests'
// providers are not this one either: each is built to count or misbehave for
// its suite. Only the tour registers a pool provider, so it stays here rather
// than in support/.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <ndisshm/ndisshm.hpp>
#include <string>
#include <vector>

namespace ndisshm::cli {

class VswitchProvider final : public ndisshm::Provider {
public:
    struct QueueCounters {
        uint64_t allocations = 0;
        uint64_t frees = 0;
        uint64_t refusals = 0;  // pool empty or block larger than a slot
        uint64_t live = 0;
    };

    // Throws std::bad_alloc when the region cannot be had.
    VswitchProvider(size_t slots, size_t slot_bytes);
    ~VswitchProvider() override;
    VswitchProvider(const VswitchProvider&) = delete;
    VswitchProvider& operator=(const VswitchProvider&) = delete;

    NDIS_STATUS allocate(NDIS_SHARED_MEMORY_PARAMETERS& params, NDIS_HANDLE& context) override;
    void free(NDIS_HANDLE context) override;
    std::string describe() const override;

    std::map<NDIS_RECEIVE_QUEUE_ID, QueueCounters> queues() const;
    size_t live() const;
    // Frees with a context this provider never gave or already took back: a
    // bug in whoever routes frees (NDIS), counted rather than crashed on.
    uint64_t bad_frees() const;

private:
    struct Slot {
        bool in_use = false;
        NDIS_RECEIVE_QUEUE_ID queue = 0;
    };

    unsigned char* address_of(size_t slot) const { return region_ + slot * slot_bytes_; }

    const size_t slot_bytes_;
    unsigned char* region_;
    std::vector<Slot> slots_;  // never resized: a slot's address is its context
    mutable std::mutex mu_;
    std::vector<size_t> free_slots_;
    std::map<NDIS_RECEIVE_QUEUE_ID, QueueCounters> queues_;
    uint64_t bad_frees_ = 0;
};

// NdisSetOptionalHandlers as a filter driver calls it: provider
// characteristics built from the provider's allocate and free entry points.
NDIS_STATUS register_through_ndis(ndisshm::ProviderBinding& binding, ndisshm::Provider& provider);

}  // namespace ndisshm::cli
