// Linux implementation of pagemap.hpp.
#include "os/pagemap.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "os/fault.hpp"

namespace ndisshm::os {
namespace {

constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kSwapped = uint64_t{1} << 62;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;
constexpr const char* kPath = "/proc/self/pagemap";

Error errno_error(std::string operation) {
    int e = errno;
    return Error{std::move(operation), e, std::strerror(e)};
}

std::string hex(const void* address) {
    char text[2 + 16 + 1];
    std::snprintf(text, sizeof text, "%#llx",
                  static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(address)));
    return text;
}

std::string range(const void* address, uint64_t bytes) {
    return hex(address) + ", " + std::to_string(bytes) + " bytes";
}

}  // namespace

uint64_t pagemap_page_bytes() {
    static const uint64_t bytes = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    return bytes;
}

Result<Pagemap> Pagemap::open() {
    int fd = fault::call("open", -1, [] { return ::open(kPath, O_RDONLY | O_CLOEXEC); });
    if (fd < 0) {
        Error e = errno_error(std::string("open(") + kPath + ")");
        // Refusing the file outright (a hardened /proc) means the same to callers as hidden PFNs.
        if (e.err == EACCES) e.err = EPERM;
        return e;
    }
    return Pagemap(fd);
}

Pagemap& Pagemap::operator=(Pagemap&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.fd_;
        o.fd_ = -1;
    }
    return *this;
}

Pagemap::~Pagemap() {
    if (fd_ >= 0) ::close(fd_);
}

Status Pagemap::frames(const void* address, uint64_t count, uint64_t* pfns) const {
    const uint64_t page = pagemap_page_bytes();
    const uint64_t first = reinterpret_cast<uintptr_t>(address) / page;
    // One pread for the whole range, the entries landing where the caller wants the PFNs; pagemap may
    // return fewer bytes than asked (it works in chunks), so carry on from where it stopped.
    auto* out = reinterpret_cast<char*>(pfns);
    const uint64_t want = count * sizeof(uint64_t);
    uint64_t got = 0;
    while (got < want) {
        ssize_t n = fault::call("pread", ssize_t{-1}, [&] {
            return ::pread(fd_, out + got, want - got, static_cast<off_t>(first * sizeof(uint64_t) + got));
        });
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return errno_error(std::string("pread(") + kPath + ", " + range(address, count * page) + ")");
        if (n == 0) {
            return Error{std::string("pread(") + kPath + ")", 0,
                         "end of file before the entry of page " +
                             hex(reinterpret_cast<const void*>((first + got / sizeof(uint64_t)) * page))};
        }
        got += static_cast<uint64_t>(n);
    }
    for (uint64_t i = 0; i < count; ++i) {
        const uint64_t entry = pfns[i];
        const auto* at = reinterpret_cast<const void*>((first + i) * page);
        if ((entry & kPresent) == 0 || (entry & kSwapped) != 0) {
            return Error{std::string("read ") + kPath, 0,
                         "page " + hex(at) + " is not present in memory (never touched, or swapped out)"};
        }
        pfns[i] = entry & kPfnMask;
        if (pfns[i] == 0) {
            return Error{std::string("read ") + kPath, EPERM,
                         "page " + hex(at) +
                             " is present but its frame number reads as 0: the kernel hides "
                             "frame numbers from processes without CAP_SYS_ADMIN (effective uid " +
                             std::to_string(::geteuid()) + ")"};
        }
    }
    return Ok{};
}

Status check_physical_frames_readable() {
    auto pagemap = Pagemap::open();
    if (!pagemap) return pagemap.error();
    // A page we have just written is present: a local, stored through volatile so that the store
    // happens in memory before the kernel looks at its page.
    uint64_t probe = 0;
    *static_cast<volatile uint64_t*>(&probe) = 1;
    uint64_t pfn = 0;
    return pagemap->frames(&probe, 1, &pfn);
}

// The system calls, not libc's wrappers: AddressSanitizer replaces mlock and munlock with functions
// that do nothing (locking its shadow memory would be absurd), which would leave the pages neither
// resident nor locked and the frame numbers meaningless in every sanitized build.
Status lock_pages(const void* address, uint64_t bytes) {
    if (fault::call("mlock", -1L, [&] { return ::syscall(SYS_mlock, address, bytes); }) != 0)
        return errno_error("mlock(" + range(address, bytes) + ")");
    return Ok{};
}

Status unlock_pages(const void* address, uint64_t bytes) {
    if (fault::call("munlock", -1L, [&] { return ::syscall(SYS_munlock, address, bytes); }) != 0)
        return errno_error("munlock(" + range(address, bytes) + ")");
    return Ok{};
}

}  // namespace ndisshm::os
