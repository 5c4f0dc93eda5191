// What the SG elements of a block carry, in each address mode (the values of ndisshm_address_mode).
//
//   kIova (0)         one element: iova_base + the block's offset in its arena, or the block's virtual
//                     address when iova_base is 0 (IOVA = VA, as DPDK does by default).
//   kPhysical (1)     one element per physically contiguous run of the block, from /proc/self/pagemap;
//                     the block's pages are locked (mlock) from describe() until release(). Needs
//                     CAP_SYS_ADMIN (root). A CONTIGUOUS request must be one run, which in practice
//                     means an arena of huge pages: else it fails with Resources.
//   kArenaOffset (2)  one element: the block's offset in its arena's memfd, the address another process
//                     that maps the memfd sees (the guest provider adds its guest base on top).
//
// Contract for the provider that uses it:
//   * describe() once per allocation, after the block's memory is final (zeroed, holes punched): in
//     physical mode it faults the pages in and pins them, and the addresses it reports are those pages'.
//   * Every run goes to the sink, however many: the core bounds the caller's SG list and turns the
//     overflow into BUFFER_TOO_SHORT. On failure nothing has been added and nothing stays locked.
//   * On free, call release() with the same SgBlock, exactly once, before the memory goes back to the
//     arena, for every block describe() succeeded on (it does nothing outside physical mode;
//     locks_pages() tells whether it is needed). Not on a block whose describe() failed.
//   * Locks do not nest (munlock undoes every mlock of a page), so the pages of two live blocks must
//     not overlap, or releasing one unlocks the other. Arena blocks are page-aligned and page-rounded,
//     so they never do.
//
// Thread-safety: an SgDescriber is immutable once created; describe() and release() may run at the
// same time from any number of threads, on distinct blocks. It holds no file open (pagemap is opened
// per describe(), like DPDK's rte_mem_virt2phy), so it stays right in a forked child, but a child does
// not inherit its parent's page locks.
//
// Cost: kIova and kArenaOffset are arithmetic. kPhysical makes about four system calls per block
// (mlock, open, pread, close), faults in every page of it, and allocates one vector of runs.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.hpp"
#include "providers/provider.hpp"

namespace ndisshm::providers {

// A block to describe: where it is mapped here, how much of it the SG list covers, and where it is in
// its arena's memfd.
struct SgBlock {
    const void* address = nullptr;  // virtual address of the first byte
    uint64_t length = 0;            // bytes to describe (the request's Length), > 0
    uint64_t arena_offset = 0;      // offset of `address` in the arena's memfd
};

struct SgResult {
    ProviderStatus status = ProviderStatus::Success;
    std::string error;      // when status is not Success: why, in words (for Grant::error)
    uint32_t elements = 0;  // sink.add() calls made: 0 on failure
    bool ok() const { return status == ProviderStatus::Success; }
};

class SgDescriber {
public:
    static constexpr uint32_t kIova = 0;         // = NDISSHM_ADDRESS_IOVA
    static constexpr uint32_t kPhysical = 1;     // = NDISSHM_ADDRESS_PHYSICAL
    static constexpr uint32_t kArenaOffset = 2;  // = NDISSHM_ADDRESS_ARENA_OFFSET

    // Fails for a mode that is not one of the three, and for kPhysical when this process cannot read
    // real frame numbers ("physical address mode needs CAP_SYS_ADMIN to read /proc/self/pagemap ..."),
    // so that a runtime configured for physical mode is refused when it is created, not at each
    // allocation. Either way the configuration is one this process cannot serve: INVALID_PARAMETER.
    // iova_base is used by kIova only.
    static Result<SgDescriber> create(uint32_t mode, uint64_t iova_base);

    // Adds the block's elements to `sink` as the mode says. `contiguous`: the request asked for one
    // element; only physical mode can fail it (Resources, "CONTIGUOUS needs huge pages in physical
    // mode: the block spans N physical runs"). Other failures, all in physical mode: InvalidParameter
    // when frame numbers are hidden (CAP_SYS_ADMIN lost since create), Resources when the pages cannot
    // be locked (RLIMIT_MEMLOCK, or the kernel's limit on mappings: each locked block can split the
    // arena's mapping in two), Failure for anything else the OS refused.
    SgResult describe(const SgBlock& block, bool contiguous, SgSink& sink) const;

    // Undoes what describe() holds for the block: in physical mode, unlocks its pages. See the contract.
    void release(const SgBlock& block) const;

    uint32_t mode() const { return mode_; }
    bool locks_pages() const { return mode_ == kPhysical; }

private:
    SgDescriber(uint32_t mode, uint64_t iova_base) : mode_(mode), iova_base_(iova_base) {}
    SgResult describe_physical(const SgBlock& block, bool contiguous, SgSink& sink) const;

    uint32_t mode_;
    uint64_t iova_base_;
};

}  // namespace ndisshm::providers
