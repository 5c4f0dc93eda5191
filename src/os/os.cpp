// Linux implementations of os.hpp. The only file set that includes Linux headers.
#include "os/os.hpp"

#include <asm-generic/hugetlb_encode.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "os/fault.hpp"

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

uint64_t free_huge_pages() {
    std::FILE* f = std::fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
    if (f == nullptr) return 0;  // no hugetlb support, or no 2 MiB size
    unsigned long long n = 0;
    if (std::fscanf(f, "%llu", &n) != 1) n = 0;
    std::fclose(f);
    return n;
}

Result<UniqueFd> memfd_create(const std::string& name, bool huge_pages) {
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    // The size is named: MFD_HUGETLB alone means the system's default huge page size, which may be 1 GiB.
    // (HUGETLB_FLAG_ENCODE_2MB is MFD_HUGE_2MB; <linux/memfd.h> would clash with glibc's MFD_ macros.)
    if (huge_pages) flags |= MFD_HUGETLB | HUGETLB_FLAG_ENCODE_2MB;
    int fd = fault::call("memfd_create", -1, [&] { return ::memfd_create(name.c_str(), flags); });
    if (fd < 0) return errno_error("memfd_create(" + name + ")");
    return UniqueFd(fd);
}

Status memfd_seal_shrink(int fd) {
    if (fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK); }) != 0)
        return errno_error("fcntl(F_ADD_SEALS, F_SEAL_SHRINK)");
    return Ok{};
}

Status resize_file(int fd, uint64_t bytes) {
    // ftruncate may be interrupted by a signal (EINTR): that is no refusal, ask again.
    int rc;
    do {
        rc = fault::call("ftruncate", -1, [&] { return ::ftruncate(fd, static_cast<off_t>(bytes)); });
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return errno_error("ftruncate(" + std::to_string(bytes) + ")");
    return Ok{};
}

Result<void*> map_shared(int fd, uint64_t bytes) {
    void* p = fault::call("mmap", MAP_FAILED, [&] {
        return ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    });
    if (p == MAP_FAILED) return errno_error("mmap(shared, " + std::to_string(bytes) + " bytes)");
    return p;
}

void unmap(void* address, uint64_t bytes) {
    if (address != nullptr) ::munmap(address, bytes);
}

Result<void*> reserve_anonymous(uint64_t bytes) {
    void* p = fault::call("mmap", MAP_FAILED, [&] {
        return ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    });
    if (p == MAP_FAILED) return errno_error("mmap(anonymous, " + std::to_string(bytes) + " bytes)");
    return p;
}

Status punch_hole(int fd, uint64_t offset, uint64_t bytes) {
    int rc;
    do {  // fallocate may be interrupted by a signal (EINTR): ask again
        rc = fault::call("fallocate", -1, [&] {
            return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                               static_cast<off_t>(bytes));
        });
    } while (rc != 0 && errno == EINTR);
    if (rc != 0)
        return errno_error("fallocate(PUNCH_HOLE, " + std::to_string(offset) + ", " + std::to_string(bytes) + ")");
    return Ok{};
}

Status advise_huge_pages(void* address, uint64_t bytes) {
    if (fault::call("madvise", -1, [&] { return ::madvise(address, bytes, MADV_HUGEPAGE); }) != 0)
        return errno_error("madvise(MADV_HUGEPAGE, " + std::to_string(bytes) + " bytes)");
    return Ok{};
}

namespace {

bool have_numa() {
    static const bool available = ::numa_available() >= 0;
    return available;
}

// A node mask as the mempolicy calls take it: one bit per possible node.
struct NodeMask {
    explicit NodeMask(int node = -1)
        : bits(static_cast<size_t>(::numa_num_possible_nodes()) + 1),
          words((bits + 8 * sizeof(unsigned long) - 1) / (8 * sizeof(unsigned long)), 0) {
        if (node >= 0) words[static_cast<size_t>(node) / (8 * sizeof(unsigned long))] |=
            1ul << (static_cast<size_t>(node) % (8 * sizeof(unsigned long)));
    }
    size_t bits;
    std::vector<unsigned long> words;
};

// Runs `f` with the calling thread's memory policy set to prefer `node`, then puts the old policy back.
// hugetlbfs's fallocate takes its pages by the caller's task policy (it ignores the mapping's, which
// mbind sets), so this is how committed huge pages land on the arena's node.
template <class F>
auto with_preferred_node(int node, F f) {
    int old_mode = MPOL_DEFAULT;
    NodeMask old_mask;
    const bool swap = node >= 0 && have_numa() &&
                      ::get_mempolicy(&old_mode, old_mask.words.data(), old_mask.bits, nullptr, 0) == 0;
    if (swap) {
        NodeMask want(node);
        if (::set_mempolicy(MPOL_PREFERRED, want.words.data(), want.bits) != 0) return f();  // best effort
    }
    auto result = f();
    if (swap) {
        const int e = errno;  // f's errno is what the caller reports
        if (old_mode == MPOL_DEFAULT) ::set_mempolicy(MPOL_DEFAULT, nullptr, 0);
        else ::set_mempolicy(old_mode, old_mask.words.data(), old_mask.bits);
        errno = e;
    }
    return result;
}

}  // namespace

