// The one pool provider of the tree: a shared memory provider in the role
// Hyper-V's virtual switch plays on Windows, registered by a filter through
// NdisSetOptionalHandlers (register_through_ndis) or the host's ops table
// (ndisshm::Provider::ops). The tour's "vswitch", and the tests that need a
// provider that really owns memory, run on it; examples/provider.c is the
// same model in C, for readers. The tests' TestProvider (tests/common) is
// another thing: it counts every call and misbehaves on request; this one
// only behaves.
//
// Contract:
//  * Memory: one region it owns, `slots` equal slots of `slot_bytes` rounded
//    up to whole pages, each page-aligned; a block is one slot, whatever its
//    queue, usage or flags. The region lives as long as the provider, so the
//    provider must outlive every block it gave (and the runtime, which may
//    free through it when it is torn down).
//  * allocate: a block of Length <= slot bytes gets a free slot, zeroed to its
//    end (no byte crosses from a block's last user to its next), described
//    by one SG element of Length bytes at the slot's address (so CONTIGUOUS
//    or not alike), and the slot as its context (never null). Lowest slot
//    first. NDIS_STATUS_RESOURCES, counted as a refusal of that queue, when
//    Length is larger than a slot or no slot is free;
//    NDIS_STATUS_BUFFER_TOO_SHORT, NumberOfElements = 1 when the header fits,
//    when the SG buffer has room for no element (not counted: the caller asks
//    again).
//  * committed: remembers the block's SharedMemoryHandle until it is freed
//    (shared_memory_handle), as a switch does to hand the block to a VM.
//    Only registered through the ops table is it told: NDIS's provider
//    characteristics have no such entry point.
//  * free: takes the slot back. A context it never gave, or gave and took
//    back already, is a bug in whoever routes frees (NDIS): counted
//    (bad_frees), never crashed on, and changes nothing.
//  * Thread-safe: one lock over the pool and its counters.
#pragma once

#include <ndis/ndis_shm.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <ndisshm/ndisshm.hpp>
#include <string>
#include <vector>

namespace ndisshm::support {

class PoolProvider final : public ndisshm::Provider {
public:
    // What one receive queue asked of the pool.
    struct QueueCounters {
        uint64_t allocations = 0;
        uint64_t frees = 0;
        uint64_t refusals = 0;  // pool empty or block larger than a slot
        uint64_t live = 0;
    };

    // A pool of `slots` slots of `slot_bytes` (rounded up to pages); `name`
    // heads describe(). Throws std::bad_alloc when the region cannot be had.
    PoolProvider(std::string name, size_t slots, size_t slot_bytes);
    ~PoolProvider() override;
    PoolProvider(const PoolProvider&) = delete;
    PoolProvider& operator=(const PoolProvider&) = delete;

    NDIS_STATUS allocate(NDIS_SHARED_MEMORY_PARAMETERS& params, NDIS_HANDLE& context) override;
    void free(NDIS_HANDLE context) override;
    void committed(NDIS_HANDLE context, NDIS_HANDLE shared_memory_handle) override;
    // "NAME pool: used/slots slots of N KiB in use; qN a alloc/f free[/r refused], ...[; N BAD FREES]".
    std::string describe() const override;

    size_t slots() const { return slots_.size(); }
    size_t slot_bytes() const { return slot_bytes_; }
    // Per queue that asked at least once (refusals included).
    std::map<NDIS_RECEIVE_QUEUE_ID, QueueCounters> queues() const;
    // Slots handed out and not yet taken back.
    size_t live() const;
    // Frees with a context this provider never gave or already took back.
    uint64_t bad_frees() const;
    // The SharedMemoryHandle NDIS committed the live block at `block` (its
    // VirtualAddress) under; nullptr when no live block starts there or none
    // was committed.
    NDIS_HANDLE shared_memory_handle(const void* block) const;

private:
    struct Slot {
        bool in_use = false;
        NDIS_RECEIVE_QUEUE_ID queue = 0;
        NDIS_HANDLE shared_memory_handle = nullptr;
    };

    unsigned char* address_of(size_t slot) const { return region_ + slot * slot_bytes_; }
    Slot* slot_of(NDIS_HANDLE context);  // nullptr: not one of ours, or not in use

    const std::string name_;
    const size_t slot_bytes_;
    unsigned char* region_;
    std::vector<Slot> slots_;  // never resized: a slot's address is its context
    mutable std::mutex mu_;
    std::vector<size_t> free_slots_;
    std::map<NDIS_RECEIVE_QUEUE_ID, QueueCounters> queues_;
    uint64_t bad_frees_ = 0;
};

// NdisSetOptionalHandlers as a filter driver calls it on its binding:
// provider characteristics (revision 1) built from `provider`'s allocate and
// free entry points. The status NDIS returns.
NDIS_STATUS register_through_ndis(ndisshm::ProviderBinding& binding, ndisshm::Provider& provider);

}  // namespace ndisshm::support
