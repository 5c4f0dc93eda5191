// GuestProvider: the provider the virtual switch registers on a NIC's adapter
// so that each VMQ receive queue's shared memory is carved out of the memory
// of the guest (the "virtual machine", another process) that owns the queue,
// and the NIC writes packets straight into that guest: zero copy.
//
// Routing, as NDIS has it: once registered on an adapter (through a binding)
// a provider receives EVERY allocation of that adapter, so this one serves
// two kinds of memory itself:
//   - a queue assigned to a guest (assign_queue): a range carved out of that
//     guest's GuestMemory. SG list: one element, the guest physical address
//     (guest_physical_base + offset), so CONTIGUOUS or not is one element;
//     VirtualAddress: the host's mapping of that range.
//   - the default queue (id 0), and any queue not (or no longer) assigned:
//     host memory, from a memfd Arena of the provider's own (the default
//     provider is not reachable from here, and a memfd keeps even these
//     blocks shareable by fd + offset). SG list: one element, IOVA = VA.
//
// The guest learns of its blocks through a BlockListener: committed() (NDIS
// gives each block its SharedMemoryHandle, which packets name) calls
// block_added; free() calls block_removed before the range goes back, so the
// guest stops reading a block before anything else can reuse its pages.
// Listener calls are made with no lock of ours held, on the thread that
// called NdisAllocateSharedMemory / NdisFreeSharedMemory (or ndisshm_queue_free,
// binding or adapter teardown, when those free blocks themselves).
//
// Lifetime: every guest block holds a shared_ptr to its GuestMemory, so
// remove_guest() while blocks are outstanding is safe: the memory stays mapped
// until the last of them is freed (through NDIS, as always).
//
// Thread-safe: one lock for the tables; carving is under the memory's lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/result.hpp"
#include "memory/arena.hpp"
#include "providers/guest_memory.hpp"
#include "providers/provider.hpp"

namespace ndisshm::providers {

struct GuestBlock {
    uint64_t handle = 0;        // SharedMemoryHandle, as an integer
    uint64_t guest_offset = 0;  // start of the block in the guest's memory
    uint64_t length = 0;        // bytes asked for (the carved range is page-rounded)
    uint32_t queue_id = 0;
    uint32_t usage = 0;
};

class BlockListener {
public:
    virtual void block_added(uint32_t guest_id, const GuestBlock& block) = 0;
    virtual void block_removed(uint32_t guest_id, const GuestBlock& block) = 0;

protected:
    ~BlockListener() = default;
};

struct GuestProviderConfig {
    memory::ArenaConfig host_arena{"ndisshm-guest-provider-host", uint64_t{1} << 30, uint64_t{4} << 20};
    BlockListener* listener = nullptr;  // may be null; must outlive the provider
};

struct GuestProviderStats {
    uint64_t guests = 0;
    uint64_t assigned_queues = 0;
    uint64_t guest_blocks = 0;  // outstanding, in guest memory
    uint64_t host_blocks = 0;   // outstanding, in the host arena
    uint64_t refused_frees = 0; // free() with a token that is no live block: should stay 0
};

class GuestProvider final : public Provider {
public:
    static Result<std::unique_ptr<GuestProvider>> create(const GuestProviderConfig& config);
    ~GuestProvider() override;

    // EEXIST if the id is taken.
    Status add_guest(uint32_t guest_id, std::shared_ptr<GuestMemory> memory);
    // Forgets the guest and unassigns its queues (new allocations for them get
    // host memory). Blocks still carved from its memory keep it mapped.
    void remove_guest(uint32_t guest_id);
    // Allocations for `queue_id` come from the guest's memory from now on.
    // EINVAL for the default queue, ENOENT for an unknown guest.
    Status assign_queue(uint32_t queue_id, uint32_t guest_id);
    void unassign_queue(uint32_t queue_id);
    std::optional<uint32_t> guest_of(uint32_t queue_id) const;

    ProviderStatus allocate(const Request& request, SgSink& sg, Grant& grant) override;
    void free(uint64_t token) override;
    void committed(uint64_t token, void* shared_memory_handle) override;
    // A queue that goes is unassigned: a later queue with the same id belongs
    // to whoever it is assigned to then.
    void detach_queue(uint32_t queue_id) override;
    std::string describe() const override;

    GuestProviderStats stats() const;
    // The last allocation failure's reason (for the host's log).
    std::string last_error() const;

private:
    struct Block {
        std::shared_ptr<GuestMemory> memory;  // null: host arena
        uint32_t guest_id = 0;
        uint64_t offset = 0;         // in the guest memory or the arena
        uint64_t carved_length = 0;  // page-rounded
        GuestBlock info;
    };

    GuestProvider(std::unique_ptr<memory::Arena> arena, BlockListener* listener);
    ProviderStatus refuse(ProviderStatus status, Grant& grant, std::string why);

    std::unique_ptr<memory::Arena> arena_;
    BlockListener* listener_;
    mutable std::mutex mu_;
    std::map<uint32_t, std::shared_ptr<GuestMemory>> guests_;
    std::map<uint32_t, uint32_t> queue_owner_;  // queue -> guest
    std::unordered_map<uint64_t, std::unique_ptr<Block>> blocks_;  // token (the Block's address) -> record
    uint64_t guest_blocks_ = 0;
    std::atomic<uint64_t> refused_frees_{0};
    std::string last_error_;
};

}  // namespace ndisshm::providers
