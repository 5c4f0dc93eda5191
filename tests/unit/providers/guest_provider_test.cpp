// The guest provider registered on an adapter (through a binding, with the
// public ops table): queues assigned to a guest are carved out of that guest's
// memory and described by guest physical addresses; the default queue and
// unassigned queues get host memory; each guest block is announced when NDIS
// commits it and withdrawn before its range is reused; NDIS's teardown rules
// (queue freed or binding detached with blocks) free them through it.
#include "providers/guest_provider.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <ndisshm/host.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#include "nic/provider_ops.hpp"
#include "nic/vmq_miniport.hpp"

namespace ndisshm::test {
using namespace ndisshm::providers;  // the layer under test
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kBase = 0x200000000ull;

struct Recorder final : BlockListener {
    std::mutex mu;
    std::vector<std::pair<uint32_t, GuestBlock>> added, removed;
    void block_added(uint32_t g, const GuestBlock& b) override {
        std::lock_guard lock(mu);
        added.push_back({g, b});
    }
    void block_removed(uint32_t g, const GuestBlock& b) override {
        std::lock_guard lock(mu);
        removed.push_back({g, b});
    }
};

class GuestProviderTest : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("NDISSHM_QUIET", "1", 1);
        ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_adapter_create(rt_, "nic0", &adapter_), NDIS_STATUS_SUCCESS);
        GuestProviderConfig c;
        c.listener = &rec_;
        auto p = GuestProvider::create(c);
        ASSERT_TRUE(p.ok()) << p.error().message();
        provider_ = std::move(*p);
        ASSERT_EQ(ndisshm_binding_create(adapter_, "vswitch", &binding_), NDIS_STATUS_SUCCESS);
        const ndisshm_provider_ops ops = nic::provider_ops(*provider_);
        ASSERT_EQ(ndisshm_binding_register_provider(binding_, &ops), NDIS_STATUS_SUCCESS);
    }
    void TearDown() override {
        if (binding_ != nullptr) ndisshm_binding_destroy(binding_);
        ndisshm_adapter_destroy(adapter_);
        ndisshm_runtime_destroy(rt_);
        EXPECT_EQ(provider_->stats().refused_frees, 0u);
    }

    std::shared_ptr<GuestMemory> add_guest(uint32_t id, uint64_t bytes) {
        const int fd = ::memfd_create("gp-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
        auto m = GuestMemory::adopt(os::UniqueFd(fd), bytes, kBase, GuestMemoryLimits{4096, 64 * kMiB}, "vm");
        EXPECT_TRUE(m.ok());
        EXPECT_TRUE(provider_->add_guest(id, *m).ok());
        return *m;
    }
    // The switch's binding allocates the queue, so the guest provider registered on it serves it.
    void open_queue(uint32_t q, uint32_t guest) {
        ASSERT_EQ(ndisshm_queue_allocate(binding_, q, nullptr), NDIS_STATUS_SUCCESS);
        if (guest != 0) {
            ASSERT_TRUE(provider_->assign_queue(q, guest).ok());
        }
        ASSERT_EQ(ndisshm_queue_allocation_complete(adapter_, q), NDIS_STATUS_SUCCESS);
    }
    struct Block {
        NDIS_STATUS status;
        NDIS_HANDLE handle;
        void* va;
        uint64_t address;
        ULONG elements;
    };
    Block allocate(uint32_t q, ULONG length, bool contiguous = false) {
        NDIS_SHARED_MEMORY_PARAMETERS p;
        NdisZeroMemory(&p, sizeof(p));
        p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Flags = contiguous ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
        p.QueueId = q;
        p.PreferredNode = MM_ANY_NODE_OK;
        p.Usage = NdisSharedMemoryUsageReceive;
        p.Length = length;
        std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(4));
        p.SGListBuffer = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
        p.SGListBuffer->NumberOfElements = 4;
        p.SGListBufferLength = static_cast<ULONG>(sg.size());
        NDIS_HANDLE h = nullptr;
        const NDIS_STATUS s = NdisAllocateSharedMemory(adapter_, &p, &h);
        return {s, h, p.VirtualAddress, static_cast<uint64_t>(p.SGListBuffer->Elements[0].Address.QuadPart),
                p.SGListBuffer->NumberOfElements};
    }
    uint64_t violations(ndisshm_violation_kind k) { return ndisshm_runtime_violation_count(rt_, k); }

    ndisshm_runtime* rt_ = nullptr;
    NDIS_HANDLE adapter_ = nullptr;
    NDIS_HANDLE binding_ = nullptr;
    Recorder rec_;
    std::unique_ptr<GuestProvider> provider_;
};

