// First-touch cost: what the kernel charges to make a page present the first
// time it is written (fault, page allocation, zeroing, page-table update).
// Every block ndisshm hands out from fresh arena space pays this, and so does
// every mmap pair in baseline_bench.cpp; these figures say how much of a pair
// is the kernel's.
//
//   first_touch/anon/bytes:4096            anonymous private mapping, MADV_NOHUGEPAGE
//   first_touch/memfd/bytes:4096           memfd, MAP_SHARED (what ndisshm's arenas are), MADV_NOHUGEPAGE
//   first_touch/anon/bytes:2097152         the same two, 2 MiB at a time: 512 faults of 4 KiB
//   first_touch/memfd/bytes:2097152
//   first_touch/anon_thp/bytes:2097152     MADV_HUGEPAGE: one 2 MiB fault when THP hands out a huge page
//   first_touch/memfd_thp/bytes:2097152    MADV_HUGEPAGE on a memfd: huge only if shmem THP allows it
//                                          (/sys/kernel/mm/transparent_hugepage/shmem_enabled)
//   first_touch/memfd_hugetlb/bytes:2097152  memfd_create(MFD_HUGETLB | MFD_HUGE_2MB): needs reserved huge
//                                          pages (HugePages_Free); reported as skipped when there are none
//
// One iteration makes one never-touched page of B bytes present: one byte is
// written in every 4 KiB of it (the suite's touch), so a 2 MiB figure is
// comparable whatever the kernel backs it with. Time is per page (ns per
// iteration); bytes/s is B per iteration. The mapping is 2 MiB aligned and
// holds 64 MiB (4 KiB pages) or 256 MiB (2 MiB pages); when every page of it
// has been touched, the timer is paused, it is unmapped (and its memfd closed)
// and a fresh one is made.
//
// On a virtual machine the 2 MiB figures also carry the host's work. With
// virtio-balloon free page reporting (the KVM guest of bench/README.md has
// it), a 2 MiB range the guest has kept free for a couple of seconds is
// handed back to the host, and the next first touch of it faults on the host
// as well: the same THP fault measured 0.24 ms in one repetition and 4-5 ms
// in another. 4 KiB pages are recycled hot by the guest and do not show it.
//
// Counter huge_backed: the fraction of a probe mapping of the same kind (four
// pages, touched the same way, before the timed run) that /proc/self/smaps
// shows backed by huge pages (AnonHugePages, ShmemPmdMapped, FilePmdMapped,
// *_Hugetlb). 1 means every page was one huge page; 0 means 4 KiB pages only.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "bench_support.hpp"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif

namespace bench {
namespace {

enum class Kind { Anon, Memfd, AnonThp, MemfdThp, MemfdHugetlb };

constexpr size_t kHuge = 2 * 1024 * 1024;

// /proc/meminfo's HugePages_Free (2 MiB pages on x86-64), 0 if unreadable.
long huge_pages_free() {
    std::ifstream in("/proc/meminfo");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("HugePages_Free:", 0) == 0) return std::stol(line.substr(line.find(':') + 1));
    }
    return 0;
}

// Bytes of the mapping that starts at `base` backed by huge pages, from
// /proc/self/smaps.
uint64_t huge_bytes_of(const void* base) {
    std::ifstream in("/proc/self/smaps");
    const auto want = reinterpret_cast<uintptr_t>(base);
    bool inside = false;
    uint64_t kib = 0;
    for (std::string line; std::getline(in, line);) {
        const size_t dash = line.find('-');
        const bool header = dash != std::string::npos && dash > 0 && line.find(':') > dash &&
                            line.find_first_not_of("0123456789abcdef") == dash;
        if (header) {
            if (inside) break;
            inside = std::stoull(line.substr(0, dash), nullptr, 16) == want;
            continue;
        }
        if (!inside) continue;
        for (const char* field :
             {"AnonHugePages:", "ShmemPmdMapped:", "FilePmdMapped:", "Shared_Hugetlb:", "Private_Hugetlb:"}) {
            if (line.rfind(field, 0) == 0) kib += std::stoull(line.substr(std::strlen(field)));
        }
    }
    return kib * 1024;
}

// A mapping of `pages` pages of `page_bytes`, 2 MiB aligned, never touched.
class Region {
public:
    Region(Kind kind, size_t page_bytes, size_t pages) : kind_(kind), bytes_(page_bytes * pages), pages_(pages) {}
    ~Region() { unmake(); }
    Region(const Region&) = delete;
    Region& operator=(const Region&) = delete;

