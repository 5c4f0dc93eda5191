// Zeroing ahead (host.h, ndisshm_zero_ahead): a background thread clears the default provider's freed
// blocks before anyone asks for them. Configurable in the runtime config and by NDISSHM_ZERO_AHEAD,
// off by default where the process may use fewer than 3 CPUs; its work shows in the memory statistics;
// and a block it cleared reaches another adapter zeroed. The config's struct_size may also be the size
// it had before zero_ahead was added.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

#include "conformance/fixture.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {
namespace {

ndisshm_runtime_config quiet_config() {
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 0;
    return c;
}

// The zero_ahead the memory statistics report for a runtime made from `c`; -1 if it was refused.
int zero_ahead_of(const ndisshm_runtime_config& c) {
    ndisshm_runtime* rt = nullptr;
    if (ndisshm_runtime_create(&c, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS) return -1;
    ndisshm_memory_stats m{};
    EXPECT_EQ(ndisshm_runtime_get_memory_stats(rt, &m), NDIS_STATUS_SUCCESS);
    ndisshm_runtime_destroy(rt);
    return static_cast<int>(m.zero_ahead);
}

unsigned usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set)) : 1u;
}

TEST(MemoryZeroAhead, OnOffAndAutoByTheCpusTheProcessMayUse) {
    ::unsetenv("NDISSHM_ZERO_AHEAD");
    auto c = quiet_config();
    EXPECT_EQ(c.zero_ahead, static_cast<uint32_t>(NDISSHM_ZERO_AHEAD_AUTO));
    EXPECT_EQ(zero_ahead_of(c), usable_cpus() >= 3 ? 1 : 0);
    c.zero_ahead = NDISSHM_ZERO_AHEAD_ON;
    EXPECT_EQ(zero_ahead_of(c), 1);
    c.zero_ahead = NDISSHM_ZERO_AHEAD_OFF;
    EXPECT_EQ(zero_ahead_of(c), 0);
    c.zero_ahead = 3;
    EXPECT_EQ(zero_ahead_of(c), -1) << "an unknown value is refused";
}

TEST(MemoryZeroAhead, TheEnvironmentSetsTheDefault) {
    ::setenv("NDISSHM_ZERO_AHEAD", "1", 1);
    EXPECT_EQ(quiet_config().zero_ahead, static_cast<uint32_t>(NDISSHM_ZERO_AHEAD_ON));
    EXPECT_EQ(zero_ahead_of(quiet_config()), 1);
    ::setenv("NDISSHM_ZERO_AHEAD", "0", 1);
    EXPECT_EQ(quiet_config().zero_ahead, static_cast<uint32_t>(NDISSHM_ZERO_AHEAD_OFF));
    EXPECT_EQ(zero_ahead_of(quiet_config()), 0);
    ::unsetenv("NDISSHM_ZERO_AHEAD");
    EXPECT_EQ(quiet_config().zero_ahead, static_cast<uint32_t>(NDISSHM_ZERO_AHEAD_AUTO));
}

// A caller built against the header before zero_ahead passes the struct size of then: accepted, and
// zero_ahead (beyond what it passed) takes its default.
TEST(MemoryZeroAhead, AConfigOfTheSizeBeforeZeroAheadTakesItsDefault) {
    ::setenv("NDISSHM_ZERO_AHEAD", "1", 1);  // the default, as config_init makes it
    auto c = quiet_config();
    c.struct_size = offsetof(ndisshm_runtime_config, zero_ahead);
    c.zero_ahead = 77;  // not the caller's: past its struct
    EXPECT_EQ(zero_ahead_of(c), 1);
    ::unsetenv("NDISSHM_ZERO_AHEAD");
}

class MemoryZeroAheadOn : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override {
        c.page_mode = NDISSHM_PAGES_BASE;
        c.zero_ahead = NDISSHM_ZERO_AHEAD_ON;
    }
    ndisshm_memory_stats memory() {
        ndisshm_memory_stats m{};
        EXPECT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
        return m;
    }
};

// Blocks one adapter frees beyond what its CPU's cache keeps go to the zeroer; once it has cleared
// them (it runs when a CPU is idle: this thread sleeps meanwhile), another adapter is served with them,
// zero, and the statistics say so. The zeroer stops with the runtime, with or without work left.
TEST_F(MemoryZeroAheadOn, FreedBlocksAreClearedAheadAndServeAnotherAdapter) {
    constexpr ULONG kLength = 16 * PAGE_SIZE;
    constexpr int kBlocks = 40;  // far more than a CPU's cache keeps of this size (4)
    std::vector<NDIS_HANDLE> held;
    for (int i = 0; i < kBlocks; ++i) {
        Alloc a = allocate(adapter_, kLength, 0, NdisSharedMemoryUsageReceive, 0, 32);
        ASSERT_TRUE(a.ok());
        fill_pattern(a.bytes(), kLength, static_cast<uint64_t>(i) + 1);
        held.push_back(a.handle);
    }
    for (NDIS_HANDLE h : held) NdisFreeSharedMemory(adapter_, h);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (memory().zeroed_ahead_bytes < 8 * kLength && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const ndisshm_memory_stats before = memory();
    EXPECT_EQ(before.zero_ahead, 1u);
    ASSERT_GE(before.zeroed_ahead_bytes, 8 * kLength) << "the zeroer did not run within 20 s";
    EXPECT_EQ(before.zeroed_ahead_bytes % kLength, 0u) << "whole blocks";

    const NDIS_HANDLE other = new_adapter("eth1");
    held.clear();
    for (int i = 0; i < kBlocks; ++i) {
        Alloc a = allocate(other, kLength, 0, NdisSharedMemoryUsageReceive, 0, 32);
        ASSERT_TRUE(a.ok());
        ASSERT_EQ(first_nonzero(a.bytes(), kLength), kLength) << "block " << i;
        held.push_back(a.handle);
    }
    const ndisshm_memory_stats after = memory();
    EXPECT_GT(after.served_pre_zeroed, before.served_pre_zeroed) << "no allocation was served by the zeroer";
    EXPECT_EQ(after.owner_reuses, before.owner_reuses);
    for (NDIS_HANDLE h : held) NdisFreeSharedMemory(other, h);
    EXPECT_TRUE(log_.all().empty());
}

}  // namespace
}  // namespace ndisshm::test