TEST_F(GuestProviderTest, AssignedQueueIsCarvedFromItsGuestsMemoryWithGuestPhysicalAddresses) {
    auto mem = add_guest(7, 4 * kMiB);
    open_queue(1, 7);
    for (bool contiguous : {false, true}) {
        Block b = allocate(1, 3 * 4096 + 10, contiguous);
        ASSERT_EQ(b.status, NDIS_STATUS_SUCCESS);
        EXPECT_EQ(b.elements, 1u) << "one range of guest memory, one element";
        ASSERT_GE(b.address, kBase);
        const uint64_t offset = b.address - kBase;
        EXPECT_TRUE(mem->contains(offset, 3 * 4096 + 10));
        EXPECT_EQ(b.va, mem->address(offset)) << "VirtualAddress = host mapping + offset";
        NdisFreeSharedMemory(adapter_, b.handle);
    }
    EXPECT_EQ(mem->bytes_in_use(), 0u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 1), NDIS_STATUS_SUCCESS);
}

TEST_F(GuestProviderTest, UnassignedQueuesGetHostMemoryAndTheDefaultQueueNdiss) {
    auto mem = add_guest(7, 4 * kMiB);
    open_queue(2, 0);
    EXPECT_FALSE(provider_->assign_queue(0, 7).ok()) << "the default queue is the host's";
    EXPECT_FALSE(provider_->assign_queue(3, 99).ok()) << "no such guest";
    for (uint32_t q : {0u, 2u}) {
        Block b = allocate(q, 8192);
        ASSERT_EQ(b.status, NDIS_STATUS_SUCCESS);
        EXPECT_EQ(b.address, reinterpret_cast<uintptr_t>(b.va)) << "host memory: IOVA = VA";
        // Queue 0 is no binding's: NDIS's own memory serves it, never the switch's provider.
        EXPECT_EQ(provider_->stats().host_blocks, q == 0 ? 0u : 1u);
        NdisFreeSharedMemory(adapter_, b.handle);
    }
    EXPECT_EQ(mem->bytes_in_use(), 0u);
    EXPECT_TRUE(rec_.added.empty()) << "host blocks are not announced to any guest";
    ASSERT_EQ(ndisshm_queue_free(adapter_, 2), NDIS_STATUS_SUCCESS);
}

TEST_F(GuestProviderTest, EachGuestBlockIsAnnouncedWithItsHandleAndWithdrawnBeforeItsRangeIsReused) {
    add_guest(3, 2 * kMiB);
    open_queue(5, 3);
    Block b = allocate(5, 65536);
    ASSERT_EQ(b.status, NDIS_STATUS_SUCCESS);
    ASSERT_EQ(rec_.added.size(), 1u);
    EXPECT_EQ(rec_.added[0].first, 3u);
    EXPECT_EQ(rec_.added[0].second.handle, reinterpret_cast<uintptr_t>(b.handle));
    EXPECT_EQ(rec_.added[0].second.guest_offset, b.address - kBase);
    EXPECT_EQ(rec_.added[0].second.queue_id, 5u);
    EXPECT_EQ(rec_.added[0].second.length, 65536u);
    NdisFreeSharedMemory(adapter_, b.handle);
    ASSERT_EQ(rec_.removed.size(), 1u);
    EXPECT_EQ(rec_.removed[0].second.handle, reinterpret_cast<uintptr_t>(b.handle));
    ASSERT_EQ(ndisshm_queue_free(adapter_, 5), NDIS_STATUS_SUCCESS);
    EXPECT_FALSE(provider_->guest_of(5)) << "a queue that goes is unassigned";
}

TEST_F(GuestProviderTest, GuestMemoryExhaustedIsResourcesNotHostMemory) {
    add_guest(1, 64 * 1024);
    open_queue(1, 1);
    Block a = allocate(1, 65536);
    ASSERT_EQ(a.status, NDIS_STATUS_SUCCESS);
    EXPECT_EQ(allocate(1, 4096).status, NDIS_STATUS_RESOURCES);
    EXPECT_NE(provider_->last_error().find("no free range"), std::string::npos) << provider_->last_error();
    NdisFreeSharedMemory(adapter_, a.handle);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 1), NDIS_STATUS_SUCCESS);
}

