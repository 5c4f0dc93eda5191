// providers::SgDescriber: the SG elements of a block in each address mode. IOVA and arena-offset are
// formulas; physical mode is checked against pagemap read again here (runs are maximal, cover the
// length, pages locked until release), needs root with readable PFNs, and skips saying why otherwise.
#include "providers/address_mode.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "os/pagemap.hpp"
#include "common/physical_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::providers;  // the layer under test
namespace {

using test::drop_cap_sys_admin;
using test::HugePageReservation;
using test::vm_lck_kib;
using test::why_no_frames;

struct Element {
    uint64_t address, length;
};

// Like the core's sink: keeps what fits in the caller's SG list, counts everything.
struct RecordingSink final : SgSink {
    explicit RecordingSink(size_t capacity = SIZE_MAX) : capacity(capacity) {}
    void add(uint64_t address, uint64_t length) override {
        ++count;
        if (elements.size() < capacity) elements.push_back({address, length});
    }
    size_t capacity;
    size_t count = 0;
    std::vector<Element> elements;
};

// A stand-in for an arena: one memfd mapped shared, as memory::Arena does.
struct MemfdArena {
    MemfdArena(uint64_t bytes, bool huge) : bytes(bytes) {
        fd = ::memfd_create("ndisshm-address-mode-test", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0u));
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return;
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) base = static_cast<char*>(p);
    }
    ~MemfdArena() {
        if (base != nullptr) ::munmap(base, bytes);
        if (fd >= 0) ::close(fd);
    }
    // Faults the base pages in even ones first, then odd ones, so that neighbours in the mapping are
    // very unlikely to be neighbours in physical memory: the block spans many runs.
    void touch_scattered() {
        const uint64_t page = os::pagemap_page_bytes();
        ::madvise(base, bytes, MADV_NOHUGEPAGE);
        for (uint64_t first : {uint64_t{0}, page})
            for (uint64_t at = first; at < bytes; at += 2 * page) base[at] = 1;
    }
    SgBlock block(uint64_t offset, uint64_t length) const { return SgBlock{base + offset, length, offset}; }
    uint64_t bytes;
    int fd = -1;
    char* base = nullptr;
};

uint64_t total_length(const std::vector<Element>& elements) {
    return std::accumulate(elements.begin(), elements.end(), uint64_t{0},
                           [](uint64_t sum, const Element& e) { return sum + e.length; });
}

TEST(AddressModeTest, IovaIsBasePlusArenaOffsetOrTheVirtualAddress) {
    int byte = 0;
    for (uint64_t base : {uint64_t{0x7000'0000'0000}, uint64_t{0}}) {
        auto d = SgDescriber::create(SgDescriber::kIova, base);
        ASSERT_TRUE(d) << d.error().message();
        EXPECT_FALSE(d->locks_pages());
        RecordingSink sink;
        auto r = d->describe(SgBlock{&byte, 5000, 0x123000}, /*contiguous=*/true, sink);
        ASSERT_TRUE(r.ok()) << r.error;
        EXPECT_EQ(r.elements, 1u);
        ASSERT_EQ(sink.elements.size(), 1u);
        EXPECT_EQ(sink.elements[0].address, base != 0 ? base + 0x123000 : reinterpret_cast<uintptr_t>(&byte));
        EXPECT_EQ(sink.elements[0].length, 5000u);
    }
}

TEST(AddressModeTest, ArenaOffsetIsTheOffsetInTheMemfd) {
    auto d = SgDescriber::create(SgDescriber::kArenaOffset, 0x7000'0000'0000);  // the base plays no part
    ASSERT_TRUE(d);
    int byte = 0;
    RecordingSink sink;
    auto r = d->describe(SgBlock{&byte, 8192, 0x40000}, true, sink);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.elements, 1u);
    ASSERT_EQ(sink.elements.size(), 1u);
    EXPECT_EQ(sink.elements[0].address, 0x40000u);
    EXPECT_EQ(sink.elements[0].length, 8192u);
    d->release(SgBlock{&byte, 8192, 0x40000});  // nothing to undo, must be harmless
}

