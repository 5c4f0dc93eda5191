// The platform layer: every Linux call ndisshm makes goes through here.
//
// Nothing above src/os/ includes a Linux header. Each failure comes back as an
// Error naming the call and its argument, with errno and its text, so a user
// reading a verifier log knows what the OS refused and why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/result.hpp"

namespace ndisshm::os {

// An owned file descriptor; closes on destruction.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd();
    int get() const { return fd_; }
    int release() {
        int f = fd_;
        fd_ = -1;
        return f;
    }
    bool valid() const { return fd_ >= 0; }

private:
    int fd_ = -1;
};

size_t page_size();

// Anonymous shared memory that can be sealed against shrinking and passed to
// another process. `huge_pages` asks for MFD_HUGETLB (2 MiB pages).
Result<UniqueFd> memfd_create(const std::string& name, bool huge_pages);
Status memfd_seal_shrink(int fd);
Status resize_file(int fd, uint64_t bytes);

// Reserves `bytes` of address space mapped to `fd` from offset 0, shared,
// read/write, never executable. Pages past the file's end must not be touched
// until the file grows over them.
Result<void*> map_shared(int fd, uint64_t bytes);
void unmap(void* address, uint64_t bytes);

// Reserves address space with no memory behind it until touched (for tables).
Result<void*> reserve_anonymous(uint64_t bytes);

// Releases the pages of [offset, offset+bytes) of a memfd: they read as zero
// afterwards and cost no memory until touched again.
Status punch_hole(int fd, uint64_t offset, uint64_t bytes);

// Number of NUMA nodes this machine has online (1 without NUMA).
unsigned numa_node_count();

}  // namespace ndisshm::os
