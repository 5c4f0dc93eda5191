// os/pagemap: frame numbers from /proc/self/pagemap (hidden ones are an error, never address 0) and
// page locking as the kernel accounts it (VmLck). Tests that need real frame numbers skip, saying why,
// unless the process is root with readable PFNs; CI runs as root, so there they run.
#include "os/pagemap.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "common/physical_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::os;  // the layer under test
namespace {

using test::drop_cap_sys_admin;
using test::vm_lck_kib;

// Anonymous pages, unmapped on destruction.
struct Mapping {
    explicit Mapping(uint64_t bytes) : bytes(bytes) {
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        address = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
    }
    ~Mapping() {
        if (address != nullptr) ::munmap(address, bytes);
    }
    void touch() {
        for (uint64_t i = 0; i < bytes; i += pagemap_page_bytes()) address[i] = 1;
    }
    uint64_t bytes;
    char* address;
};

TEST(PagemapTest, EntriesAreOnePerBasePage) {
    EXPECT_EQ(pagemap_page_bytes(), static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)));
}

TEST(PagemapTest, LockingShowsInVmLckAndUnlockingTakesItBack) {
    const uint64_t page = pagemap_page_bytes();
    Mapping m(16 * page);
    ASSERT_NE(m.address, nullptr);
    const uint64_t before = vm_lck_kib();
    auto locked = lock_pages(m.address, m.bytes);
    if (!locked && ::geteuid() != 0)
        GTEST_SKIP() << "mlock refused without root: " << locked.error().message();
    ASSERT_TRUE(locked) << locked.error().message();
    EXPECT_EQ(vm_lck_kib(), before + m.bytes / 1024);
    // Locks do not nest: locking again and unlocking once leaves nothing locked.
    ASSERT_TRUE(lock_pages(m.address, m.bytes));
    EXPECT_EQ(vm_lck_kib(), before + m.bytes / 1024);
    auto unlocked = unlock_pages(m.address, m.bytes);
    ASSERT_TRUE(unlocked) << unlocked.error().message();
    EXPECT_EQ(vm_lck_kib(), before);
}

TEST(PagemapTest, LockingFailuresNameTheCallAndErrno) {
    const uint64_t page = pagemap_page_bytes();
    void* hole = nullptr;
    {
        Mapping m(4 * page);
        hole = m.address;
    }  // unmapped: mlock must refuse it
    auto s = lock_pages(hole, 4 * page);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().err, ENOMEM);
    EXPECT_NE(s.error().operation.find("mlock("), std::string::npos) << s.error().operation;
    EXPECT_FALSE(s.error().detail.empty());
}

TEST(PagemapTest, UntouchedPagesAreNotPresentRatherThanFrameZero) {
    const uint64_t page = pagemap_page_bytes();
    Mapping m(4 * page);
    ASSERT_NE(m.address, nullptr);
    m.address[0] = 1;  // page 0 present, page 1 never touched
    auto pagemap = Pagemap::open();
    ASSERT_TRUE(pagemap) << pagemap.error().message();
    uint64_t pfn = 0;
    // Absence is told apart from hidden frames with or without CAP_SYS_ADMIN (the present bit is
    // never hidden), and the message names the page.
    auto s = pagemap->frames(m.address + page, 1, &pfn);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().detail.find("not present"), std::string::npos) << s.error().message();
    char at[32];
    std::snprintf(at, sizeof at, "%#llx",
                  static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(m.address + page)));
    EXPECT_NE(s.error().detail.find(at), std::string::npos) << s.error().message();
    EXPECT_NE(s.error().err, EPERM);
}

TEST(PagemapTest, PresentPagesHaveRealFramesAsRoot) {
    NDISSHM_SKIP_WITHOUT_FRAMES();
    const uint64_t page = pagemap_page_bytes();
    Mapping m(8 * page);
    ASSERT_NE(m.address, nullptr);
    m.touch();
    auto pagemap = Pagemap::open();
    ASSERT_TRUE(pagemap);
    uint64_t pfns[8] = {};
    auto s = pagemap->frames(m.address + 100, 8, pfns);  // any address in the first page will do
    ASSERT_TRUE(s) << s.error().message();
    for (int i = 0; i < 8; ++i) {
        EXPECT_NE(pfns[i], 0u) << i;
        for (int j = 0; j < i; ++j) EXPECT_NE(pfns[i], pfns[j]) << "two pages cannot share a frame";
    }
}

// Without CAP_SYS_ADMIN the kernel reports present pages with frame 0: that must come back as an
// error saying so (err EPERM), never as physical address 0. As root, a child gives the capability up.
TEST(PagemapTest, HiddenFramesAreAnErrorNamingTheCapability) {
    auto check = []() -> int {
        auto readable = check_physical_frames_readable();
        if (readable) return 10;
        if (readable.error().err != EPERM) return 11;
        if (readable.error().detail.find("CAP_SYS_ADMIN") == std::string::npos) return 12;
        Mapping m(pagemap_page_bytes());
        m.touch();
        auto pagemap = Pagemap::open();
        if (!pagemap) return pagemap.error().err == EPERM ? 0 : 13;  // refused outright: fine too
        uint64_t pfn = 0;
        auto s = pagemap->frames(m.address, 1, &pfn);
        return !s && s.error().err == EPERM ? 0 : 14;
    };
    if (::geteuid() != 0) {
        EXPECT_EQ(check(), 0);
        return;
    }
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) ::_exit(drop_cap_sys_admin() ? check() : 20);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "10: readable without CAP_SYS_ADMIN, 11: not EPERM, 12: message does "
           "not name the capability, 13/14: reading frames, 20: capset failed";
}

}  // namespace
}  // namespace ndisshm::test
