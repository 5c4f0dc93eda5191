// Helpers for the memory tests (unit and conformance): huge pages reserved for the length of a test, and
// byte patterns to prove that no data crosses from one user of memory to the next. Only /proc, /sys and
// libc: usable from tests that see nothing of ndisshm but its public API.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace ndisshm::test {

inline long read_long(const char* path) {
    std::FILE* f = std::fopen(path, "re");
    if (f == nullptr) return -1;
    long v = -1;
    if (std::fscanf(f, "%ld", &v) != 1) v = -1;
    std::fclose(f);
    return v;
}

inline bool write_long(const char* path, long v) {
    std::FILE* f = std::fopen(path, "we");
    if (f == nullptr) return false;
    const bool ok = std::fprintf(f, "%ld\n", v) > 0;
    return std::fclose(f) == 0 && ok;
}

// At least `pages` free 2 MiB huge pages in the system's pool while this object lives: it raises
// /proc/sys/vm/nr_hugepages as needed and puts the old value back when it goes (pages still in use then
// become surplus pages, which the kernel frees when they are released, so nothing breaks). Needs root.
// Test processes that reserve huge pages are serialised by a lock file, since ctest runs tests in
// parallel and two of them moving nr_hugepages at once would undo each other's work. A margin above
// `pages` is reserved because other tests running meanwhile with page_mode AUTO may take a few.
// When the pages cannot be had, ok() is false and why() says why: the test should GTEST_SKIP with it.
class HugePageReservation {
public:
    static constexpr const char* kTotal = "/proc/sys/vm/nr_hugepages";
    static constexpr const char* kFree = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
    static constexpr long kMargin = 32;

    // empty_pool: instead of reserving, leave no free huge pages at all (for tests of running out).
    explicit HugePageReservation(long pages, bool empty_pool = false) {
        if (::access(kFree, R_OK) != 0) {
            why_ = "this kernel has no 2 MiB hugetlb pages (" + std::string(kFree) + " is missing)";
            return;
        }
        lock_ = ::open("/tmp/ndisshm-test-hugepages.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (lock_ < 0 || ::flock(lock_, LOCK_EX) != 0) {
            why_ = std::string("cannot take /tmp/ndisshm-test-hugepages.lock: ") + std::strerror(errno);
            return;
        }
        old_total_ = read_long(kTotal);
        const long free_now = read_long(kFree);
        if (empty_pool) {
            if (free_now > 0 && (::geteuid() != 0 || !write_long(kTotal, old_total_ - free_now))) {
                why_ = "cannot empty the huge page pool (needs root to write " + std::string(kTotal) + ")";
                return;
            }
            raised_ = free_now > 0;  // "changed": put back when done
            ok_ = read_long(kFree) == 0;
            if (!ok_) why_ = "the huge page pool would not empty";
            return;
        }
        const long want = pages + kMargin;
        if (free_now < want) {
            if (::geteuid() != 0) {
                why_ = "needs root to reserve huge pages (writes " + std::string(kTotal) + "); " +
                       std::to_string(free_now) + " free";
                return;
            }
            if (!write_long(kTotal, old_total_ + (want - free_now))) {
                why_ = "writing " + std::string(kTotal) + " failed: " + std::strerror(errno);
                return;
            }
            raised_ = true;
        }
        const long free_after = read_long(kFree);
        if (free_after < pages) {
            why_ = "asked the kernel for " + std::to_string(want) + " free huge pages, it has " +
                   std::to_string(free_after) + " (memory too fragmented for 2 MiB pages?)";
            return;
        }
        ok_ = true;
    }
    ~HugePageReservation() {
        if (raised_) write_long(kTotal, old_total_);
        if (lock_ >= 0) ::close(lock_);  // releases the flock
    }
    HugePageReservation(const HugePageReservation&) = delete;
    HugePageReservation& operator=(const HugePageReservation&) = delete;

    bool ok() const { return ok_; }
    const std::string& why() const { return why_; }
    static long free_pages() { return read_long(kFree); }

private:
    int lock_ = -1;
    long old_total_ = -1;
    bool raised_ = false;
    bool ok_ = false;
    std::string why_;
};

// KernelPageSize (KiB) of the mapping that holds `address`, from /proc/self/smaps; -1 if not found.
inline long kernel_page_kib(const void* address) {
    std::FILE* f = std::fopen("/proc/self/smaps", "re");
    if (f == nullptr) return -1;
    const auto a = reinterpret_cast<uintptr_t>(address);
    char line[512];
    bool inside = false;
    long kib = -1;
    while (std::fgets(line, sizeof(line), f) != nullptr) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && std::strchr(line, ':') != nullptr &&
            std::strchr(line, '-') < std::strchr(line, ' ')) {
            inside = a >= lo && a < hi;
        } else if (inside && std::sscanf(line, "KernelPageSize: %ld kB", &kib) == 1) {
            break;
        }
    }
    std::fclose(f);
    return inside ? kib : -1;
}

// The byte at index i of a block filled for `tag`: never 0, so a zeroed byte is always told apart.
inline unsigned char pattern_byte(uint64_t tag, uint64_t i) {
    return static_cast<unsigned char>(((tag * 131 + i * 7) % 255) + 1);
}

// The pattern repeats every 255 bytes: the first period is written byte by byte, the rest copied in
// doubling steps (fast enough for tens of MiB under the sanitizers).
inline void fill_pattern(void* p, uint64_t bytes, uint64_t tag) {
    auto* b = static_cast<unsigned char*>(p);
    uint64_t done = bytes < 255 ? bytes : 255;
    for (uint64_t i = 0; i < done; ++i) b[i] = pattern_byte(tag, i);
    while (done < bytes) {
        const uint64_t n = (done / 255) * 255 < bytes - done ? (done / 255) * 255 : bytes - done;
        std::memcpy(b + done, b, n);
        done += n;
    }
}

// Index of the first non-zero byte, or `bytes` if all are zero.
inline uint64_t first_nonzero(const void* p, uint64_t bytes) {
    const auto* b = static_cast<const unsigned char*>(p);
    uint64_t i = 0;
    // Word at a time (blocks are page-aligned), then the tail.
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        std::memcpy(&w, b + i, 8);
        if (w != 0) break;
    }
    for (; i < bytes; ++i)
        if (b[i] != 0) return i;
    return bytes;
}

}  // namespace ndisshm::test