    // "" on success, else why not.
    std::string make() {
        if (kind_ == Kind::Memfd || kind_ == Kind::MemfdThp || kind_ == Kind::MemfdHugetlb) {
            const unsigned flags = MFD_CLOEXEC | (kind_ == Kind::MemfdHugetlb ? MFD_HUGETLB | MFD_HUGE_2MB : 0U);
            fd_ = ::memfd_create("ndisshm_bench_first_touch", flags);
            if (fd_ < 0) return std::string("memfd_create: ") + std::strerror(errno);
            if (::ftruncate(fd_, static_cast<off_t>(bytes_)) != 0) return std::string("ftruncate: ") + std::strerror(errno);
        }
        // Reserve 2 MiB more than needed, then map the region at the first
        // 2 MiB boundary inside and give back the rest.
        void* r = ::mmap(nullptr, bytes_ + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED) return std::string("mmap (reserve): ") + std::strerror(errno);
        const auto raw = reinterpret_cast<uintptr_t>(r);
        const uintptr_t aligned = (raw + kHuge - 1) & ~(kHuge - 1);
        void* p = fd_ >= 0 ? ::mmap(reinterpret_cast<void*>(aligned), bytes_, PROT_READ | PROT_WRITE,
                                    MAP_SHARED | MAP_FIXED, fd_, 0)
                           : ::mmap(reinterpret_cast<void*>(aligned), bytes_, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        const int map_errno = errno;
        if (aligned > raw) ::munmap(r, aligned - raw);
        const uintptr_t end = aligned + bytes_;
        if (raw + bytes_ + kHuge > end) ::munmap(reinterpret_cast<void*>(end), raw + bytes_ + kHuge - end);
        if (p == MAP_FAILED) {
            ::munmap(reinterpret_cast<void*>(aligned), bytes_);
            return std::string("mmap: ") + std::strerror(map_errno);
        }
        base_ = static_cast<unsigned char*>(p);
        if (kind_ != Kind::MemfdHugetlb) {
            const int advice = kind_ == Kind::AnonThp || kind_ == Kind::MemfdThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
            // A kernel without THP refuses the advice; the probe then says 0.
            (void)::madvise(base_, bytes_, advice);
        }
        return "";
    }

    void unmake() {
        if (base_ != nullptr) ::munmap(base_, bytes_);
        if (fd_ >= 0) ::close(fd_);
        base_ = nullptr;
        fd_ = -1;
    }

    unsigned char* page(size_t i, size_t page_bytes) const { return base_ + i * page_bytes; }
    unsigned char* base() const { return base_; }
    size_t pages() const { return pages_; }
    size_t bytes() const { return bytes_; }

private:
    Kind kind_;
    size_t bytes_;
    size_t pages_;
    unsigned char* base_ = nullptr;
    int fd_ = -1;
};

void BM_FirstTouch(benchmark::State& state, Kind kind) {
    const auto page_bytes = static_cast<size_t>(state.range(0));
    size_t pages = page_bytes == 4096 ? (64 << 20) / page_bytes : (256 << 20) / page_bytes;
    if (kind == Kind::MemfdHugetlb) {
        // The pool as the machine has it, not what is left of it: a bed kept from an earlier benchmark
        // (Auto page mode) may hold its pages, and how many depends on the random order of the run. A
        // repetition that found fewer would fault in fewer pages, or skip, where the others did not.
        drop_shared_beds();
        const long free_pages = huge_pages_free();
        if (free_pages < 8) {
            state.SkipWithError(("skipped: no 2 MiB huge pages to fault in (HugePages_Free = " +
                                 std::to_string(free_pages) + ", needs at least 8)")
                                    .c_str());
            return;
        }
        if (static_cast<size_t>(free_pages) < pages) pages = static_cast<size_t>(free_pages);
    }

    // The probe: how the kernel backs this kind of mapping.
    double huge_backed = 0;
    {
        Region probe(kind, page_bytes, 4);
        const std::string why = probe.make();
        if (!why.empty()) {
            state.SkipWithError(("skipped: " + why).c_str());
            return;
        }
        for (size_t i = 0; i < probe.pages(); ++i) touch_pages(probe.page(i, page_bytes), page_bytes);
        huge_backed = static_cast<double>(huge_bytes_of(probe.base())) / static_cast<double>(probe.bytes());
    }

    Region region(kind, page_bytes, pages);
    std::string why = region.make();
    size_t next = 0;
    if (why.empty()) {
        for (auto _ : state) {
            if (next == region.pages()) {
                state.PauseTiming();
                region.unmake();
                why = region.make();
                next = 0;
                state.ResumeTiming();
                if (!why.empty()) break;
            }
            touch_pages(region.page(next++, page_bytes), page_bytes);
        }
    }
    if (!why.empty()) state.SkipWithError(why.c_str());
    state.counters["huge_backed"] = huge_backed;
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(page_bytes));
}

BENCHMARK_CAPTURE(BM_FirstTouch, anon, Kind::Anon)
    ->Name("first_touch/anon")
    ->ArgName("bytes")
    ->Arg(4 * kKiB)
    ->Arg(2 * kMiB)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_FirstTouch, memfd, Kind::Memfd)
    ->Name("first_touch/memfd")
    ->ArgName("bytes")
    ->Arg(4 * kKiB)
    ->Arg(2 * kMiB)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_FirstTouch, anon_thp, Kind::AnonThp)
    ->Name("first_touch/anon_thp")
    ->ArgName("bytes")
    ->Arg(2 * kMiB)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_FirstTouch, memfd_thp, Kind::MemfdThp)
    ->Name("first_touch/memfd_thp")
    ->ArgName("bytes")
    ->Arg(2 * kMiB)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_FirstTouch, memfd_hugetlb, Kind::MemfdHugetlb)
    ->Name("first_touch/memfd_hugetlb")
    ->ArgName("bytes")
    ->Arg(2 * kMiB)
    ->UseRealTime();

}  // namespace
}  // namespace bench