Status commit_huge_pages(int fd, uint64_t offset, uint64_t bytes, int node) {
    // KEEP_SIZE: the first mapping already set the size; this allocates (and the kernel zeroes) the pages.
    // hugetlbfs stops allocating when a signal is pending (EINTR): pages it already took stay committed,
    // and asking again takes the rest.
    const int rc = with_preferred_node(node, [&] {
        int r;
        do {
            r = fault::call("fallocate", -1, [&] {
                return ::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(bytes));
            });
        } while (r != 0 && errno == EINTR);
        return r;
    });
    if (rc == 0) return Ok{};
    Error e = errno_error("fallocate(" + std::to_string(bytes >> 20) + " MiB of 2 MiB huge pages at offset " +
                          std::to_string(offset) + ")");
    if (e.err == ENOSPC || e.err == ENOMEM)
        e.detail += " (" + std::to_string(free_huge_pages()) +
                    " free 2 MiB huge pages in the pool; reserve more in /proc/sys/vm/nr_hugepages)";
    return e;
}

Status prefer_node(void* address, uint64_t bytes, unsigned node) {
    if (!have_numa()) return Ok{};
    NodeMask mask(static_cast<int>(node));
    const long rc = fault::call(
        "mbind", -1L, [&] { return ::mbind(address, bytes, MPOL_PREFERRED, mask.words.data(), mask.bits, 0); });
    if (rc != 0)
        return errno_error("mbind(MPOL_PREFERRED, node " + std::to_string(node) + ", " + std::to_string(bytes) +
                           " bytes)");
    return Ok{};
}

int node_of_address(const void* address) {
    if (!have_numa()) return 0;
    int node = -1;
    if (::get_mempolicy(&node, nullptr, 0, const_cast<void*>(address), MPOL_F_NODE | MPOL_F_ADDR) != 0) return -1;
    return node;
}

unsigned cpu_count() {
    static const unsigned count = [] {
        const long n = ::sysconf(_SC_NPROCESSORS_CONF);
        return n > 0 ? static_cast<unsigned>(n) : 1u;
    }();
    return count;
}

unsigned usable_cpu_count() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpu_count();
    const int n = CPU_COUNT(&set);
    return n > 0 ? static_cast<unsigned>(n) : 1u;
}

Status set_idle_priority() {
    const sched_param param{};  // SCHED_IDLE takes priority 0
    if (fault::call("sched_setscheduler", -1, [&] { return ::sched_setscheduler(0, SCHED_IDLE, &param); }) != 0)
        return errno_error("sched_setscheduler(SCHED_IDLE)");
    return Ok{};
}

namespace detail {

// struct rseq's cpu_id (<linux/rseq.h>: after the 32-bit cpu_id_start), if
// glibc registered an area at least that long. Read once, at load: glibc
// settles both values before any constructor of ours runs.
const std::ptrdiff_t rseq_cpu_id_offset =
    __rseq_size >= offsetof(struct rseq, cpu_id) + sizeof(uint32_t) ? __rseq_offset + offsetof(struct rseq, cpu_id)
                                                                     : 0;

unsigned current_cpu_by_call() {
    const int cpu = ::sched_getcpu();
    return cpu >= 0 ? static_cast<unsigned>(cpu) : 0u;
}

}  // namespace detail

unsigned node_of_cpu(unsigned cpu) {
    // CPUs and nodes do not change under a running process (hotplug aside, which then reads as node 0).
    static const std::vector<unsigned> table = [] {
        std::vector<unsigned> t(cpu_count(), 0);
        if (have_numa()) {
            for (unsigned c = 0; c < t.size(); ++c) {
                const int n = ::numa_node_of_cpu(static_cast<int>(c));
                t[c] = n >= 0 ? static_cast<unsigned>(n) : 0u;
            }
        }
        return t;
    }();
    return cpu < table.size() ? table[cpu] : 0u;
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
