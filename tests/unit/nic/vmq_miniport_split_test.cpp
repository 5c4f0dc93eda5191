// nic::VmqMiniport on a queue allocated with lookahead split: the buffers it
// allocates (ReceiveLookahead and ReceivePostLookahead blocks, as the Windows
// virtual miniport sample does), where each packet's bytes land, the two
// segments that describe it, giving both back, and stop_queue freeing all.
// The default provider serves the memory: the miniport is the same driver
// whoever provides it.
#include <gtest/gtest.h>
#include <ndisshm/host.h>

#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "unit/nic/vmq_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::nic;  // the layer under test
namespace {

constexpr uint32_t kQueue = 3;

class VmqMiniportSplit : public VmqMiniportTest {
protected:
    NDIS_SHARED_MEMORY_USAGE usage_of(uint64_t handle) {
        ndisshm_block_info info{};
        EXPECT_EQ(ndisshm_block_get_info(adapter_, reinterpret_cast<NDIS_HANDLE>(handle), &info),
                  NDIS_STATUS_SUCCESS);
        return info.usage;
    }
    uint64_t blocks_on_adapter() {
        ndisshm_adapter_stats s{};
        EXPECT_EQ(ndisshm_adapter_get_stats(adapter_, &s), NDIS_STATUS_SUCCESS);
        return s.total.blocks;
    }
    static std::vector<std::byte> pattern(size_t n, unsigned seed) {
        std::vector<std::byte> p(n);
        for (size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
        return p;
    }
};

TEST_F(VmqMiniportSplit, ASplitQueueGetsLookaheadAndPostLookaheadBlocks) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 100});
    VmqMiniport nic(adapter_, {4, 16384, 2048});  // 8 slots a block, 32 packets
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    std::map<uint32_t, int> usages;
    for (const RxBlock& b : nic.blocks(kQueue)) {
        EXPECT_EQ(usage_of(b.handle), static_cast<NDIS_SHARED_MEMORY_USAGE>(b.usage));
        ++usages[b.usage];
    }
    // 32 lookahead slots of 128 bytes (100 rounded up to a cache line): one block.
    EXPECT_EQ(usages[NdisSharedMemoryUsageReceiveLookahead], 1);
    EXPECT_EQ(usages[NdisSharedMemoryUsageReceivePostLookahead], 4);
    EXPECT_EQ(usages[NdisSharedMemoryUsageReceive], 0);
    const VmqQueueStats s = nic.stats(kQueue);
    EXPECT_EQ(s.slots, 32u);
    EXPECT_EQ(s.lookahead_size, 100u);
    EXPECT_EQ(s.lookahead_blocks, 1u);
    EXPECT_EQ(s.post_lookahead_blocks, 4u);
    EXPECT_EQ(nic.queue_bytes(100), 5u * 16384);
    nic.stop_queue(kQueue);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqMiniportSplit, AnUnsplitQueueStillGetsReceiveBlocksOnly) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {4, 16384, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    for (const RxBlock& b : nic.blocks(kQueue)) EXPECT_EQ(usage_of(b.handle), NdisSharedMemoryUsageReceive);
    EXPECT_EQ(nic.blocks(kQueue).size(), 4u);
    const auto p = pattern(1500, 1);
    const auto d = nic.receive(kQueue, p);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->segments, 1u);
    EXPECT_EQ(d->length, 1500u);
    EXPECT_EQ(nic.stats(kQueue).split, 0u);
    EXPECT_TRUE(nic.give_back(kQueue, *d));
    nic.stop_queue(kQueue);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqMiniportSplit, ThePacketsFirstBytesLandInTheLookaheadAndTheRestInThePostLookahead) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 100});
    VmqMiniport nic(adapter_, {2, 8192, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    const auto blocks = nic.blocks(kQueue);
    std::vector<RxDescriptor> got;
    for (unsigned i = 0; i < 8; ++i) {  // every slot, so no two packets may share a byte
        const auto p = pattern(1000 + i, i);
        const auto d = nic.receive(kQueue, p);
        ASSERT_TRUE(d);
        ASSERT_EQ(d->segments, 2u);
        EXPECT_EQ(d->length, 100u);
        EXPECT_EQ(d->next.length, 900u + i);
        EXPECT_EQ(d->packet_length(), 1000u + i);
        EXPECT_EQ(usage_of(d->handle), NdisSharedMemoryUsageReceiveLookahead);
        EXPECT_EQ(usage_of(d->next.handle), NdisSharedMemoryUsageReceivePostLookahead);
        got.push_back(*d);
    }
    // Read after all were written: each packet's bytes are still its own.
    for (unsigned i = 0; i < 8; ++i) {
        const auto p = pattern(1000 + i, i);
        const RxDescriptor& d = got[i];
        EXPECT_EQ(std::memcmp(bytes_at(blocks, d.handle, d.offset), p.data(), 100), 0)
            << "lookahead of " << i;
        EXPECT_EQ(std::memcmp(bytes_at(blocks, d.next.handle, d.next.offset), p.data() + 100, d.next.length),
                  0)
            << "post-lookahead of " << i;
    }
    EXPECT_EQ(nic.stats(kQueue).split, 8u);
    for (const auto& d : got) EXPECT_TRUE(nic.give_back(kQueue, d));
    nic.stop_queue(kQueue);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqMiniportSplit, APacketNoLongerThanTheLookaheadIsOneSegment) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 128});
    VmqMiniport nic(adapter_, {2, 8192, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    for (size_t n : {1u, 64u, 128u}) {
        const auto p = pattern(n, 9);
        const auto d = nic.receive(kQueue, p);
        ASSERT_TRUE(d);
        EXPECT_EQ(d->segments, 1u) << n << " bytes";
        EXPECT_EQ(d->length, n);
        EXPECT_EQ(usage_of(d->handle), NdisSharedMemoryUsageReceiveLookahead);
        EXPECT_EQ(std::memcmp(bytes_at(nic.blocks(kQueue), d->handle, d->offset), p.data(), n), 0);
        EXPECT_TRUE(nic.give_back(kQueue, *d));
    }
    const auto d = nic.receive(kQueue, pattern(129, 9));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->segments, 2u) << "one byte past the lookahead";
    EXPECT_EQ(d->next.length, 1u);
    EXPECT_TRUE(nic.give_back(kQueue, *d));
    EXPECT_FALSE(nic.receive(kQueue, pattern(2049, 0))) << "the largest packet is still a slot";
    EXPECT_EQ(nic.stats(kQueue).too_large, 1u);
    nic.stop_queue(kQueue);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqMiniportSplit, GiveBackTakesBothSegmentsOrNothing) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 64});
    VmqMiniport nic(adapter_, {1, 4096, 2048});  // 2 packets
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    const auto a = nic.receive(kQueue, pattern(500, 1));
    const auto b = nic.receive(kQueue, pattern(600, 2));
    ASSERT_TRUE(a && b);
    EXPECT_FALSE(nic.receive(kQueue, pattern(10, 3))) << "both pairs held: ring full";
    RxDescriptor half = *a;
    half.segments = 1;
    EXPECT_FALSE(nic.give_back(kQueue, half)) << "the lookahead alone";
    RxDescriptor swapped = *a;
    swapped.next = b->next;
    EXPECT_FALSE(nic.give_back(kQueue, swapped)) << "another packet's post-lookahead";
    RxDescriptor longer = *a;
    ++longer.next.length;
    EXPECT_FALSE(nic.give_back(kQueue, longer)) << "post-lookahead length altered";
    EXPECT_EQ(nic.stats(kQueue).outstanding, 2u) << "refusals change nothing";
    EXPECT_TRUE(nic.give_back(kQueue, *a));
    EXPECT_FALSE(nic.give_back(kQueue, *a)) << "twice";
    EXPECT_TRUE(nic.give_back(kQueue, *b));
    const VmqQueueStats s = nic.stats(kQueue);
    EXPECT_EQ(s.returned, 2u);
    EXPECT_EQ(s.outstanding, 0u);
    // Both halves of each pair are free again: two more packets fit.
    EXPECT_TRUE(nic.receive(kQueue, pattern(700, 4)));
    EXPECT_TRUE(nic.receive(kQueue, pattern(700, 5)));
    nic.stop_queue(kQueue);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqMiniportSplit, StopQueueFreesEveryBlockOfBothKinds) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 256});
    VmqMiniport nic(adapter_, {3, 8192, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(blocks_on_adapter(), 4u) << "3 post-lookahead + 1 lookahead (12 slots of 256 bytes)";
    ASSERT_TRUE(nic.receive(kQueue, pattern(1000, 1)));  // still held by the consumer at stop
    nic.stop_queue(kQueue);
    EXPECT_EQ(blocks_on_adapter(), 0u);
    EXPECT_FALSE(nic.receive(kQueue, pattern(1000, 2))) << "stopped";
    ndisshm_usage_stats q{};
    ASSERT_EQ(ndisshm_queue_get_stats(adapter_, kQueue, &q), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(q.allocations, 4u);
    EXPECT_EQ(q.frees, 4u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

TEST_F(VmqMiniportSplit, ALookaheadLargerThanASlotIsRefusedWithTheReason) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 4096});
    VmqMiniport nic(adapter_, {2, 8192, 2048});
    std::string why;
    EXPECT_EQ(nic.start_queue(kQueue, &why), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_NE(why.find("lookahead split at 4096 bytes"), std::string::npos) << why;
    EXPECT_EQ(blocks_on_adapter(), 0u);
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

// stop_queue waits for a receive in progress and makes later ones fail, with
// split queues as with any: nothing is written after the blocks are freed
// (ASan and the verifier would see it).
TEST_F(VmqMiniportSplit, StopQueueRacingReceivesNeverWritesFreedMemory) {
    open_queue(kQueue, {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 64});
    VmqMiniport nic(adapter_, {2, 8192, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    std::atomic<bool> go{true};
    std::thread nic_thread([&] {
        const auto p = pattern(1500, 7);
        while (go) {
            if (auto d = nic.receive(kQueue, p)) nic.give_back(kQueue, *d);
        }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    nic.stop_queue(kQueue);
    EXPECT_EQ(blocks_on_adapter(), 0u);
    EXPECT_FALSE(nic.receive(kQueue, pattern(1500, 8)));
    go = false;
    nic_thread.join();
    ASSERT_EQ(ndisshm_queue_free(adapter_, kQueue), NDIS_STATUS_SUCCESS);
}

}  // namespace
}  // namespace ndisshm::test
