// GuestMemory::adopt: a guest's fd is checked for what it is (a memfd, sealed
// against shrinking or sealable, of the size claimed, within limits) before it
// is mapped shared, read/write, never executable; then carved in pages.
#include "providers/guest_memory.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

namespace ndisshm::test {
using namespace ndisshm::providers;  // the layer under test
namespace {

constexpr uint64_t kMiB = 1 << 20;

os::UniqueFd memfd(uint64_t bytes, unsigned seals, const char* name = "gm-test") {
    const int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
    if (seals != 0) {
        EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, seals), 0);
    }
    return os::UniqueFd(fd);
}

Result<std::shared_ptr<GuestMemory>> adopt(os::UniqueFd fd, uint64_t claimed, uint64_t base = 0) {
    return GuestMemory::adopt(std::move(fd), claimed, base, GuestMemoryLimits{kMiB, 64 * kMiB}, "vm");
}

void expect_refused(Result<std::shared_ptr<GuestMemory>> r, const std::string& words, int err) {
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find(words), std::string::npos) << r.error().message();
    EXPECT_EQ(r.error().err, err) << r.error().message();
}

TEST(GuestMemory, AdoptsASealedMemfdAndMapsItSharedWritableNeverExecutable) {
    auto fd = memfd(4 * kMiB, F_SEAL_SHRINK, "gm-mapped");
    const int raw = fd.get();
    auto m = adopt(std::move(fd), 4 * kMiB, 0x40000000);
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_EQ((*m)->size(), 4 * kMiB);
    EXPECT_EQ((*m)->physical(4096), 0x40000000u + 4096);
    // Shared: what the host writes, the guest's own mapping of the file sees.
    (*m)->address(8192)[0] = std::byte{0x5a};
    unsigned char b = 0;
    ASSERT_EQ(::pread(raw, &b, 1, 8192), 1);
    EXPECT_EQ(b, 0x5a);
    std::ifstream maps("/proc/self/maps");
    bool seen = false;
    for (std::string line; std::getline(maps, line);) {
        if (line.find("/memfd:gm-mapped") == std::string::npos) continue;
        seen = true;
        EXPECT_EQ(line.substr(line.find(' ') + 1, 4), "rw-s") << line;
    }
    EXPECT_TRUE(seen);
}

TEST(GuestMemory, SealsAnUnsealedMemfdSoTheGuestCanNoLongerShrinkIt) {
    auto fd = memfd(2 * kMiB, 0);
    const int guest_side = ::dup(fd.get());
    auto m = adopt(std::move(fd), 2 * kMiB);
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_NE(::fcntl(guest_side, F_GET_SEALS) & F_SEAL_SHRINK, 0);
    EXPECT_EQ(::ftruncate(guest_side, kMiB), -1);
    EXPECT_EQ(errno, EPERM);
    ::close(guest_side);
}

TEST(GuestMemory, RefusesARegionOutsideTheLimits) {
    expect_refused(adopt(memfd(512 * 1024, F_SEAL_SHRINK), 512 * 1024), "region too small", ERANGE);
    expect_refused(adopt(memfd(128 * kMiB, F_SEAL_SHRINK), 128 * kMiB), "region too large", ERANGE);
}

TEST(GuestMemory, RefusesWhatIsNotAMemfd) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ::close(p[1]);
    expect_refused(adopt(os::UniqueFd(p[0]), 2 * kMiB), "not a memfd", EINVAL);
    char path[] = "/tmp/gm-test-XXXXXX";
    const int file = ::mkstemp(path);
    ASSERT_GE(file, 0);
    ::unlink(path);
    ASSERT_EQ(::ftruncate(file, 2 * kMiB), 0);
    expect_refused(adopt(os::UniqueFd(file), 2 * kMiB), "not a memfd", EINVAL);
    // A tmpfs file answers F_GET_SEALS like a memfd does; it is still not one.
    const int shm = ::open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
    if (shm >= 0) {
        ASSERT_EQ(::ftruncate(shm, 2 * kMiB), 0);
        expect_refused(adopt(os::UniqueFd(shm), 2 * kMiB), "not a memfd", EINVAL);
    }
}

TEST(GuestMemory, RefusesASizeThatDoesNotMatchTheMemfd) {
    expect_refused(adopt(memfd(2 * kMiB, F_SEAL_SHRINK), 4 * kMiB), "size mismatch", EINVAL);
    expect_refused(adopt(memfd(4 * kMiB, F_SEAL_SHRINK), 2 * kMiB), "size mismatch", EINVAL);
    expect_refused(adopt(memfd(2 * kMiB, F_SEAL_SHRINK), 2 * kMiB + 1), "page size", EINVAL);
}

TEST(GuestMemory, RefusesAMemfdThatCannotBeSealedOrWritten) {
    expect_refused(adopt(memfd(2 * kMiB, F_SEAL_SEAL), 2 * kMiB), "not sealed against shrinking", EPERM);
    expect_refused(adopt(memfd(2 * kMiB, F_SEAL_SHRINK | F_SEAL_WRITE), 2 * kMiB), "sealed against writing", EPERM);
}

TEST(GuestMemory, RefusesABaseThatWrapsAround) {
    expect_refused(adopt(memfd(2 * kMiB, F_SEAL_SHRINK), 2 * kMiB, ~uint64_t{0} - 4095), "overflows", EINVAL);
}

TEST(GuestMemory, CarvesPageAlignedRangesUntilFullAndTakesBackOnlyWhatItGave) {
    auto m = adopt(memfd(kMiB, F_SEAL_SHRINK), kMiB);
    ASSERT_TRUE(m.ok());
    GuestMemory& g = **m;
    auto a = g.carve(100);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->length, 4096u);
    EXPECT_EQ(a->offset % 4096, 0u);
    EXPECT_EQ(a->address, g.address(a->offset));
    auto rest = g.carve(kMiB - 4096);
    ASSERT_TRUE(rest.ok());
    auto none = g.carve(1);
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().err, ENOMEM);
    EXPECT_FALSE(g.release(a->offset, 8192)) << "wrong length";
    EXPECT_FALSE(g.release(a->offset + 4096 * 300, 4096)) << "middle of another range";
    EXPECT_FALSE(g.release(kMiB, 4096)) << "outside";
    EXPECT_TRUE(g.release(a->offset, a->length));
    EXPECT_FALSE(g.release(a->offset, a->length)) << "twice";
    EXPECT_TRUE(g.release(rest->offset, rest->length));
    EXPECT_EQ(g.bytes_in_use(), 0u);
    EXPECT_TRUE(g.contains(0, kMiB));
    EXPECT_FALSE(g.contains(1, kMiB));
    EXPECT_FALSE(g.contains(~uint64_t{0}, 2));
}

}  // namespace
}  // namespace ndisshm::test
