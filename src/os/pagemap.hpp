// Physical addresses of this process's pages, and page locking, for SG lists in physical mode.
//
// /proc/self/pagemap holds one 64-bit entry per base page (4 KiB) of the address space, huge pages
// included (each 4 KiB piece of a huge page gets its own entry, with consecutive frame numbers):
// bit 63 present, bit 62 swapped, bits 0-54 the page frame number (PFN). Since Linux 4.2 the PFN reads
// as 0 unless whoever opened the file had CAP_SYS_ADMIN, so a present page with PFN 0 means "hidden",
// never "frame 0": it is reported as an Error with err = EPERM, never as address 0.
//
// A PFN means something only while the page stays where it is: lock the range first (lock_pages makes
// it resident and keeps it from being swapped out). Compaction may still migrate locked base pages
// unless /proc/sys/vm/compact_unevictable_allowed is 0; huge pages are not moved by compaction. That
// is the same bargain DPDK makes with IOVA-as-PA.
#pragma once

#include <cstdint>

#include "base/result.hpp"

namespace ndisshm::os {

// The granularity of pagemap entries and of locking: the base page size.
uint64_t pagemap_page_bytes();

// An open /proc/self/pagemap. Whether PFNs are visible is decided when it is opened (by the opener's
// CAP_SYS_ADMIN), and the file stays bound to the process that opened it (a forked child reading it
// sees its parent's pages): open one where and when it is used. Move-only; reads are pread, so one
// object may be read from several threads.
class Pagemap {
public:
    static Result<Pagemap> open();
    Pagemap(Pagemap&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Pagemap& operator=(Pagemap&& o) noexcept;
    Pagemap(const Pagemap&) = delete;
    Pagemap& operator=(const Pagemap&) = delete;
    ~Pagemap();

    // The PFNs of `count` base pages, starting with the page that holds `address`, into pfns[0..count).
    // Fails naming the page if one is not present (never touched, or swapped out), with err = EPERM if
    // the PFNs are hidden (no CAP_SYS_ADMIN), or with the errno of the read.
    Status frames(const void* address, uint64_t count, uint64_t* pfns) const;

private:
    explicit Pagemap(int fd) : fd_(fd) {}
    int fd_ = -1;
};

// Whether this process can read real PFNs: opens pagemap and reads the frame of a page that is surely
// present. The Error says why not (err = EPERM when the PFNs are hidden or the file is refused), and
// names the effective uid, since "run as root" is the usual fix.
Status check_physical_frames_readable();

// mlock/munlock the pages that hold [address, address + bytes): resident, never swapped out, until
// unlocked. Locks do not nest: one munlock undoes any number of mlocks of a page. Locked memory counts
// against RLIMIT_MEMLOCK (unlimited with CAP_IPC_LOCK) and shows as VmLck in /proc/self/status (except
// hugetlb pages, which the kernel never counts as locked because it never swaps them).
Status lock_pages(const void* address, uint64_t bytes);
Status unlock_pages(const void* address, uint64_t bytes);

}  // namespace ndisshm::os
