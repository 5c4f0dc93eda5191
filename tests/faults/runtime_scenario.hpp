// One runtime's life, step by step, through the public API only, recording
// each step's NDIS status, what it logged on stderr and whether an injected
// fault met it; after every step the books are held to what the driver holds.
#pragma once

#include <gtest/gtest.h>
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "faults/fault_support.hpp"

namespace ndisshm::test {

struct RuntimeVariant {
    std::string name;
    uint32_t address_mode = NDISSHM_ADDRESS_IOVA;
    bool huge = false;
    uint64_t capacity = uint64_t{1} << 30;
    std::vector<uint32_t> sizes;  // allocated in turn, on queues 0 and 1 alternately
    std::vector<size_t> again;    // indices freed after the first round and allocated again (reuse)
    // After a refused allocation the driver waits this long before its next one. Huge pages: an arena
    // repeats the pool's refusal for 10 ms rather than ask the kernel again at once (arena.hpp).
    int pause_after_failure_ms = 0;

    // Growing sizes: the arena's file grows (64 MiB steps) twice; reused blocks are zeroed by punching.
    static RuntimeVariant base() {
        return {"base", NDISSHM_ADDRESS_IOVA, false, uint64_t{1} << 30,
                {4096, 65536, 1u << 20, 32u << 20, 96u << 20, 200u << 20}, {0, 3, 5}};
    }
    // Physical SG addresses: each block locked (mlock) and looked up in /proc/self/pagemap.
    static RuntimeVariant physical() {
        return {"physical", NDISSHM_ADDRESS_PHYSICAL, false, uint64_t{1} << 30, {4096, 65536, 1u << 20}, {0, 1}};
    }
    // 2 MiB hugetlb pages, committed with fallocate as the allocator reaches them.
    static RuntimeVariant huge_pages() {
        return {"huge", NDISSHM_ADDRESS_IOVA, true, uint64_t{32} << 20, {4096, 2u << 20, 4u << 20}, {1}, 20};
    }
    static std::string physical_unavailable() {
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.report_to_stderr = 0;
        c.address_mode = NDISSHM_ADDRESS_PHYSICAL;
        ndisshm_runtime* rt = nullptr;
        if (ndisshm_runtime_create(&c, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS) return "physical address mode needs CAP_SYS_ADMIN";
        ndisshm_runtime_destroy(rt);
        return {};
    }
};

class RuntimeRun {
public:
    struct Step {
        std::string name;
        NDIS_STATUS status = NDIS_STATUS_SUCCESS;
        uint64_t injected = 0;  // faults injected while it ran
        std::string log;        // its stderr: the verifier log
    };

    explicit RuntimeRun(RuntimeVariant v) : v_(std::move(v)), fds_before_(open_fds()) {}
    ~RuntimeRun() {
        if (rt_ != nullptr) ndisshm_runtime_destroy(rt_);
    }

    void execute() {
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.verifier = 1;
        c.report_to_stderr = 1;  // the log is what the test reads
        c.page_mode = v_.huge ? NDISSHM_PAGES_HUGE : NDISSHM_PAGES_BASE;
        c.address_mode = v_.address_mode;
        c.arena_capacity_bytes = v_.capacity;
        c.max_block_bytes = static_cast<uint32_t>(std::min<uint64_t>(256u << 20, v_.capacity));
        c.zero_by_release_bytes = 4096;  // every reused block is zeroed by releasing its pages (fallocate)
        if (step("runtime_create", [&] { return ndisshm_runtime_create(&c, &rt_, nullptr, 0); }) != NDIS_STATUS_SUCCESS) return;
        ndisshm_runtime_set_violation_callback(rt_, &RuntimeRun::on_violation, this);
        if (step("adapter_create", [&] { return ndisshm_adapter_create(rt_, "eth0", &adapter_); }) != NDIS_STATUS_SUCCESS)
            return;
        step("queue_create", [&] { return ndisshm_queue_create(adapter_, 1); });
        std::vector<NDIS_HANDLE> held(v_.sizes.size());
        for (size_t i = 0; i < v_.sizes.size(); ++i) held[i] = allocate(i);
        for (size_t i : v_.again) {
            if (held[i] != nullptr) release(held[i]);
            held[i] = allocate(i);
        }
        // All but two freed by the driver; those two by teardown, as leaks.
        for (size_t i = 2; i < held.size(); ++i)
            if (held[i] != nullptr) release(held[i]);
        for (size_t i = 0; i < 2 && i < held.size(); ++i) leaked_ += held[i] != nullptr;
        step("adapter_destroy", [&] {
            ndisshm_adapter_destroy(adapter_);
            adapter_ = nullptr;
            live_.clear();
            return NDIS_STATUS_SUCCESS;
        });
        ndisshm_memory_stats m{};
        ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(m.blocks_in_use, 0u) << "teardown left blocks in the default provider";
        EXPECT_EQ(m.bytes_in_use, 0u);
        step("runtime_destroy", [&] {
            ndisshm_runtime_destroy(rt_);
            rt_ = nullptr;
            return NDIS_STATUS_SUCCESS;
        });
    }

    const std::vector<Step>& steps() const { return steps_; }
    const Step* step_that_met_the_fault() const {
        for (const Step& s : steps_)
            if (s.injected != 0) return &s;
        return nullptr;
    }

