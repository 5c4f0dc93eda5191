// Linux implementations of os.hpp. The only file set that includes Linux headers.
#include "os/os.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace ndisshm::os {
namespace {

Error errno_error(std::string operation) {
    int e = errno;
    return Error{std::move(operation), e, std::strerror(e)};
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.release();
    }
    return *this;
}

UniqueFd::~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
}

size_t page_size() {
    static const size_t size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

Result<UniqueFd> memfd_create(const std::string& name, bool huge_pages) {
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (huge_pages) flags |= MFD_HUGETLB;
    int fd = ::memfd_create(name.c_str(), flags);
    if (fd < 0) return errno_error("memfd_create(" + name + ")");
    return UniqueFd(fd);
}

Status memfd_seal_shrink(int fd) {
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) return errno_error("fcntl(F_ADD_SEALS, F_SEAL_SHRINK)");
    return Ok{};
}

Status resize_file(int fd, uint64_t bytes) {
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0)
        return errno_error("ftruncate(" + std::to_string(bytes) + ")");
    return Ok{};
}

Result<void*> map_shared(int fd, uint64_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) return errno_error("mmap(shared, " + std::to_string(bytes) + " bytes)");
    return p;
}

void unmap(void* address, uint64_t bytes) {
    if (address != nullptr) ::munmap(address, bytes);
}

Result<void*> reserve_anonymous(uint64_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return errno_error("mmap(anonymous, " + std::to_string(bytes) + " bytes)");
    return p;
}

Status punch_hole(int fd, uint64_t offset, uint64_t bytes) {
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(bytes)) != 0)
        return errno_error("fallocate(PUNCH_HOLE, " + std::to_string(offset) + ", " + std::to_string(bytes) + ")");
    return Ok{};
}

namespace {
unsigned count_numa_nodes() {
    // /sys lists node0..nodeN for each online node; a kernel without NUMA has
    // no such directory, which is one node.
    DIR* dir = ::opendir("/sys/devices/system/node");
    if (dir == nullptr) return 1;
    unsigned count = 0;
    while (const dirent* e = ::readdir(dir)) {
        if (std::strncmp(e->d_name, "node", 4) == 0 && e->d_name[4] >= '0' && e->d_name[4] <= '9') ++count;
    }
    ::closedir(dir);
    return count == 0 ? 1 : count;
}
}  // namespace

unsigned numa_node_count() {
    // Nodes do not come and go under a running process: read /sys once (it
    // cost five system calls per allocation that named a node).
    static const unsigned count = count_numa_nodes();
    return count;
}

}  // namespace ndisshm::os
