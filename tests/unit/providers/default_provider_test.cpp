// The default provider's books: tokens that name arena and block (every bad one refused without harm),
// SG elements, statistics, and the per-CPU caches seen from above.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "providers/default_provider.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::providers;  // the layer under test
namespace {

struct RecordingSink final : SgSink {
    void add(uint64_t address, uint64_t length) override { elements.emplace_back(address, length); }
    std::vector<std::pair<uint64_t, uint64_t>> elements;
};

class DefaultProviderTest : public ::testing::Test {
protected:
    void SetUp() override {
        DefaultProviderConfig c;
        c.arena.name = "ndisshm-provider-test";
        c.arena.capacity_bytes = uint64_t{64} << 20;
        c.page_mode = PageMode::Base;
        configure(c);
        auto p = DefaultProvider::create(c);
        ASSERT_TRUE(p) << p.error().message();
        provider_ = std::move(*p);
    }
    virtual void configure(DefaultProviderConfig&) {}
    Grant allocate(uint64_t length, bool contiguous = false) {
        Request r;
        r.length = length;
        r.contiguous = contiguous;
        r.preferred_node = 0;
        Grant g;
        sink_.elements.clear();
        EXPECT_EQ(provider_->allocate(r, sink_, g), ProviderStatus::Success) << g.error;
        return g;
    }
    std::unique_ptr<DefaultProvider> provider_;
    RecordingSink sink_;
};

TEST_F(DefaultProviderTest, OneElementAtTheBlocksVirtualAddressByDefault) {
    Grant g = allocate(10000, true);
    ASSERT_EQ(sink_.elements.size(), 1u);
    EXPECT_EQ(sink_.elements[0].first, reinterpret_cast<uint64_t>(g.virtual_address));
    EXPECT_EQ(sink_.elements[0].second, 10000u);
    EXPECT_NE(g.token, 0u);
    EXPECT_EQ(g.node, 0);
    provider_->free(g.token);
    EXPECT_EQ(provider_->refused_frees(), 0u);
}

TEST_F(DefaultProviderTest, BadTokensAreRefusedAndHarmNothing) {
    Grant live = allocate(3 * 4096);
    Grant other = allocate(4096);
    provider_->free(other.token);
    const MemoryStats before = provider_->memory_stats();
    const uint64_t t = live.token;
    const uint64_t bad[] = {
        0,                                   // never a token
        t & ~uint64_t{1},                    // bit 0 clear
        t ^ (uint64_t{1} << 1),              // wrong length (3 -> 2 units)
        t + (uint64_t{1} << 29),             // the next unit: inside no block start
        t | (uint64_t{5} << 22),             // an arena slot with no arena
        t | (uint64_t{127} << 22),           // beyond the arenas
        other.token,                         // freed already (and sitting in a cache)
        ~uint64_t{0},
    };
    for (uint64_t token : bad) provider_->free(token);
    EXPECT_EQ(provider_->refused_frees(), std::size(bad));
    const MemoryStats after = provider_->memory_stats();
    EXPECT_EQ(after.blocks_in_use, before.blocks_in_use);
    EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
    EXPECT_TRUE(provider_->arena().check_consistency());
    // The refused double free did not put the block in a cache twice: it is handed out once.
    std::set<void*> seen{live.virtual_address};
    std::vector<uint64_t> tokens;
    for (int i = 0; i < 100; ++i) {
        Grant g = allocate(4096);
        EXPECT_TRUE(seen.insert(g.virtual_address).second) << "handed out twice";
        tokens.push_back(g.token);
    }
    for (uint64_t token : tokens) provider_->free(token);
    provider_->free(live.token);
    EXPECT_EQ(provider_->refused_frees(), std::size(bad));
    EXPECT_EQ(provider_->memory_stats().blocks_in_use, 0u);
}

TEST_F(DefaultProviderTest, StatsDescribeTheArenas) {
    Grant a = allocate(64 * 1024);
    Grant b = allocate(5 * 4096);
    const MemoryStats m = provider_->memory_stats();
    EXPECT_EQ(m.page_mode, PageMode::Base);
    EXPECT_EQ(m.page_bytes, 4096u);
    EXPECT_EQ(m.address_mode, AddressMode::Iova);
    EXPECT_EQ(m.arenas, 1u);
    EXPECT_EQ(m.numa_nodes, os::numa_node_count());
    EXPECT_EQ(m.reserved_bytes, uint64_t{64} << 20);
    EXPECT_EQ(m.bytes_in_use, 64 * 1024 + 5 * 4096u);
    EXPECT_EQ(m.blocks_in_use, 2u);
    EXPECT_EQ(m.node_bytes_in_use[0], m.bytes_in_use);
    EXPECT_GE(m.file_bytes, m.high_water_bytes);
    EXPECT_GE(m.high_water_bytes, m.bytes_in_use);
    EXPECT_LE(m.largest_free_bytes, m.reserved_bytes - m.bytes_in_use);
    EXPECT_GT(m.largest_free_bytes, 0u);
    EXPECT_EQ(m.cache_misses, 2u) << "two sizes, each missed once";
    provider_->free(a.token);
    provider_->free(b.token);
    EXPECT_EQ(provider_->memory_stats().bytes_in_use, 0u);
    EXPECT_NE(provider_->describe().find("4 KiB pages"), std::string::npos) << provider_->describe();
}

TEST_F(DefaultProviderTest, ReuseIsServedByTheCacheAndZeroed) {
    for (int i = 0; i < 10; ++i) {
        Grant g = allocate(8192);
        ASSERT_EQ(ndisshm::test::first_nonzero(g.virtual_address, 8192), 8192u) << i;
        ndisshm::test::fill_pattern(g.virtual_address, 8192, static_cast<uint64_t>(i));
        provider_->free(g.token);
    }
    const MemoryStats m = provider_->memory_stats();
    EXPECT_GE(m.cache_hits, 5u) << "most reuse comes from the CPU's cache";
    EXPECT_GE(m.zeroed_by_memset_bytes, 5 * 8192u);
    EXPECT_EQ(m.zeroed_by_release_bytes, 0u);
}

class DefaultProviderNoCache : public DefaultProviderTest {
    void configure(DefaultProviderConfig& c) override { c.cpu_cache = false; }
};

TEST_F(DefaultProviderNoCache, EveryCallGoesToThePageAllocator) {
    for (int i = 0; i < 4; ++i) provider_->free(allocate(4096).token);
    const MemoryStats m = provider_->memory_stats();
    EXPECT_EQ(m.cache_hits + m.cache_misses, 0u);
    EXPECT_EQ(m.zeroed_by_memset_bytes, 3 * 4096u);
}

class DefaultProviderArenaOffsets : public DefaultProviderTest {
    void configure(DefaultProviderConfig& c) override { c.address_mode = AddressMode::ArenaOffset; }
};

TEST_F(DefaultProviderArenaOffsets, ElementsAreOffsetsInTheArenasMemfd) {
    Grant g = allocate(4096);
    ASSERT_EQ(sink_.elements.size(), 1u);
    EXPECT_EQ(sink_.elements[0].first,
              reinterpret_cast<uint64_t>(g.virtual_address) - reinterpret_cast<uint64_t>(provider_->arena().base()));
    provider_->free(g.token);
}

}  // namespace
}  // namespace ndisshm::test
