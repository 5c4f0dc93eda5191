// The provider interface: what the core asks of any source of shared memory.
//
// Modelled on Linux's per-RX-queue memory providers: allocate and free, attach
// and detach with a queue's life, and describe oneself for introspection.
// Providers know nothing of the NDIS C surface: the core turns an
// NdisAllocateSharedMemory call into a Request, and a provider answers with the
// block's address, its address ranges (through an SgSink) and a token that the
// core hands back, exactly once, to free().
#pragma once

#include <cstdint>
#include <string>

namespace ndisshm::providers {

enum class ProviderStatus {
    Success,
    Resources,         // out of memory or over a limit
    InvalidParameter,  // e.g. a NUMA node that does not exist
    BufferTooShort,    // the caller's SG list cannot hold the block's ranges
    Failure,
};

struct Request {
    uint64_t length = 0;           // bytes, > 0
    bool contiguous = false;       // one address range, one SG element
    uint32_t queue_id = 0;
    uint32_t usage = 0;            // NDIS_SHARED_MEMORY_USAGE value
    uint32_t preferred_node = 0;   // NUMA node, or 0x80000000 for any
    uint32_t vport_id = 0;
    // Who the block is for: the core puts the adapter's number here (unique in its runtime, never
    // reused). A provider may hand a block its owner freed back to that owner without clearing it,
    // never to another; 0: unknown, cleared for anyone.
    uint64_t owner = 0;
    const void* native = nullptr;  // the core's own, for providers it adapts
};

// Receives a block's address ranges in order. The core bounds it by the
// caller's SG buffer and counts what did not fit.
class SgSink {
public:
    virtual void add(uint64_t address, uint64_t length) = 0;

protected:
    ~SgSink() = default;
};

struct Grant {
    void* virtual_address = nullptr;
    uint64_t token = 0;  // non-zero; given back to free()
    int32_t node = -1;   // NUMA node the block was placed on, -1 unknown
    std::string error;   // on failure: why, in words (goes to the verifier log)
};

class Provider {
public:
    virtual ~Provider() = default;
    // Called synchronously, at PASSIVE_LEVEL, from NdisAllocateSharedMemory.
    virtual ProviderStatus allocate(const Request& request, SgSink& sg, Grant& grant) = 0;
    // Exactly once per successful allocate, with its token.
    virtual void free(uint64_t token) = 0;
    // After a successful allocate, once NDIS has recorded the block: the
    // SharedMemoryHandle that drivers and packets will name it by. Called
    // before NdisAllocateSharedMemory returns, at most once per token.
    virtual void committed(uint64_t /*token*/, void* /*shared_memory_handle*/) {}
    virtual void attach_queue(uint32_t /*queue_id*/) {}
    virtual void detach_queue(uint32_t /*queue_id*/) {}
    virtual std::string describe() const = 0;
};

}  // namespace ndisshm::providers
