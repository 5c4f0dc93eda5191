// The fixture of the nic::VmqMiniport tests: a quiet runtime with one
// adapter, the VMQ life cycle of a queue, and where a segment's bytes are.
// TearDown fails the test on any verifier finding: a miniport must never
// cause one.
#pragma once

#include <gtest/gtest.h>
#include <ndisshm/host.h>

#include <cstdint>
#include <vector>

#include "nic/vmq_miniport.hpp"

namespace ndisshm::test {
using namespace ndisshm::nic;  // the layer under test

class VmqMiniportTest : public ::testing::Test {
protected:
    void SetUp() override {
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.report_to_stderr = 0;
        ASSERT_EQ(ndisshm_runtime_create(&c, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_adapter_create(rt_, "nic0", &adapter_), NDIS_STATUS_SUCCESS);
    }
    void TearDown() override {
        ndisshm_adapter_destroy(adapter_);
        uint64_t violations = 0;
        for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
            violations += ndisshm_runtime_violation_count(rt_, static_cast<ndisshm_violation_kind>(k));
        EXPECT_EQ(violations, 0u) << "verifier findings";
        ndisshm_runtime_destroy(rt_);
    }
    // The VMQ life cycle: allocated with `params`, completed.
    void open_queue(uint32_t id, ndisshm_queue_params params) {
        ASSERT_EQ(ndisshm_queue_allocate(adapter_, id, &params), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_queue_allocation_complete(adapter_, id), NDIS_STATUS_SUCCESS);
    }
    // Where a segment's bytes are, through the miniport's own block list.
    const std::byte* bytes_at(const std::vector<RxBlock>& blocks, uint64_t handle, uint32_t offset) {
        for (const RxBlock& b : blocks)
            if (b.handle == handle) return b.address + offset;
        ADD_FAILURE() << "no block " << handle;
        return nullptr;
    }

    ndisshm_runtime* rt_ = nullptr;
    NDIS_HANDLE adapter_ = nullptr;
};

}  // namespace ndisshm::test
