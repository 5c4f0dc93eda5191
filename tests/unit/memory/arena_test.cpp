// memory::Arena: one memfd, sealed against shrinking, mapped once and carved into page-aligned blocks
// that are zero when handed out, and that are the file's own bytes (shareable by fd + offset).
#include "memory/arena.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ndisshm::test {
using namespace ndisshm::memory;  // the layer under test
namespace {

class ArenaTest : public ::testing::Test {
protected:
    void SetUp() override {
        page_ = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        ArenaConfig c;
        c.name = "ndisshm-arena-test";
        c.capacity_bytes = 64 * page_;
        c.grow_step_bytes = 16 * page_;
        auto a = Arena::create(c);
        ASSERT_TRUE(a) << a.error().message();
        arena_ = std::move(*a);
    }
    static bool all_zero(const std::byte* p, uint64_t n) {
        for (uint64_t i = 0; i < n; ++i)
            if (p[i] != std::byte{0}) return false;
        return true;
    }

    uint64_t page_ = 0;
    std::unique_ptr<Arena> arena_;
};

TEST_F(ArenaTest, BlocksArePageAlignedAndRoundedUpToPages) {
    for (uint64_t bytes : {uint64_t{1}, page_ - 1, page_, page_ + 1, 5 * page_ + 7}) {
        auto b = arena_->allocate(bytes);
        ASSERT_TRUE(b) << bytes;
        EXPECT_EQ(b->offset % page_, 0u);
        EXPECT_EQ(b->length, (bytes + page_ - 1) / page_ * page_);
        EXPECT_EQ(b->address, arena_->base() + b->offset);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(b->address) % page_, 0u);
    }
    EXPECT_EQ(arena_->page_bytes(), page_);
}

TEST_F(ArenaTest, FreshBlocksAreZeroWithoutBeingCleared) {
    auto b = arena_->allocate(3 * page_);
    ASSERT_TRUE(b);
    EXPECT_TRUE(all_zero(b->address, b->length));
    EXPECT_EQ(arena_->stats().zeroed_bytes, 0u) << "never-used pages need no clearing";
}

TEST_F(ArenaTest, ReusedBlocksAreZeroed) {
    auto first = arena_->allocate(3 * page_);
    ASSERT_TRUE(first);
    std::memset(first->address, 0xAB, first->length);
    ASSERT_TRUE(arena_->free(first->offset, first->length));
    auto again = arena_->allocate(3 * page_);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->offset, first->offset) << "reused memory is preferred";
    EXPECT_TRUE(all_zero(again->address, again->length));
    EXPECT_EQ(arena_->stats().zeroed_bytes, 3 * page_);

    // A smaller block carved from a dirty range is zeroed too.
    std::memset(again->address, 0xCD, again->length);
    ASSERT_TRUE(arena_->free(again->offset, again->length));
    auto part = arena_->allocate(page_);
    ASSERT_TRUE(part);
    EXPECT_GE(part->offset, again->offset);
    EXPECT_LT(part->offset, again->offset + again->length);
    EXPECT_TRUE(all_zero(part->address, part->length));
}

TEST_F(ArenaTest, FdIsAMemfdSealedAgainstShrinking) {
    const int fd = arena_->fd();
    ASSERT_GE(fd, 0);
    char link[256] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    ASSERT_GT(::readlink(path.c_str(), link, sizeof(link) - 1), 0);
    EXPECT_EQ(std::string(link).rfind("/memfd:ndisshm-arena-test", 0), 0u) << link;
    const int seals = ::fcntl(fd, F_GET_SEALS);
    ASSERT_GE(seals, 0) << std::strerror(errno);
    EXPECT_TRUE(seals & F_SEAL_SHRINK);
    EXPECT_FALSE(seals & F_SEAL_GROW) << "the arena grows the file";
    EXPECT_FALSE(seals & F_SEAL_WRITE);
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);

    ASSERT_TRUE(arena_->allocate(page_));
    EXPECT_EQ(::ftruncate(fd, 0), -1);
    EXPECT_EQ(errno, EPERM);
}