TEST_F(GuestProviderTest, QueueFreedWithBlocksIsReportedAndTheyGoBackThroughTheGuestProvider) {
    auto mem = add_guest(2, 2 * kMiB);
    open_queue(4, 2);
    ASSERT_EQ(allocate(4, 4096).status, NDIS_STATUS_SUCCESS);
    ASSERT_EQ(allocate(4, 4096).status, NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 4), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(violations(NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS), 2u);
    EXPECT_EQ(rec_.removed.size(), 2u) << "the guest is told";
    EXPECT_EQ(mem->bytes_in_use(), 0u) << "the ranges went back";
}

TEST_F(GuestProviderTest, BindingDetachedWithBlocksFreesThemThroughTheGuestProvider) {
    auto mem = add_guest(2, 2 * kMiB);
    open_queue(4, 2);
    ASSERT_EQ(allocate(4, 4096).status, NDIS_STATUS_SUCCESS);
    ASSERT_EQ(allocate(4, 8192).status, NDIS_STATUS_SUCCESS);
    ndisshm_binding_destroy(binding_);
    binding_ = nullptr;
    EXPECT_EQ(violations(NDISSHM_VIOLATION_BINDING_DETACHED_WITH_BLOCKS), 2u);
    EXPECT_EQ(mem->bytes_in_use(), 0u);
    EXPECT_EQ(provider_->stats().host_blocks + provider_->stats().guest_blocks, 0u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 4), NDIS_STATUS_SUCCESS);
}

TEST_F(GuestProviderTest, AGuestRemovedWhileItsBlocksAreOutKeepsItsMemoryMappedUntilTheLastFree) {
    std::weak_ptr<GuestMemory> weak = add_guest(9, 2 * kMiB);
    open_queue(3, 9);
    Block b = allocate(3, 4096);
    ASSERT_EQ(b.status, NDIS_STATUS_SUCCESS);
    provider_->remove_guest(9);
    EXPECT_FALSE(provider_->guest_of(3));
    EXPECT_FALSE(weak.expired()) << "the block still holds the memory";
    static_cast<std::byte*>(b.va)[0] = std::byte{1};  // still mapped: no fault
    // New allocations for the queue get host memory now.
    Block h = allocate(3, 4096);
    ASSERT_EQ(h.status, NDIS_STATUS_SUCCESS);
    EXPECT_EQ(h.address, reinterpret_cast<uintptr_t>(h.va));
    NdisFreeSharedMemory(adapter_, h.handle);
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_TRUE(weak.expired()) << "unmapped with the last block";
    ASSERT_EQ(ndisshm_queue_free(adapter_, 3), NDIS_STATUS_SUCCESS);
}

TEST_F(GuestProviderTest, MiniportTakesBackOnlyTheSlotsItGaveAndFreesItsBuffersOnStop) {
    add_guest(1, 2 * kMiB);
    open_queue(1, 1);
    nic::VmqMiniport nic(adapter_, {2, 8192, 4096});
    ASSERT_EQ(nic.start_queue(1), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(nic.stats(1).slots, 4u);
    const std::byte pkt[100] = {};
    std::vector<nic::RxDescriptor> got;
    for (int i = 0; i < 4; ++i) got.push_back(*nic.receive(1, pkt));
    EXPECT_FALSE(nic.receive(1, pkt)) << "ring full";
    EXPECT_EQ(nic.stats(1).ring_full, 1u);
    auto forged = got[0];
    forged.cookie ^= 1u << 16;
    EXPECT_FALSE(nic.give_back(1, forged)) << "stale generation";
    forged = got[0];
    forged.offset += 64;
    EXPECT_FALSE(nic.give_back(1, forged)) << "offset moved";
    forged = got[0];
    forged.handle = got[0].handle + 1;
    EXPECT_FALSE(nic.give_back(1, forged)) << "another handle";
    EXPECT_FALSE(nic.give_back(2, got[0])) << "another queue";
    EXPECT_TRUE(nic.give_back(1, got[0]));
    EXPECT_FALSE(nic.give_back(1, got[0])) << "twice";
    const std::vector<std::byte> big(4097);
    EXPECT_FALSE(nic.receive(1, big)) << "larger than a slot";
    nic.stop_queue(1);
    EXPECT_FALSE(nic.receive(1, pkt));
    EXPECT_EQ(provider_->stats().guest_blocks, 0u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 1), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(violations(NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS), 0u);
}

}  // namespace
}  // namespace ndisshm::test
