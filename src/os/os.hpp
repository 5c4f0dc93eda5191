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

// ---- Huge pages ----------------------------------------------------------
// The size of the huge pages ndisshm uses (x86-64 and arm64 with 4 KiB base pages: 2 MiB).
constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;

// 2 MiB huge pages free in the system's pool right now (0 without hugetlb support).
uint64_t free_huge_pages();

// Anonymous shared memory that can be sealed against shrinking and passed to
// another process. `huge_pages` asks for MFD_HUGETLB | MFD_HUGE_2MB. Such a memfd
// takes the size of its first writable mapping, but its pages exist only once
// commit_huge_pages() has allocated them: touching one that was not committed
// is SIGBUS.
Result<UniqueFd> memfd_create(const std::string& name, bool huge_pages);

// Allocates the huge pages of [offset, offset + bytes) of a hugetlb memfd
// (fallocate), from NUMA node `node`'s pool when it has free pages (a
// preference, as PreferredNode is), any node's otherwise; node < 0: the
// calling thread's policy. Fails (ENOSPC, with what the pool holds in the
// message) when the pool has too few free pages, changing nothing that the
// caller relies on. Both offset and bytes must be multiples of 2 MiB.
Status commit_huge_pages(int fd, uint64_t offset, uint64_t bytes, int node);

// madvise(MADV_HUGEPAGE): asks for transparent huge pages on a mapping.
Status advise_huge_pages(void* address, uint64_t bytes);

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

// ---- NUMA and CPUs ---------------------------------------------------------
// Number of NUMA nodes this machine has online (1 without NUMA).
unsigned numa_node_count();

// Sets the memory policy of [address, address + bytes) to prefer node `node`
// (mbind MPOL_PREFERRED): pages are taken from that node while it has free
// memory, from others after, as NDIS's PreferredNode is a preference and
// running out of one node's memory must not crash the process. On a shared
// memfd mapping the policy belongs to the file's pages, so every process that
// maps them sees the same placement. A no-op without NUMA support in the kernel.
Status prefer_node(void* address, uint64_t bytes, unsigned node);

// The node whose memory holds the (touched) page at `address`
// (get_mempolicy MPOL_F_NODE | MPOL_F_ADDR), or -1 if it cannot be told.
int node_of_address(const void* address);

// CPUs the system is configured with (sched_getcpu() is always below it).
unsigned cpu_count();

// CPUs the calling thread may run on (its affinity mask, as taskset sets it); at least 1.
unsigned usable_cpu_count();

// Puts the calling thread in SCHED_IDLE: it runs only when its CPU has nothing else to run, below
// every nice level (Windows' zero page thread runs at priority 0 for the same reason).
Status set_idle_priority();

namespace detail {
// Where the kernel keeps the calling thread's CPU number, as an offset from
// the thread pointer: the cpu_id of the rseq area glibc registers for every
// thread (glibc 2.35+: __rseq_offset). 0 when there is none (an older glibc,
// rseq turned off by GLIBC_TUNABLES, a kernel without rseq).
extern const std::ptrdiff_t rseq_cpu_id_offset;
unsigned current_cpu_by_call();
}  // namespace detail

// The CPU the calling thread is running on now; 0 if the kernel cannot tell.
// Inline, one load where glibc has registered rseq: every allocation and free
// asks (its book, its arena cache, its node), and sched_getcpu behind two
// calls cost 6% of a same-owner 64 KiB pair in perf.
inline unsigned current_cpu() {
#if defined(__x86_64__)
    if (detail::rseq_cpu_id_offset != 0) [[likely]] {
        char* thread_pointer;
        asm("mov %%fs:0, %0" : "=r"(thread_pointer));
        // The kernel writes it on the way back to this thread: a volatile read, no other thread writes it.
        const int32_t cpu = *reinterpret_cast<const volatile int32_t*>(thread_pointer + detail::rseq_cpu_id_offset);
        if (cpu >= 0) return static_cast<unsigned>(cpu);  // -1: not registered yet, -2: registration failed
    }
#endif
    return detail::current_cpu_by_call();
}

// The NUMA node of `cpu`, from a table built once: libnuma's own
// numa_node_of_cpu costs about 360 ns a call (it rescans its cpu masks), far
// too much for every allocation. 0 without NUMA.
unsigned node_of_cpu(unsigned cpu);

// The NUMA node of the CPU the calling thread is running on now.
inline unsigned current_node() { return node_of_cpu(current_cpu()); }

}  // namespace ndisshm::os