TEST_F(ArenaTest, FileGrowsInStepsUnderTheBlocks) {
    EXPECT_EQ(arena_->stats().file_bytes, 0u);
    auto a = arena_->allocate(page_);
    ASSERT_TRUE(a);
    struct stat st {};
    ASSERT_EQ(::fstat(arena_->fd(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), 16 * page_);
    EXPECT_EQ(arena_->stats().file_bytes, 16 * page_);
    auto b = arena_->allocate(20 * page_);
    ASSERT_TRUE(b);
    ASSERT_EQ(::fstat(arena_->fd(), &st), 0);
    EXPECT_GE(static_cast<uint64_t>(st.st_size), b->offset + b->length);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size) % (16 * page_), 0u);
    EXPECT_LE(static_cast<uint64_t>(st.st_size), 64 * page_);
}

TEST_F(ArenaTest, BlockBytesAreTheFilesBytesAtItsOffset) {
    arena_->allocate(2 * page_);
    auto b = arena_->allocate(page_);
    ASSERT_TRUE(b);
    std::memcpy(b->address, "shared", 6);
    char buf[6] = {};
    ASSERT_EQ(::pread(arena_->fd(), buf, 6, static_cast<off_t>(b->offset)), 6);
    EXPECT_EQ(std::memcmp(buf, "shared", 6), 0);
    // Another mapping of (fd, offset), as another process would make, sees the same memory.
    void* view = ::mmap(nullptr, page_, PROT_READ | PROT_WRITE, MAP_SHARED, arena_->fd(),
                        static_cast<off_t>(b->offset));
    ASSERT_NE(view, MAP_FAILED);
    std::memcpy(view, "answer", 6);
    EXPECT_EQ(std::memcmp(b->address, "answer", 6), 0);
    ::munmap(view, page_);
}

TEST_F(ArenaTest, FreeRefusesAnythingButAnAllocatedBlock) {
    auto b = arena_->allocate(2 * page_);
    ASSERT_TRUE(b);
    const auto before = arena_->stats();
    EXPECT_FALSE(arena_->free(b->offset + 1, b->length));
    EXPECT_FALSE(arena_->free(b->offset, b->length + 1));
    EXPECT_FALSE(arena_->free(b->offset, 0));
    EXPECT_FALSE(arena_->free(b->offset, page_));
    EXPECT_FALSE(arena_->free(b->offset + page_, page_));
    EXPECT_FALSE(arena_->free(40 * page_, page_));
    EXPECT_EQ(arena_->stats().bytes_in_use, before.bytes_in_use);
    EXPECT_EQ(arena_->stats().blocks_in_use, before.blocks_in_use);
    EXPECT_TRUE(arena_->free(b->offset, b->length));
    EXPECT_FALSE(arena_->free(b->offset, b->length)) << "double free";
    EXPECT_EQ(arena_->stats().blocks_in_use, 0u);
}

TEST_F(ArenaTest, ExhaustionAndZeroBytesAreErrorsNotCrashes) {
    auto zero = arena_->allocate(0);
    ASSERT_FALSE(zero);
    EXPECT_EQ(zero.error().err, EINVAL);
    auto all = arena_->allocate(64 * page_);
    ASSERT_TRUE(all);
    auto more = arena_->allocate(1);
    ASSERT_FALSE(more);
    EXPECT_EQ(more.error().err, ENOMEM);
    EXPECT_FALSE(more.error().message().empty());
    EXPECT_FALSE(arena_->allocate(65 * page_));
    const auto s = arena_->stats();
    EXPECT_EQ(s.capacity_bytes, 64 * page_);
    EXPECT_EQ(s.bytes_in_use, 64 * page_);
    EXPECT_EQ(s.blocks_in_use, 1u);
    EXPECT_EQ(s.high_water_bytes, 64 * page_);
}

TEST(Arena, CreateRefusesACapacityThatIsNotAWholeNumberOfPages) {
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    for (uint64_t capacity : {uint64_t{0}, page - 1, page + 1}) {
        ArenaConfig c;
        c.capacity_bytes = capacity;
        auto a = Arena::create(c);
        ASSERT_FALSE(a) << capacity;
        EXPECT_EQ(a.error().err, EINVAL);
    }
}

}  // namespace
}  // namespace ndisshm::test
