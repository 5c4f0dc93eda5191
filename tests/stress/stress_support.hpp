// Shared by the allocate/free stress tests: the tests' provider set up for
// them (registered the NDIS way, remembers every context it handed out and
// counts how often each comes back), sizes and iteration counts scaled for
// sanitizer builds.
#pragma once

#include <gtest/gtest.h>


#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "ndis/ndis_shm.h"
#include "ndisshm/host.h"

#include "common/test_provider.hpp"

namespace ndisshm::test {

namespace {

// Sanitized builds run much slower (TSan several times more than ASan): the
// same test does proportionally less work there.
#if defined(__SANITIZE_THREAD__)
constexpr int kSlowdown = 8;
#elif defined(__SANITIZE_ADDRESS__)
constexpr int kSlowdown = 2;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kSlowdown = 8;
#elif __has_feature(address_sanitizer)
constexpr int kSlowdown = 2;
#else
constexpr int kSlowdown = 1;
#endif
#else
constexpr int kSlowdown = 1;
#endif

constexpr int kThreads = 4;
constexpr int kIterations = 20000 / kSlowdown;
constexpr uint32_t kMinBytes = 4 * 1024;
constexpr uint32_t kMaxBytes = 256 * 1024;
constexpr NDIS_RECEIVE_QUEUE_ID kQueues[] = {NDIS_DEFAULT_RECEIVE_QUEUE_ID, 1, 2, 3, 4};

inline uint64_t all_violations(const ndisshm_runtime* rt) {
    uint64_t n = 0;
    for (int k = NDISSHM_VIOLATION_BAD_HANDLE; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
        n += ndisshm_runtime_violation_count(rt, static_cast<ndisshm_violation_kind>(k));
    return n;
}

inline ndisshm_runtime* make_runtime() {
    ndisshm_runtime_config config;
    ndisshm_runtime_config_init(&config);
    config.report_to_stderr = 0;
    config.arena_capacity_bytes = uint64_t{1} << 30;  // plenty for 4 threads x 32 x 256 KiB
    config.max_blocks = uint64_t{1} << 16;
    ndisshm_runtime* rt = nullptr;
    EXPECT_EQ(ndisshm_runtime_create(&config, &rt, nullptr, 0), NDIS_STATUS_SUCCESS);
    return rt;
}

// One call the way a miniport makes it: its own SG buffer with room for one
// element per page, revision 2 header.
struct Allocation {
    NDIS_STATUS status = NDIS_STATUS_FAILURE;
    NDIS_HANDLE handle = nullptr;
    NDIS_HANDLE shared_memory_handle = nullptr;
    unsigned char* va = nullptr;
    ULONG length = 0;
    ULONG elements = 0;
    ULONG64 first_address = 0;
    ULONG64 described = 0;
};

inline Allocation allocate(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                           ULONG length, ULONG flags = 0, NODE_REQUIREMENT node = MM_ANY_NODE_OK) {
    const ULONG capacity = BYTES_TO_PAGES(length);
    std::vector<unsigned char> sg_storage(NDISSHM_SG_LIST_BYTES(capacity) + 16);
    auto* sg = reinterpret_cast<PSCATTER_GATHER_LIST>((reinterpret_cast<uintptr_t>(sg_storage.data()) + 15) &
                                                      ~uintptr_t{15});
    sg->NumberOfElements = capacity;
    NDIS_SHARED_MEMORY_PARAMETERS p;
    NdisZeroMemory(&p, sizeof(p));
    p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Flags = flags;
    p.QueueId = queue;
    p.PreferredNode = node;
    p.Usage = usage;
    p.Length = length;
    p.SGListBufferLength = NDISSHM_SG_LIST_BYTES(capacity);
    p.SGListBuffer = sg;
    Allocation a;
    a.status = NdisAllocateSharedMemory(adapter, &p, &a.handle);
    if (a.status != NDIS_STATUS_SUCCESS) return a;
    a.shared_memory_handle = p.SharedMemoryHandle;
    a.va = static_cast<unsigned char*>(p.VirtualAddress);
    a.length = length;
    a.elements = sg->NumberOfElements;
    a.first_address = static_cast<ULONG64>(sg->Elements[0].Address.QuadPart);
    for (ULONG i = 0; i < a.elements && i < capacity; ++i) a.described += sg->Elements[i].Length;
    return a;
}

// The tests' provider (common/test_provider.hpp), set up the way every stress test uses it: it fails
// every 61st call with NDIS_STATUS_RESOURCES (failures must reach the caller and never come back as a
// free), describes non-contiguous blocks in 64 KiB elements, and serves from one slab of 256 KiB slots
// (the largest block; more than 4 threads x 32 outstanding) so that it never calls mmap itself, which
// sanitizers make slow. Calls are counted, not recorded.
constexpr ULONG kSegmentBytes = 64 * 1024;
constexpr uint64_t kFailEvery = 61;

inline void make_stress_provider(TestProvider& provider) {
    provider.fail_every = kFailEvery;
    provider.segment_bytes = kSegmentBytes;
    provider.record_calls = false;
    provider.use_slab(256 * 1024, 192);
}

// The adapter's books once every thread has freed all it held: nothing
// outstanding, and each successful allocation counted once as an allocation
// and once as a free, each refusal once as a failure.
inline ndisshm_adapter_stats expect_books_settled(NDIS_HANDLE adapter, uint64_t successes, uint64_t refusals) {
    ndisshm_adapter_stats s{};
    EXPECT_EQ(ndisshm_adapter_get_stats(adapter, &s), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(s.total.blocks, 0u);
    EXPECT_EQ(s.total.bytes, 0u);
    EXPECT_EQ(s.total.allocations, successes);
    EXPECT_EQ(s.total.frees, successes);
    EXPECT_EQ(s.total.failures, refusals);
    return s;
}

struct Failures {
    std::atomic<uint64_t> count{0};
    std::mutex mu;
    std::string first;
    void add(const std::string& what) {
        if (count.fetch_add(1) == 0) {
            std::lock_guard lock(mu);
            first = what;
        }
    }
};

}  // namespace

}  // namespace ndisshm::test
