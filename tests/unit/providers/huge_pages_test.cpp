// Arenas of 2 MiB huge pages: real hugetlb memory committed 2 MiB at a time, CONTIGUOUS blocks kept
// inside one huge page, a clear error (not SIGBUS) when the pool runs dry, and the default provider's
// page modes (Huge fails without huge pages, Auto falls back, and overflows to 4 KiB pages).
// Huge pages are reserved for each test by raising /proc/sys/vm/nr_hugepages (root; CI runs as root);
// a test that cannot have them skips and says why.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "memory/arena.hpp"
#include "providers/default_provider.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {
namespace {

using memory::Arena;
using memory::ArenaConfig;
using ndisshm::test::HugePageReservation;
using ndisshm::test::first_nonzero;
constexpr uint64_t kHuge = os::kHugePageBytes;

#define RESERVE_HUGE_PAGES(var, n, ...)            \
    HugePageReservation var(n, ##__VA_ARGS__);     \
    if (!var.ok()) GTEST_SKIP() << var.why()

Result<std::unique_ptr<Arena>> huge_arena(uint64_t capacity) {
    ArenaConfig c;
    c.name = "ndisshm-huge-test";
    c.capacity_bytes = capacity;
    c.huge_pages = true;
    c.node = 0;
    c.cpu_cache = true;
    return Arena::create(c);
}

TEST(HugePages, ArenaIsBackedByHugePagesCommittedTwoMebibytesAtATime) {
    RESERVE_HUGE_PAGES(pool, 4);
    auto a = huge_arena(uint64_t{64} << 20);
    ASSERT_TRUE(a) << a.error().message();
    Arena& arena = **a;
    EXPECT_TRUE(arena.huge_pages());
    EXPECT_EQ(arena.page_bytes(), kHuge);
    EXPECT_EQ(arena.unit_bytes(), os::page_size()) << "blocks are still 4 KiB-granular";
    EXPECT_EQ(arena.stats().file_bytes, kHuge) << "the first huge page is committed at creation";
    auto small = arena.allocate(4096);
    ASSERT_TRUE(small);
    EXPECT_EQ(small->length, 4096u);
    EXPECT_EQ(first_nonzero(small->address, small->length), small->length);
    std::memset(small->address, 0x5A, small->length);  // touching committed memory is fine
    EXPECT_EQ(ndisshm::test::kernel_page_kib(small->address), 2048) << "hugetlb mapping";
    auto big = arena.allocate(3 * kHuge - 8192);
    ASSERT_TRUE(big) << big.error().message();
    EXPECT_EQ(arena.stats().file_bytes % kHuge, 0u);
    EXPECT_GE(arena.stats().file_bytes, big->offset + big->length);
    EXPECT_EQ(first_nonzero(big->address, big->length), big->length);
    // A reused huge page block is cleared by memset, never released (a released huge page may be
    // taken by someone else before it is touched again: SIGBUS).
    ASSERT_TRUE(arena.free(big->offset, big->length));
    auto again = arena.allocate(3 * kHuge - 8192);
    ASSERT_TRUE(again);
    EXPECT_EQ(arena.stats().zeroed_by_release_bytes, 0u);
    EXPECT_EQ(os::node_of_address(again->address), 0);
}

TEST(HugePages, ContiguousBlocksStayInsideOneHugePage) {
    RESERVE_HUGE_PAGES(pool, 8);
    auto a = huge_arena(uint64_t{32} << 20);
    ASSERT_TRUE(a) << a.error().message();
    Arena& arena = **a;
    // Push the allocator to an odd spot, then ask for blocks that would cross a huge page there.
    auto filler = arena.allocate(kHuge - 3 * 4096, /*contiguous=*/false);
    ASSERT_TRUE(filler);
    for (uint64_t bytes : {uint64_t{64} << 10, uint64_t{1} << 20, kHuge}) {
        auto b = arena.allocate(bytes, /*contiguous=*/true);
        ASSERT_TRUE(b) << b.error().message();
        EXPECT_EQ(b->offset / kHuge, (b->offset + b->length - 1) / kHuge)
            << bytes << " bytes at offset " << b->offset << " cross a huge page";
    }
    // Small CONTIGUOUS blocks too, even though they bypass the cache to do so.
    for (int i = 0; i < 50; ++i) {
        auto b = arena.allocate(12 * 4096, true);
        ASSERT_TRUE(b);
        EXPECT_EQ(b->offset / kHuge, (b->offset + b->length - 1) / kHuge) << b->offset;
    }
    EXPECT_TRUE(arena.check_consistency());
}

TEST(HugePages, AnEmptyPoolIsAnErrorAtCreationNotACrashLater) {
    RESERVE_HUGE_PAGES(none, 0, /*empty_pool=*/true);
    auto a = huge_arena(uint64_t{64} << 20);
    ASSERT_FALSE(a);
    EXPECT_TRUE(a.error().err == ENOSPC || a.error().err == ENOMEM) << a.error().message();
    EXPECT_NE(a.error().message().find("huge pages"), std::string::npos) << a.error().message();
    EXPECT_NE(a.error().message().find("nr_hugepages"), std::string::npos) << a.error().message();
}

TEST(HugePages, RunningOutOfHugePagesIsAnAllocationErrorWithTheReason) {
    RESERVE_HUGE_PAGES(pool, 2);
    const long free_pages = HugePageReservation::free_pages();
    if (free_pages > 200) GTEST_SKIP() << "the pool has " << free_pages << " free huge pages: too many to exhaust here";
    auto a = huge_arena(uint64_t{1} << 30);
    ASSERT_TRUE(a) << a.error().message();
    Arena& arena = **a;
    std::vector<memory::ArenaBlock> blocks;
    Error last{};
    for (int i = 0; i < 512; ++i) {
        auto b = arena.allocate(kHuge);
        if (!b) {
            last = b.error();
            break;
        }
        blocks.push_back(*b);
    }
    ASSERT_FALSE(last.operation.empty()) << "1 GiB of huge pages should not have been available";
    EXPECT_EQ(last.err, ENOSPC) << last.message();
    EXPECT_NE(last.message().find("fallocate"), std::string::npos) << last.message();
    ASSERT_FALSE(blocks.empty());
    // What was committed is still there to reuse.
    ASSERT_TRUE(arena.free(blocks.back().offset, blocks.back().length));
    auto reuse = arena.allocate(kHuge);
    ASSERT_TRUE(reuse) << reuse.error().message();
    EXPECT_EQ(first_nonzero(reuse->address, reuse->length), reuse->length);
}

providers::DefaultProviderConfig provider_config(providers::PageMode mode) {
    providers::DefaultProviderConfig c;
    c.arena.name = "ndisshm-huge-provider-test";
    c.arena.capacity_bytes = uint64_t{256} << 20;
    c.page_mode = mode;
    return c;
}

struct NullSink final : providers::SgSink {
    void add(uint64_t, uint64_t) override {}
};

TEST(HugePages, HugeModeProviderFailsWithoutHugePagesAndSaysWhy) {
    RESERVE_HUGE_PAGES(none, 0, /*empty_pool=*/true);
    auto p = providers::DefaultProvider::create(provider_config(providers::PageMode::Huge));
    ASSERT_FALSE(p);
    EXPECT_NE(p.error().message().find("page_mode HUGE"), std::string::npos) << p.error().message();
    EXPECT_NE(p.error().err, EINVAL) << "RESOURCES, not INVALID_PARAMETER: the machine, not the config";
    // Auto on the same machine settles for 4 KiB pages.
    auto a = providers::DefaultProvider::create(provider_config(providers::PageMode::Auto));
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_EQ((*a)->page_mode(), providers::PageMode::Base);
    EXPECT_EQ((*a)->memory_stats().page_bytes, 4096u);
}

TEST(HugePages, AutoUsesHugePagesAndOverflowsToBasePagesWhenThePoolRunsDry) {
    RESERVE_HUGE_PAGES(pool, 2);
    const long free_pages = HugePageReservation::free_pages();
    if (free_pages > 100) GTEST_SKIP() << "the pool has " << free_pages << " free huge pages: too many to exhaust here";
    auto p = providers::DefaultProvider::create(provider_config(providers::PageMode::Auto));
    ASSERT_TRUE(p) << p.error().message();
    providers::DefaultProvider& provider = **p;
    ASSERT_EQ(provider.page_mode(), providers::PageMode::Huge);
    EXPECT_EQ(provider.memory_stats().page_bytes, kHuge);
    providers::Request r;
    r.length = kHuge;
    r.preferred_node = 0;
    NullSink sink;
    std::vector<uint64_t> tokens;
    // More than the pool holds (and less than the arena's 256 MiB): Auto must never fail for it.
    for (long i = 0; i < free_pages + 8; ++i) {
        providers::Grant g;
        ASSERT_EQ(provider.allocate(r, sink, g), providers::ProviderStatus::Success) << i << ": " << g.error;
        EXPECT_EQ(first_nonzero(g.virtual_address, kHuge), kHuge);
        EXPECT_EQ(g.node, 0);
        tokens.push_back(g.token);
    }
    ASSERT_NE(provider.arena_of(0, /*overflow=*/true), nullptr) << "the 4 KiB overflow arena took over";
    const providers::MemoryStats m = provider.memory_stats();
    EXPECT_EQ(m.arenas, 2u);
    EXPECT_EQ(m.page_mode, providers::PageMode::Huge);
    EXPECT_EQ(m.bytes_in_use, tokens.size() * kHuge);
    EXPECT_EQ(m.node_bytes_in_use[0], m.bytes_in_use);
    for (uint64_t t : tokens) provider.free(t);
    EXPECT_EQ(provider.refused_frees(), 0u);
    EXPECT_EQ(provider.memory_stats().bytes_in_use, 0u);
}

// A dry pool is not asked again on every allocation (each would pay a failed trip through the huge
// page arena): the huge arena sees no allocation while the 4 KiB arena serves, until a huge page's worth
// of blocks has come back to it; then it serves again.
TEST(HugePages, AutoPassesOverADryPoolUntilAHugePageOfBlocksComesBack) {
    RESERVE_HUGE_PAGES(pool, 2);
    const long free_pages = HugePageReservation::free_pages();
    if (free_pages > 100) GTEST_SKIP() << "the pool has " << free_pages << " free huge pages: too many to exhaust here";
    auto p = providers::DefaultProvider::create(provider_config(providers::PageMode::Auto));
    ASSERT_TRUE(p) << p.error().message();
    providers::DefaultProvider& provider = **p;
    ASSERT_EQ(provider.page_mode(), providers::PageMode::Huge);
    NullSink sink;
    providers::Request r;
    r.length = kHuge;
    r.preferred_node = 0;
    std::vector<uint64_t> huge_tokens;
    providers::Grant g;
    for (long i = 0; i < free_pages + 2; ++i) {  // past the pool: the last ones overflow
        g = {};
        ASSERT_EQ(provider.allocate(r, sink, g), providers::ProviderStatus::Success) << g.error;
        huge_tokens.push_back(g.token);
    }
    memory::Arena* huge = provider.arena_of(0, false);
    ASSERT_NE(huge, nullptr);
    ASSERT_NE(provider.arena_of(0, true), nullptr);
    const memory::ArenaStats before = huge->stats();
    r.length = 4096;  // small blocks, through the caches: asking the huge arena would count a hit or miss
    std::vector<uint64_t> small;
    for (int i = 0; i < 500; ++i) {
        g = {};
        ASSERT_EQ(provider.allocate(r, sink, g), providers::ProviderStatus::Success) << g.error;
        small.push_back(g.token);
    }
    const memory::ArenaStats during = huge->stats();
    EXPECT_EQ(during.cache_hits + during.cache_misses, before.cache_hits + before.cache_misses)
        << "the dry huge page arena was asked";
    EXPECT_EQ(during.blocks_in_use, before.blocks_in_use);
    // A huge page's worth back: the huge arena serves again.
    provider.free(huge_tokens.front());
    huge_tokens.erase(huge_tokens.begin());
    g = {};
    r.length = kHuge;
    ASSERT_EQ(provider.allocate(r, sink, g), providers::ProviderStatus::Success) << g.error;
    huge_tokens.push_back(g.token);
    EXPECT_GE(huge->stats().blocks_in_use, before.blocks_in_use) << "served by the huge page arena again";
    EXPECT_TRUE(static_cast<std::byte*>(g.virtual_address) >= huge->base() &&
                static_cast<std::byte*>(g.virtual_address) < huge->base() + huge->capacity_bytes());
    for (uint64_t t : small) provider.free(t);
    for (uint64_t t : huge_tokens) provider.free(t);
    EXPECT_EQ(provider.refused_frees(), 0u);
}

TEST(HugePages, HugeModeProviderRefusesWithResourcesWhenThePoolRunsDry) {
    RESERVE_HUGE_PAGES(pool, 2);
    const long free_pages = HugePageReservation::free_pages();
    if (free_pages > 100) GTEST_SKIP() << "the pool has " << free_pages << " free huge pages: too many to exhaust here";
    auto p = providers::DefaultProvider::create(provider_config(providers::PageMode::Huge));
    ASSERT_TRUE(p) << p.error().message();
    providers::Request r;
    r.length = kHuge;
    r.preferred_node = 0x80000000u;
    NullSink sink;
    std::vector<uint64_t> tokens;
    providers::ProviderStatus s = providers::ProviderStatus::Success;
    providers::Grant g;
    for (long i = 0; i < free_pages + 8 && s == providers::ProviderStatus::Success; ++i) {
        g = {};
        s = (*p)->allocate(r, sink, g);
        if (s == providers::ProviderStatus::Success) tokens.push_back(g.token);
    }
    EXPECT_EQ(s, providers::ProviderStatus::Resources);
    EXPECT_NE(g.error.find("No space left on device"), std::string::npos) << g.error;
    EXPECT_EQ((*p)->arena_of(0, true), nullptr) << "Huge never overflows to 4 KiB pages";
    for (uint64_t t : tokens) (*p)->free(t);
    EXPECT_EQ((*p)->refused_frees(), 0u);
}

}  // namespace
}  // namespace ndisshm::test