TEST(AddressModeTest, UnknownModesAndEmptyBlocksAreRefused) {
    auto bad = SgDescriber::create(3, 0);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("unknown address mode 3"), std::string::npos)
        << bad.error().message();
    auto d = SgDescriber::create(SgDescriber::kIova, 0);
    RecordingSink sink;
    int byte = 0;
    auto r = d->describe(SgBlock{&byte, 0, 0}, false, sink);
    EXPECT_EQ(r.status, ProviderStatus::InvalidParameter);
    EXPECT_EQ(r.elements, 0u);
    EXPECT_EQ(sink.count, 0u);
}

// Runs are maximal and exact: re-reading pagemap, each element is consecutive frames and the next
// page after it is not the next frame; together the elements cover exactly the length asked.
TEST(AddressModeTest, PhysicalRunsAreMaximalAndCoverTheLength) {
    NDISSHM_SKIP_WITHOUT_FRAMES();
    constexpr uint64_t kPages = 64;
    const uint64_t page = os::pagemap_page_bytes();
    auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
    ASSERT_TRUE(d) << d.error().message();
    // Scattered faults give many runs; pages faulted by describe() itself, in order, usually give some
    // runs of several pages, which is where coalescing shows.
    for (bool scattered : {true, false}) {
        MemfdArena arena(kPages * page, false);
        ASSERT_NE(arena.base, nullptr);
        if (scattered) arena.touch_scattered();
        for (uint64_t start : {uint64_t{0}, uint64_t{100}}) {  // page-aligned, as arenas give, and not
            SCOPED_TRACE((scattered ? "scattered, start " : "in order, start ") + std::to_string(start));
            const SgBlock block = arena.block(start, kPages * page - start - 100);
            RecordingSink sink;
            auto r = d->describe(block, false, sink);
            ASSERT_TRUE(r.ok()) << r.error;
            EXPECT_EQ(r.elements, sink.count);
            EXPECT_EQ(total_length(sink.elements), block.length);
            if (scattered) {
                EXPECT_GT(sink.count, 1u) << "scattered faults should not land on consecutive frames";
            }

            uint64_t pfns[kPages];
            auto pagemap = os::Pagemap::open();
            ASSERT_TRUE(pagemap && pagemap->frames(arena.base, kPages, pfns));
            uint64_t at = start;  // byte of the mapping the next element starts at
            for (const Element& e : sink.elements) {
                EXPECT_EQ(e.address, pfns[at / page] * page + at % page);
                const uint64_t last = (at + e.length - 1) / page;
                for (uint64_t p = at / page + 1; p <= last; ++p)
                    EXPECT_EQ(pfns[p], pfns[p - 1] + 1) << "page " << p;
                if (at + e.length < start + block.length) {
                    EXPECT_NE(pfns[last + 1], pfns[last] + 1)
                        << "the run could have gone on past page " << last;
                }
                at += e.length;
            }
            d->release(block);
        }
    }
}

TEST(AddressModeTest, PhysicalLocksPagesUntilRelease) {
    NDISSHM_SKIP_WITHOUT_FRAMES();
    const uint64_t page = os::pagemap_page_bytes();
    MemfdArena arena(32 * page, false);
    ASSERT_NE(arena.base, nullptr);
    auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->locks_pages());
    const uint64_t before = vm_lck_kib();
    const SgBlock block = arena.block(8 * page, 16 * page - 1);  // 16 pages, never touched before
    RecordingSink sink;
    auto r = d->describe(block, false, sink);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(vm_lck_kib(), before + 16 * page / 1024) << "describe faults in and locks the block's pages";
    d->release(block);
    EXPECT_EQ(vm_lck_kib(), before);
}

TEST(AddressModeTest, PhysicalContiguousIsRefusedWhenTheBlockSpansSeveralRuns) {
    NDISSHM_SKIP_WITHOUT_FRAMES();
    const uint64_t page = os::pagemap_page_bytes();
    MemfdArena arena(32 * page, false);
    ASSERT_NE(arena.base, nullptr);
    arena.touch_scattered();
    auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
    ASSERT_TRUE(d);
    const SgBlock block = arena.block(0, arena.bytes);
    const uint64_t before = vm_lck_kib();
    RecordingSink refused;
    auto r = d->describe(block, /*contiguous=*/true, refused);
    EXPECT_EQ(vm_lck_kib(), before) << "a refused block must leave nothing locked";

    RecordingSink all;
    ASSERT_TRUE(d->describe(block, false, all).ok());
    d->release(block);
    if (all.count == 1) GTEST_SKIP() << "the pages happened to be physically contiguous";
    EXPECT_EQ(r.status, ProviderStatus::Resources);
    EXPECT_EQ(r.elements, 0u);
    EXPECT_EQ(refused.count, 0u) << "nothing goes to the sink on failure";
    EXPECT_EQ(r.error, "CONTIGUOUS needs huge pages in physical mode: the block spans " +
                           std::to_string(all.count) + " physical runs");
}

