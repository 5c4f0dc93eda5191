// TourDriver: the driver side of the tour, the shared memory calls a VMQ
// miniport makes, written against the NDIS calls the way a Windows driver is (raw
// NdisAllocateSharedMemory / NdisFreeSharedMemory, the parameters and SG
// buffer of its own: support/driver_request.hpp, as the soak's threads and
// the benchmarks make the same call). It checks what NDIS hands back,
// writes a pattern into every block, and keeps its own books in a Ledger.
//
// It is not a second miniport model: it receives no packets and keeps no
// slots (the one receive model is the library's src/nic/vmq_miniport, which
// the demo, the tests and the benchmarks drive through the hub). It is what
// the tour demonstrates and checks: any usage and length on any queue, every
// grant checked against the spec and the runtime's record, a pattern per
// block, its own ledger, over support/driver_request (the one allocation
// call, shared with the soak and the benchmarks). It is a user's driver, so
// it lives with the user (the tool), on the public headers only.
#pragma once

#include <ndis/ndis_shm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tour/ledger.hpp"
#include "tour/scenario.hpp"
#include "tour/workload.hpp"

namespace ndisshm::cli {

struct DriverBlock {
    NDIS_HANDLE handle = nullptr;
    void* data = nullptr;
    ULONG length = 0;
    NDIS_RECEIVE_QUEUE_ID queue = 0;
    NDIS_SHARED_MEMORY_USAGE usage = NdisSharedMemoryUsageUndefined;
    uint64_t serial = 0;   // this driver's allocation number; seeds the pattern
    std::string provider;  // who served it, as the runtime's books say
};

class TourDriver {
public:
    // `adapter` is the miniport's NdisHandle; problems go to `checks`.
    TourDriver(std::string name, NDIS_HANDLE adapter, Ledger& ledger, Scenario& checks);

    const std::string& name() const { return name_; }
    NDIS_HANDLE handle() const { return adapter_; }

    // One NdisAllocateSharedMemory call as a VMQ miniport makes it (spec
    // section 6). On success the block is checked (handle, address, SG list,
    // zeroed, the runtime's record of it), filled with its pattern and kept.
    NDIS_STATUS allocate(const PlannedBlock& want);

    // Frees every block of `queue`, in allocation order, and returns their
    // handles (dangling from then on).
    std::vector<NDIS_HANDLE> free_queue(NDIS_RECEIVE_QUEUE_ID queue);

    // Rereads every held block: a block that overlaps another one, or that
    // something else wrote, no longer holds its own pattern. Returns the
    // number of blocks read.
    size_t verify_patterns();

    const std::vector<DriverBlock>& blocks() const { return blocks_; }

private:
    void check_granted(const PlannedBlock& want, const NDIS_SHARED_MEMORY_PARAMETERS& p, NDIS_HANDLE handle,
                       ULONG capacity, DriverBlock& block);

    std::string name_;
    NDIS_HANDLE adapter_;
    Ledger& ledger_;
    Scenario& checks_;
    uint64_t serial_ = 0;
    std::vector<DriverBlock> blocks_;
};

}  // namespace ndisshm::cli
