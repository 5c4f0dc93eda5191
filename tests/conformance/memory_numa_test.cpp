// NUMA placement through the NDIS API: PreferredNode puts the block on that node (the pages report it),
// MM_ANY_NODE_OK on the calling thread's node, a node that does not exist is INVALID_PARAMETER with a
// message. Books and memory stats count the bytes by node. The single-node path always runs; tests that
// need two nodes skip on machines with one.
#include <gtest/gtest.h>
#include <numaif.h>
#include <unistd.h>

#include "conformance/fixture.hpp"

namespace ndisshm::test {

namespace {

int node_of(void* address) {
    int node = -1;
    if (get_mempolicy(&node, nullptr, 0, address, MPOL_F_NODE | MPOL_F_ADDR) != 0) return -1;
    return node;
}

unsigned machine_nodes() {
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 0;
    ndisshm_runtime* rt = nullptr;
    if (ndisshm_runtime_create(&c, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS) return 1;
    ndisshm_memory_stats m{};
    ndisshm_runtime_get_memory_stats(rt, &m);
    ndisshm_runtime_destroy(rt);
    return m.numa_nodes;
}

class MemoryNuma : public NdisTest {
protected:
    Alloc on_node(ULONG node, ULONG length = 16384) {
        Alloc a(length, 1, 0, NdisSharedMemoryUsageReceive, 0);
        a.params.PreferredNode = node;
        a.status = NdisAllocateSharedMemory(adapter_, &a.params, &a.handle);
        return a;
    }
    static int32_t info_node(NDIS_HANDLE adapter, NDIS_HANDLE h) {
        ndisshm_block_info info{};
        EXPECT_EQ(ndisshm_block_get_info(adapter, h, &info), NDIS_STATUS_SUCCESS);
        return info.node;
    }
};

TEST_F(MemoryNuma, NodeZeroAndAnyNodeArePlacedAndCounted) {
    Alloc zero = on_node(0);
    ASSERT_TRUE(zero.ok());
    EXPECT_EQ(info_node(adapter_, zero.handle), 0);
    std::memset(zero.params.VirtualAddress, 1, 16384);
    EXPECT_EQ(node_of(zero.params.VirtualAddress), 0) << "the touched page is on node 0";
    Alloc any = on_node(MM_ANY_NODE_OK);
    ASSERT_TRUE(any.ok());
    const int32_t any_node = info_node(adapter_, any.handle);
    ndisshm_memory_stats m{};
    ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
    ASSERT_GE(any_node, 0);
    EXPECT_LT(static_cast<uint32_t>(any_node), m.numa_nodes);
    if (m.numa_nodes == 1) {
        EXPECT_EQ(any_node, 0);
        EXPECT_EQ(m.node_bytes_in_use[0], 2 * 16384u);
    }
    const ndisshm_adapter_stats s = stats(adapter_);
    EXPECT_EQ(s.by_node[0].blocks, any_node == 0 ? 2u : 1u);
    NdisFreeSharedMemory(adapter_, zero.handle);
    NdisFreeSharedMemory(adapter_, any.handle);
    EXPECT_TRUE(log_.all().empty());
}

// Windows: a PreferredNode past the last node means any node; the verifier says so.
TEST_F(MemoryNuma, ANodeThatDoesNotExistIsAnyNodeWithAFinding) {
    ndisshm_memory_stats m{};
    ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
    Alloc a = on_node(m.numa_nodes);
    ASSERT_EQ(a.status, NDIS_STATUS_SUCCESS);
    auto v = only_violation(log_, NDISSHM_VIOLATION_LENIENT, "NdisAllocateSharedMemory");
    EXPECT_NE(v.message.find("past the last NUMA node"), std::string::npos) << v.message;
    NdisFreeSharedMemory(adapter_, a.handle);
}

TEST_F(MemoryNuma, EveryNodeGetsItsOwnArenaAndItsPages) {
    const unsigned nodes = machine_nodes();
    if (nodes < 2) GTEST_SKIP() << "needs 2 NUMA nodes, this machine has " << nodes;
    std::vector<Alloc> blocks;
    for (unsigned node = 0; node < nodes && node < NDISSHM_MAX_NODES; ++node) {
        blocks.push_back(on_node(node));
        Alloc& a = blocks.back();
        ASSERT_TRUE(a.ok()) << node;
        EXPECT_EQ(info_node(adapter_, a.handle), static_cast<int32_t>(node));
        std::memset(a.params.VirtualAddress, 1, 16384);
        EXPECT_EQ(node_of(a.params.VirtualAddress), static_cast<int>(node));
    }
    ndisshm_memory_stats m{};
    ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
    EXPECT_GE(m.arenas, blocks.size());
    for (unsigned node = 0; node < blocks.size(); ++node) EXPECT_EQ(m.node_bytes_in_use[node], 16384u) << node;
    for (Alloc& a : blocks) NdisFreeSharedMemory(adapter_, a.handle);
}

}  // namespace

}  // namespace ndisshm::test