    // Nothing left behind: no fd, no arena mapping, no violation but the leaks teardown was given.
    void expect_clean_end() const {
        EXPECT_EQ(open_fds(), fds_before_) << "file descriptors leaked";
        EXPECT_EQ(mappings_of("ndisshm-default"), 0) << "an arena is still mapped";
        EXPECT_EQ(violations_, leaks_) << "violations other than the leaks left for teardown: " << last_violation_;
        EXPECT_EQ(leaks_, leaked_) << "teardown reported " << leaks_ << " leaks, " << leaked_ << " were left";
    }

private:
    static void on_violation(void* context, const ndisshm_violation* v) {
        auto* self = static_cast<RuntimeRun*>(context);
        ++self->violations_;
        if (v->kind == NDISSHM_VIOLATION_LEAK) ++self->leaks_;
        self->last_violation_ = v->message;
    }

    template <class F>
    NDIS_STATUS step(const std::string& name, F f) {
        const uint64_t before = fault::injected();
        ::testing::internal::CaptureStderr();
        const NDIS_STATUS s = f();
        std::string log = ::testing::internal::GetCapturedStderr();
        steps_.push_back(Step{name, s, fault::injected() - before, std::move(log)});
        check_books(name);
        return s;
    }

    NDIS_HANDLE allocate(size_t i) {
        const uint32_t bytes = v_.sizes[i];
        const ULONG queue = static_cast<ULONG>(i % 2);
        std::vector<uint64_t> sg((NDISSHM_SG_LIST_BYTES(300) + 7) / 8);
        NDIS_SHARED_MEMORY_PARAMETERS p;
        std::memset(&p, 0, sizeof(p));
        p.Header = {NDIS_OBJECT_TYPE_DEFAULT, NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2,
                    static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2)};
        p.Flags = bytes <= 4096 ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
        p.QueueId = queue;
        p.PreferredNode = MM_ANY_NODE_OK;
        p.Usage = NdisSharedMemoryUsageReceive;
        p.Length = bytes;
        p.SGListBufferLength = NDISSHM_SG_LIST_BYTES(300);
        p.SGListBuffer = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
        NDIS_HANDLE h = nullptr;
        const NDIS_STATUS s = step("allocate " + std::to_string(bytes), [&] {
            const NDIS_STATUS r = NdisAllocateSharedMemory(adapter_, &p, &h);
            if (r == NDIS_STATUS_SUCCESS) live_.push_back({h, bytes, queue});
            else ++failures_;
            return r;
        });
        if (s != NDIS_STATUS_SUCCESS && v_.pause_after_failure_ms > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(v_.pause_after_failure_ms));
        return s == NDIS_STATUS_SUCCESS ? h : nullptr;
    }

    void release(NDIS_HANDLE h) {
        step("free", [&] {
            NdisFreeSharedMemory(adapter_, h);
            for (size_t i = 0; i < live_.size(); ++i)
                if (live_[i].handle == h) live_.erase(live_.begin() + static_cast<long>(i));
            return NDIS_STATUS_SUCCESS;
        });
    }

    // The books against what the driver holds, after every step.
    void check_books(const std::string& after) {
        if (adapter_ == nullptr) return;
        SCOPED_TRACE("after " + after);
        ndisshm_adapter_stats s{};
        ASSERT_EQ(ndisshm_adapter_get_stats(adapter_, &s), NDIS_STATUS_SUCCESS);
        uint64_t bytes = 0, q1 = 0;
        for (const auto& b : live_) {
            bytes += b.bytes;
            q1 += b.queue == 1;
            EXPECT_TRUE(is_live(b.handle)) << "a block the driver holds is unknown to the books";
        }
        EXPECT_EQ(s.total.blocks, live_.size());
        EXPECT_EQ(s.total.bytes, bytes);
        EXPECT_EQ(s.total.allocations - s.total.frees, s.total.blocks);
        EXPECT_EQ(s.total.failures, failures_);
        ndisshm_usage_stats qs{};
        if (ndisshm_queue_get_stats(adapter_, 1, &qs) == NDIS_STATUS_SUCCESS) {
            EXPECT_EQ(qs.blocks, q1);
        }
        ndisshm_memory_stats m{};
        ASSERT_EQ(ndisshm_runtime_get_memory_stats(rt_, &m), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(m.blocks_in_use, live_.size()) << "the default provider and the books disagree";
    }
    bool is_live(NDIS_HANDLE h) const {
        ndisshm_block_info info{};
        return ndisshm_block_get_info(adapter_, h, &info) == NDIS_STATUS_SUCCESS;
    }

    struct Held {
        NDIS_HANDLE handle;
        uint32_t bytes;
        ULONG queue;
    };
    RuntimeVariant v_;
    size_t fds_before_;
    ndisshm_runtime* rt_ = nullptr;
    NDIS_HANDLE adapter_ = nullptr;
    std::vector<Held> live_;
    std::vector<Step> steps_;
    uint64_t failures_ = 0;
    uint64_t violations_ = 0, leaks_ = 0, leaked_ = 0;
    std::string last_violation_;
};

}  // namespace ndisshm::test
