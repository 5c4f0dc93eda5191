// NUMA: the CPU -> node table, arenas bound to a node (pages land there), and the default provider's
// choice of node (PreferredNode, or the calling thread's node for MM_ANY_NODE_OK). The single-node path
// always runs; what needs two nodes skips on machines with one.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstring>
#include <thread>

#include "memory/arena.hpp"
#include "providers/default_provider.hpp"

namespace ndisshm::test {
namespace {

constexpr uint32_t kAnyNode = 0x80000000u;

struct NullSink final : providers::SgSink {
    void add(uint64_t, uint64_t) override {}
};

TEST(Numa, EveryCpuMapsToAnExistingNode) {
    EXPECT_GE(os::numa_node_count(), 1u);
    EXPECT_GE(os::cpu_count(), 1u);
    for (unsigned cpu = 0; cpu < os::cpu_count(); ++cpu) EXPECT_LT(os::node_of_cpu(cpu), os::numa_node_count()) << cpu;
    EXPECT_LT(os::current_cpu(), os::cpu_count());
    EXPECT_EQ(os::node_of_cpu(os::cpu_count() + 5), 0u) << "out of range reads as node 0";
}

TEST(Numa, CurrentCpuFollowsTheThreadsAffinity) {
    cpu_set_t old;
    ASSERT_EQ(sched_getaffinity(0, sizeof(old), &old), 0);
    for (unsigned cpu = 0; cpu < os::cpu_count() && cpu < 4; ++cpu) {
        if (!CPU_ISSET(cpu, &old)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
        EXPECT_EQ(os::current_cpu(), cpu);
    }
    ASSERT_EQ(sched_setaffinity(0, sizeof(old), &old), 0);
}

TEST(Numa, ArenaBoundToNodeZeroPlacesItsPagesThere) {
    memory::ArenaConfig c;
    c.name = "ndisshm-numa-test";
    c.capacity_bytes = uint64_t{64} << 20;
    c.node = 0;
    auto a = memory::Arena::create(c);
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_EQ((*a)->node(), 0);
    auto b = (*a)->allocate(256 * 1024);
    ASSERT_TRUE(b);
    std::memset(b->address, 1, b->length);
    for (uint64_t off = 0; off < b->length; off += 64 * 1024)
        EXPECT_EQ(os::node_of_address(b->address + off), 0) << off;
}

TEST(Numa, ArenaBoundToAnotherNodePlacesItsPagesThere) {
    if (os::numa_node_count() < 2)
        GTEST_SKIP() << "needs 2 NUMA nodes, this machine has " << os::numa_node_count();
    const unsigned node = os::numa_node_count() - 1;
    memory::ArenaConfig c;
    c.name = "ndisshm-numa-test";
    c.capacity_bytes = uint64_t{64} << 20;
    c.node = static_cast<int>(node);
    auto a = memory::Arena::create(c);
    ASSERT_TRUE(a) << a.error().message();
    auto b = (*a)->allocate(1 << 20);
    ASSERT_TRUE(b);
    std::memset(b->address, 1, b->length);
    EXPECT_EQ(os::node_of_address(b->address), static_cast<int>(node));
}

providers::DefaultProviderConfig base_config() {
    providers::DefaultProviderConfig c;
    c.arena.name = "ndisshm-numa-provider-test";
    c.arena.capacity_bytes = uint64_t{64} << 20;
    c.page_mode = providers::PageMode::Base;
    return c;
}

TEST(Numa, ProviderPlacesNodeZeroAndAnyNodeOnTheRightArena) {
    auto p = providers::DefaultProvider::create(base_config());
    ASSERT_TRUE(p) << p.error().message();
    NullSink sink;
    providers::Request r;
    r.length = 8192;
    r.preferred_node = 0;
    providers::Grant g0;
    ASSERT_EQ((*p)->allocate(r, sink, g0), providers::ProviderStatus::Success);
    EXPECT_EQ(g0.node, 0);
    ASSERT_NE((*p)->arena_of(0), nullptr);
    std::memset(g0.virtual_address, 1, 8192);
    EXPECT_EQ(os::node_of_address(g0.virtual_address), 0);

    r.preferred_node = kAnyNode;
    providers::Grant ga;
    const unsigned here = os::current_node();
    ASSERT_EQ((*p)->allocate(r, sink, ga), providers::ProviderStatus::Success);
    // The thread may move between the two reads; on a one-node machine it cannot change node.
    if (os::numa_node_count() == 1) {
        EXPECT_EQ(ga.node, 0);
    }
    EXPECT_LT(static_cast<unsigned>(ga.node), os::numa_node_count());
    (void)here;
    const providers::MemoryStats m = (*p)->memory_stats();
    EXPECT_EQ(m.numa_nodes, os::numa_node_count());
    EXPECT_EQ(m.node_bytes_in_use[0] + (ga.node != 0 ? m.node_bytes_in_use[ga.node] : 0), 2 * 8192u);
    (*p)->free(g0.token);
    (*p)->free(ga.token);
    EXPECT_EQ((*p)->refused_frees(), 0u);
}

TEST(Numa, ProviderRefusesANodeThatDoesNotExist) {
    auto p = providers::DefaultProvider::create(base_config());
    ASSERT_TRUE(p);
    NullSink sink;
    providers::Request r;
    r.length = 4096;
    r.preferred_node = os::numa_node_count();
    providers::Grant g;
    EXPECT_EQ((*p)->allocate(r, sink, g), providers::ProviderStatus::InvalidParameter);
    EXPECT_NE(g.error.find("does not exist"), std::string::npos) << g.error;
    EXPECT_EQ(g.token, 0u);
}

TEST(Numa, ProviderMakesOneArenaPerNodeUsed) {
    if (os::numa_node_count() < 2)
        GTEST_SKIP() << "needs 2 NUMA nodes, this machine has " << os::numa_node_count();
    auto p = providers::DefaultProvider::create(base_config());
    ASSERT_TRUE(p);
    NullSink sink;
    std::vector<uint64_t> tokens;
    for (unsigned node = 0; node < os::numa_node_count() && node < providers::MemoryStats::kMaxNodes; ++node) {
        providers::Request r;
        r.length = 4096;
        r.preferred_node = node;
        providers::Grant g;
        ASSERT_EQ((*p)->allocate(r, sink, g), providers::ProviderStatus::Success) << node << ": " << g.error;
        EXPECT_EQ(g.node, static_cast<int32_t>(node));
        std::memset(g.virtual_address, 1, 4096);
        EXPECT_EQ(os::node_of_address(g.virtual_address), static_cast<int>(node));
        tokens.push_back(g.token);
    }
    EXPECT_EQ((*p)->memory_stats().arenas, std::min(os::numa_node_count(), providers::MemoryStats::kMaxNodes));
    for (uint64_t t : tokens) (*p)->free(t);
    EXPECT_EQ((*p)->refused_frees(), 0u);
}

}  // namespace
}  // namespace ndisshm::test
