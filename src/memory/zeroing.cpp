#include "memory/zeroing.hpp"

#include <cstring>

#include "os/os.hpp"

namespace ndisshm::memory {

ZeroMethod zero_block(int fd, std::byte* base, uint64_t offset, uint64_t length, uint64_t release_from,
                      bool may_release) {
    // A punch can only fail for reasons that do not apply to a memfd we made (EOPNOTSUPP on other file
    // systems, EPERM on sealed files): memset is the answer that is always right.
    if (may_release && length >= release_from && os::punch_hole(fd, offset, length)) return ZeroMethod::Release;
    std::memset(base + offset, 0, length);
    return ZeroMethod::Memset;
}

}  // namespace ndisshm::memory
