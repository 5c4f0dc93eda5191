// GuestMemory: one guest's memory as the host sees it.
//
// A guest (a separate process, the "virtual machine") creates its memory as
// a memfd and hands the fd to the host (SET_MEMORY, SCM_RIGHTS), as
// vhost-user's SET_MEM_TABLE does. Before the host maps it, adopt() checks
// that the fd is what the guest says, because the host will write packets
// into it and must never fault doing so:
//   - it is a memfd (not a pipe, a socket, a regular file, a tmpfs file);
//   - it is sealed against shrinking (F_SEAL_SHRINK), or we seal it now: a
//     guest that could ftruncate its memory smaller under our mapping would
//     make the host's next write a SIGBUS;
//   - its size, read after sealing (from then on it can only grow), equals
//     the size the guest claimed, and lies within the host's limits;
//   - it maps shared, read/write, never executable.
// The mapping lives as long as the object: every block carved out of it holds
// a shared_ptr, so a guest that goes away while blocks are still allocated
// cannot pull the memory out from under them.
//
// Carving: a PageAllocator (O(1), offsets only) hands out page-aligned
// ranges. Ranges are not zeroed: the memory is the guest's own and holds only
// what the guest or the host wrote for that same guest, so no data crosses
// tenants; and the guest can write its memory at any time anyway, so the host
// never reads anything from it that it did not just write.
//
// Thread-safe: carve and release take one lock; the rest is immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.hpp"
#include "memory/page_allocator.hpp"
#include "os/os.hpp"

namespace ndisshm::providers {

struct GuestMemoryLimits {
    uint64_t min_bytes = uint64_t{1} << 20;   // below this: refused as too small
    uint64_t max_bytes = uint64_t{64} << 30;  // above this: refused as too large
};

// A range of guest memory: where the guest sees it (offset), where the host
// writes it (address), and what a device would DMA to (physical).
struct GuestRange {
    uint64_t offset = 0;
    uint64_t length = 0;  // a multiple of the page size
    std::byte* address = nullptr;
    uint64_t physical = 0;  // guest_physical_base + offset
};

class GuestMemory {
public:
    // Checks `fd` as above and maps `size` bytes of it. Every refusal is an
    // Error whose message says what was wrong in words a guest's owner can act
    // on ("region too small", "not a memfd", "size mismatch", "not sealed");
    // err is ERANGE (limits), EINVAL (not a memfd, size, base) or EPERM
    // (sealing), or the OS's errno when mapping fails. `name` is for messages.
    static Result<std::shared_ptr<GuestMemory>> adopt(os::UniqueFd fd, uint64_t size, uint64_t guest_physical_base,
                                                      const GuestMemoryLimits& limits, const std::string& name);
    ~GuestMemory();
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;

    // At least `bytes` (rounded up to pages), contiguous. ENOMEM when no free
    // run is that large.
    Result<GuestRange> carve(uint64_t bytes);
    // Gives back a range exactly as carve returned it; false (changing
    // nothing) for anything else.
    bool release(uint64_t offset, uint64_t length);

    // Whether [offset, offset + length) lies inside the memory (no overflow).
    bool contains(uint64_t offset, uint64_t length) const {
        return offset <= size_ && length <= size_ - offset;
    }
    std::byte* address(uint64_t offset) const { return base_ + offset; }
    uint64_t physical(uint64_t offset) const { return guest_physical_base_ + offset; }

    uint64_t size() const { return size_; }
    uint64_t guest_physical_base() const { return guest_physical_base_; }
    int fd() const { return fd_.get(); }
    const std::string& name() const { return name_; }
    uint64_t bytes_in_use() const;
    uint64_t ranges_in_use() const;

private:
    GuestMemory(os::UniqueFd fd, std::byte* base, uint64_t size, uint64_t guest_physical_base, std::string name);

    os::UniqueFd fd_;
    std::byte* base_;
    uint64_t size_;
    uint64_t guest_physical_base_;
    uint64_t page_;
    std::string name_;
    mutable std::mutex mu_;
    memory::PageAllocator pages_;
};

}  // namespace ndisshm::providers
