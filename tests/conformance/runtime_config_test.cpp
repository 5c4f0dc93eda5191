// The runtime and its configuration (host.h): defaults, refused configurations, and the book-keeping
// capacity (max_blocks: "outstanding + quarantine").
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

ndisshm_runtime_config quiet_config() {
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 0;
    return c;
}

TEST(RuntimeConfig, ConfigInitFillsStructSizeAndTurnsTheVerifierOn) {
    ndisshm_runtime_config c;
    std::memset(&c, 0xFF, sizeof(c));
    ::unsetenv("NDISSHM_VERIFIER");
    ndisshm_runtime_config_init(&c);
    EXPECT_EQ(c.struct_size, sizeof(ndisshm_runtime_config));
    EXPECT_EQ(c.verifier, 1);
    EXPECT_EQ(c.max_block_bytes, 0u);
    EXPECT_EQ(c.arena_capacity_bytes, 0u);
    EXPECT_EQ(c.iova_base, 0u);
    EXPECT_EQ(c.max_blocks, 0u);
    ::setenv("NDISSHM_VERIFIER", "0", 1);
    ndisshm_runtime_config_init(&c);
    EXPECT_EQ(c.verifier, 0);
    ::unsetenv("NDISSHM_VERIFIER");
}

TEST(RuntimeConfig, NullConfigMeansDefaults) {
    ndisshm_runtime* rt = nullptr;
    ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt, nullptr, 0), NDIS_STATUS_SUCCESS);
    ASSERT_NE(rt, nullptr);
    ndisshm_runtime_destroy(rt);
    ndisshm_runtime_destroy(nullptr);  // ignored
}

TEST(RuntimeConfig, BadConfigurationsAreInvalidParameter) {
    ndisshm_runtime* rt = reinterpret_cast<ndisshm_runtime*>(0x1);
    auto c = quiet_config();
    for (uint32_t size : {uint32_t{0}, uint32_t{sizeof(c) - 4}, uint32_t{sizeof(c) - 16}, uint32_t{sizeof(c) + 8}}) {
        c.struct_size = size;
        EXPECT_EQ(ndisshm_runtime_create(&c, &rt, nullptr, 0), NDIS_STATUS_INVALID_PARAMETER) << size;
        EXPECT_EQ(rt, nullptr);
    }
    c = quiet_config();
    c.arena_capacity_bytes = 16 * PAGE_SIZE + 1;
    EXPECT_EQ(ndisshm_runtime_create(&c, &rt, nullptr, 0), NDIS_STATUS_INVALID_PARAMETER);
    c = quiet_config();
    c.arena_capacity_bytes = 16 * PAGE_SIZE;
    c.max_block_bytes = 17 * PAGE_SIZE;
    EXPECT_EQ(ndisshm_runtime_create(&c, &rt, nullptr, 0), NDIS_STATUS_INVALID_PARAMETER);
    c = quiet_config();
    EXPECT_EQ(ndisshm_runtime_create(&c, nullptr, nullptr, 0), NDIS_STATUS_INVALID_PARAMETER);
    NDIS_HANDLE a = nullptr;
    EXPECT_EQ(ndisshm_adapter_create(nullptr, "x", &a), NDIS_STATUS_INVALID_PARAMETER);
}

// max_blocks * sizeof(record) must not wrap around: a runtime that accepts an absurd max_blocks must
// really be able to keep the books of many blocks. Run in a child process, so that a crash fails this
// test only.
TEST(RuntimeConfig, HugeMaxBlocksIsRefusedOrHonoured) {
    const auto scenario = [] {
        auto c = quiet_config();
        c.max_blocks = (uint64_t{1} << 63) + 1;
        ndisshm_runtime* rt = nullptr;
        if (ndisshm_runtime_create(&c, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS) std::_Exit(0);  // refused: fine
        NDIS_HANDLE adapter = nullptr;
        if (ndisshm_adapter_create(rt, "eth0", &adapter) != NDIS_STATUS_SUCCESS) std::_Exit(2);
        for (int i = 0; i < 256; ++i) {
            auto sg = SgBuffer::for_elements(1);
            auto p = make_params(PAGE_SIZE, sg);
            NDIS_HANDLE h = nullptr;
            if (NdisAllocateSharedMemory(adapter, &p, &h) != NDIS_STATUS_SUCCESS) std::_Exit(3);
        }
        ndisshm_runtime_destroy(rt);
        std::_Exit(0);
    };
    EXPECT_EXIT(scenario(), testing::ExitedWithCode(0), "");
}

class RuntimeConfigSmallBooks : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override { c.max_blocks = 4; }
};

TEST_F(RuntimeConfigSmallBooks, BookKeepingExhaustionGivesResourcesAndReturnsTheBlockToItsProvider) {
    TestProvider& provider = provide(adapter_);
    std::vector<Alloc> blocks;
    for (int i = 0; i < 4; ++i) {
        blocks.push_back(allocate(adapter_, PAGE_SIZE));
        ASSERT_TRUE(blocks.back().ok()) << i;
    }
    Alloc fifth = allocate(adapter_, PAGE_SIZE);
    EXPECT_EQ(fifth.status, NDIS_STATUS_RESOURCES);
    const auto calls = provider.alloc_calls();
    ASSERT_EQ(calls.size(), 5u);
    EXPECT_EQ(provider.times_freed(calls[4].context), 1) << "the provider's block must go back to it";
    EXPECT_EQ(provider.live(), 4u);
    EXPECT_EQ(stats(adapter_).total.blocks, 4u);
    EXPECT_EQ(stats(adapter_).total.failures, 1u);

    // A freed record is reused (after the quarantine runs out of fresh ones).
    NdisFreeSharedMemory(adapter_, blocks[0].handle);
    Alloc again = allocate(adapter_, PAGE_SIZE);
    EXPECT_TRUE(again.ok()) << ndisshm_status_name(again.status);
}

// Records of blocks freed on an adapter that is then destroyed are not lost for good: adapters come and
// go with virtual machines, and the runtime's book-keeping capacity must not shrink with each one.
TEST_F(RuntimeConfigSmallBooks, RecordsOfADestroyedAdapterServeOtherAdapters) {
    for (int round = 0; round < 3; ++round) {
        SCOPED_TRACE(round);
        NDIS_HANDLE vm = new_adapter(("vm" + std::to_string(round)).c_str());
        std::vector<Alloc> blocks;
        for (int i = 0; i < 4; ++i) {
            blocks.push_back(allocate(vm, PAGE_SIZE));
            ASSERT_TRUE(blocks.back().ok())
                << "block " << i << ": " << ndisshm_status_name(blocks.back().status);
        }
        for (auto& b : blocks) NdisFreeSharedMemory(vm, b.handle);
        ndisshm_adapter_destroy(vm);
    }
    EXPECT_EQ(log_.size(), 0u);
}

}  // namespace
}  // namespace ndisshm::test