// The describer does not know the caller's SG capacity: it hands over every run, and the core counts
// those that do not fit (BUFFER_TOO_SHORT with the number needed).
TEST(AddressModeTest, PhysicalDescribesEveryRunWhateverTheSinkHolds) {
    NDISSHM_SKIP_WITHOUT_FRAMES();
    const uint64_t page = os::pagemap_page_bytes();
    MemfdArena arena(16 * page, false);
    ASSERT_NE(arena.base, nullptr);
    arena.touch_scattered();
    auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
    ASSERT_TRUE(d);
    const SgBlock block = arena.block(0, arena.bytes);
    RecordingSink full, one(1);
    ASSERT_TRUE(d->describe(block, false, full).ok());
    auto r = d->describe(block, false, one);
    d->release(block);
    ASSERT_TRUE(r.ok()) << r.error;
    if (full.count == 1) GTEST_SKIP() << "the pages happened to be physically contiguous";
    EXPECT_EQ(one.count, full.count);
    EXPECT_EQ(r.elements, full.count);
    ASSERT_EQ(one.elements.size(), 1u);
    EXPECT_EQ(one.elements[0].address, full.elements[0].address);
}

TEST(AddressModeTest, PhysicalBlockOnOneHugePageIsOneRun) {
    NDISSHM_SKIP_WITHOUT_FRAMES();
    HugePageReservation reservation(1);
    if (!reservation.ok()) GTEST_SKIP() << "no 2 MiB huge page: " << reservation.why();
    constexpr uint64_t kHuge = uint64_t{2} << 20;
    MemfdArena arena(kHuge, true);
    ASSERT_NE(arena.base, nullptr) << "memfd of huge pages: " << std::strerror(errno);
    auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
    ASSERT_TRUE(d);
    for (uint64_t length : {kHuge, kHuge / 2 + 5}) {
        RecordingSink sink;
        const SgBlock block = arena.block(0, length);
        auto r = d->describe(block, /*contiguous=*/true, sink);
        ASSERT_TRUE(r.ok()) << r.error;
        ASSERT_EQ(sink.elements.size(), 1u);
        EXPECT_EQ(sink.elements[0].address % kHuge, 0u) << "a huge page is 2 MiB-aligned in physical memory";
        EXPECT_EQ(sink.elements[0].length, length);
        d->release(block);
    }
}

// As root, a child gives up CAP_SYS_ADMIN: a describer made before must now refuse with the reason
// and leave nothing locked, and a new one cannot be made. Not root: creation is refused here.
TEST(AddressModeTest, PhysicalWithoutCapSysAdminIsRefusedWithTheReason) {
    const std::string reason = "physical address mode needs CAP_SYS_ADMIN to read /proc/self/pagemap";
    if (!why_no_frames().empty()) {
        auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
        ASSERT_FALSE(d);
        EXPECT_NE(d.error().message().find(reason), std::string::npos) << d.error().message();
        return;
    }
    auto d = SgDescriber::create(SgDescriber::kPhysical, 0);
    ASSERT_TRUE(d);
    MemfdArena arena(4 * os::pagemap_page_bytes(), false);
    ASSERT_NE(arena.base, nullptr);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        if (!drop_cap_sys_admin()) ::_exit(20);
        const uint64_t before = vm_lck_kib();
        RecordingSink sink;
        auto r = d->describe(arena.block(0, arena.bytes), false, sink);
        if (r.status != ProviderStatus::InvalidParameter || r.error.find(reason) != 0) ::_exit(11);
        if (sink.count != 0 || vm_lck_kib() != before) ::_exit(12);
        auto again = SgDescriber::create(SgDescriber::kPhysical, 0);
        ::_exit(!again && again.error().message().find(reason) != std::string::npos ? 0 : 13);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "11: describe did not refuse with the reason, 12: it added elements or "
           "left pages locked, 13: create did not refuse, 20: capset failed";
}

}  // namespace
}  // namespace ndisshm::test
