// The driver's side of one NdisAllocateSharedMemory call, as a miniport
// writes it against the raw NDIS calls: the parameters it fills before each
// call (header revision 2, queue, usage, length, flags, preferred node) and
// an SG buffer of its own (one element per page, 8-byte aligned, reused call
// after call); and, once the call succeeded, the check of what it got against
// the runtime's record of the block (ndisshm_block_get_info). The CLI's tour
// driver and soak threads and the benchmarks make their calls through it.
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ndisshm::support {

class DriverRequest {
public:
    // For `length` bytes on the default queue, NdisSharedMemoryUsageReceive,
    // no flags, `node`; room for BYTES_TO_PAGES(length) SG elements (at least
    // one) and `spare_elements` more.
    explicit DriverRequest(ULONG length, NODE_REQUIREMENT node = MM_ANY_NODE_OK, ULONG spare_elements = 0) {
        capacity_ = BYTES_TO_PAGES(length) + spare_elements;
        if (capacity_ == 0) capacity_ = 1;
        const ULONG sg_bytes = NDISSHM_SG_LIST_BYTES(capacity_);
        sg_.resize((sg_bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t));
        NdisZeroMemory(&template_, sizeof(template_));
        template_.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        template_.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        template_.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        template_.Flags = 0;
        template_.QueueId = NDIS_DEFAULT_RECEIVE_QUEUE_ID;
        template_.PreferredNode = node;
        template_.Usage = NdisSharedMemoryUsageReceive;
        template_.Length = length;
        template_.SGListBufferLength = sg_bytes;
        template_.SGListBuffer = reinterpret_cast<PSCATTER_GATHER_LIST>(sg_.data());
    }
    DriverRequest(const DriverRequest&) = delete;  // the parameters point into sg_
    DriverRequest& operator=(const DriverRequest&) = delete;

    // What every fresh() starts from: set the queue, usage, flags here (and a
    // Length up to the SG buffer's pages).
    NDIS_SHARED_MEMORY_PARAMETERS& shape() { return template_; }

    // A clean copy for one call (the SG list's NumberOfElements says its
    // room), as a driver fills its parameters before each call.
    PNDIS_SHARED_MEMORY_PARAMETERS fresh() {
        params_ = template_;
        params_.SGListBuffer->NumberOfElements = capacity_;
        return &params_;
    }
    // The last fresh(), as the call left it (VirtualAddress, the SG list, ...).
    const NDIS_SHARED_MEMORY_PARAMETERS& last() const { return params_; }
    // SG elements the buffer has room for.
    ULONG capacity() const { return capacity_; }

private:
    ULONG capacity_ = 1;
    std::vector<uint64_t> sg_;  // 8-byte aligned, as SCATTER_GATHER_LIST needs
    NDIS_SHARED_MEMORY_PARAMETERS template_;
    NDIS_SHARED_MEMORY_PARAMETERS params_;
};

// Where the runtime's record of a block (`info`, ndisshm_block_get_info) differs
// from what its driver asked for and got (`p` after the call succeeded on
// `adapter`): "" when they agree, else the fields, each with the record's
// value where it has one: " adapter", " queue 3", " usage", " length 4096",
// " address", " first SG address". The provider is the caller's to judge.
std::string record_differences(const ndisshm_block_info& info, NDIS_HANDLE adapter,
                               const NDIS_SHARED_MEMORY_PARAMETERS& p);

}  // namespace ndisshm::support
