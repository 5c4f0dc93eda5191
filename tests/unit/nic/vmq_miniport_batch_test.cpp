// nic::VmqMiniport's batch calls, receive_batch, give_back_batch and give_back_cookies: what the
// hub's delivery and its reaping of completions use, one lock per batch instead of one
// per packet. They must do exactly what receive and give_back do packet by
// packet, stop where those would refuse, never cut a split packet's chain,
// and change nothing for what they refuse.
#include <gtest/gtest.h>
#include <ndisshm/host.h>

#include <cstring>
#include <span>
#include <vector>

#include "unit/nic/vmq_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::nic;  // the layer under test
namespace {

constexpr uint32_t kQueue = 2;

class VmqMiniportBatch : public VmqMiniportTest {
protected:
    void open_queue(ndisshm_queue_params params) { VmqMiniportTest::open_queue(kQueue, params); }
    const std::byte* bytes_at(const VmqMiniport& nic, uint64_t handle, uint32_t offset) {
        return VmqMiniportTest::bytes_at(nic.blocks(kQueue), handle, offset);
    }
    // `count` packets of `length` bytes, each filled with its own byte.
    void make_packets(size_t count, size_t length) {
        storage_.assign(count, {});
        spans_.clear();
        for (size_t i = 0; i < count; ++i) {
            storage_[i].assign(length, static_cast<std::byte>(0x10 + i));
            spans_.emplace_back(storage_[i]);
        }
    }

    std::vector<std::vector<std::byte>> storage_;
    std::vector<std::span<const std::byte>> spans_;
};

TEST_F(VmqMiniportBatch, ReceiveBatchWritesEveryPacketIntoItsOwnSlot) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {2, 16384, 2048});  // 16 slots
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(10, 1500);
    std::vector<RxDescriptor> out;
    ASSERT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, out), 10u);
    ASSERT_EQ(out.size(), 10u);
    for (size_t i = 0; i < out.size(); ++i) {
        EXPECT_EQ(out[i].length, 1500u);
        const std::byte* at = bytes_at(nic, out[i].handle, out[i].offset);
        ASSERT_NE(at, nullptr);
        EXPECT_EQ(std::memcmp(at, storage_[i].data(), 1500), 0) << "packet " << i;
        for (size_t k = 0; k < i; ++k)
            EXPECT_FALSE(out[k].handle == out[i].handle && out[k].offset == out[i].offset)
                << k << " and " << i;
    }
    EXPECT_EQ(nic.stats(kQueue).received, 10u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 10u);
    EXPECT_EQ(nic.give_back_batch(kQueue, out), 10u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 0u);
    nic.stop_queue(kQueue);
}

TEST_F(VmqMiniportBatch, ReceiveBatchStopsWhenTheRingIsFull) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {1, 8192, 2048});  // 4 slots
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(6, 100);
    std::vector<RxDescriptor> out;
    EXPECT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, out), 4u);
    EXPECT_EQ(out.size(), 4u);
    EXPECT_EQ(nic.stats(kQueue).ring_full, 1u) << "it stops at the first refusal, not after trying the rest";
    EXPECT_EQ(nic.give_back_batch(kQueue, out), 4u);
    nic.stop_queue(kQueue);
}

TEST_F(VmqMiniportBatch, ReceiveBatchNeverCutsASplitPacketsChain) {
    open_queue({sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 128});
    VmqMiniport nic(adapter_, {2, 16384, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(4, 1000);  // two segments each
    std::vector<RxDescriptor> out;
    // Five segments fit two packets whole; the third would need the sixth.
    EXPECT_EQ(nic.receive_batch(kQueue, spans_, 5, out), 2u);
    ASSERT_EQ(out.size(), 2u);
    for (const auto& d : out) {
        EXPECT_EQ(d.segments, 2u);
        EXPECT_EQ(d.packet_length(), 1000u);
    }
    EXPECT_EQ(nic.stats(kQueue).received, 2u) << "the packet that did not fit was never written";
    EXPECT_EQ(nic.give_back_batch(kQueue, out), 2u);
    nic.stop_queue(kQueue);
}

TEST_F(VmqMiniportBatch, GiveBackBatchStopsAtTheFirstForgedDescriptorAndKeepsTheRest) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {1, 16384, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(4, 64);
    std::vector<RxDescriptor> out;
    ASSERT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, out), 4u);
    std::vector<RxDescriptor> back = out;
    back[2].offset += 64;  // not what receive gave
    EXPECT_EQ(nic.give_back_batch(kQueue, back), 2u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 2u) << "the forged one and the one after it are still held";
    // Given back twice: refused, nothing changes.
    EXPECT_EQ(nic.give_back_batch(kQueue, std::span(out).first(1)), 0u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 2u);
    EXPECT_EQ(nic.give_back_batch(kQueue, std::span(out).subspan(2)), 2u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 0u);
    EXPECT_EQ(nic.stats(kQueue).returned, 4u);
    nic.stop_queue(kQueue);
}

TEST_F(VmqMiniportBatch, BatchCallsOnAStoppedQueueDoNothing) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {1, 16384, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(2, 64);
    std::vector<RxDescriptor> out;
    ASSERT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, out), 2u);
    nic.stop_queue(kQueue);
    std::vector<RxDescriptor> more;
    EXPECT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, more), 0u);
    EXPECT_TRUE(more.empty());
    EXPECT_EQ(nic.give_back_batch(kQueue, out), 0u);
}


std::vector<uint32_t> cookies_of(const std::vector<RxDescriptor>& ds) {
    std::vector<uint32_t> c;
    for (const RxDescriptor& d : ds) c.push_back(d.cookie);
    return c;
}

TEST_F(VmqMiniportBatch, GiveBackCookiesTakesEachPacketBackByItsCookieAlone) {
    open_queue({sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 128});
    VmqMiniport nic(adapter_, {2, 16384, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(4, 1500);  // split: two segments each
    std::vector<RxDescriptor> out;
    ASSERT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, out), 4u);
    EXPECT_EQ(nic.give_back_cookies(kQueue, cookies_of(out)), 4u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 0u) << "both halves of each packet back";
    EXPECT_EQ(nic.stats(kQueue).returned, 4u);
    // The slots are free again: as many packets fit as before.
    out.clear();
    EXPECT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, out), 4u);
    EXPECT_EQ(nic.give_back_cookies(kQueue, cookies_of(out)), 4u);
    nic.stop_queue(kQueue);
}

TEST_F(VmqMiniportBatch, GiveBackCookiesRefusesReplayedStaleAndForgedCookies) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {1, 8192, 2048});  // 4 slots
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    make_packets(2, 100);
    std::vector<RxDescriptor> first;
    ASSERT_EQ(nic.receive_batch(kQueue, spans_, SIZE_MAX, first), 2u);
    const uint32_t a = first[0].cookie, b = first[1].cookie;
    // A replay inside one batch: the first is taken, the batch stops at the second.
    const uint32_t replay[] = {a, a, b};
    EXPECT_EQ(nic.give_back_cookies(kQueue, replay), 1u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 1u);
    // The slot of `a` is received into again (the last given back is reused
    // first): `a` is now of an old generation.
    std::vector<RxDescriptor> again;
    ASSERT_EQ(nic.receive_batch(kQueue, std::span(spans_).first(1), SIZE_MAX, again), 1u);
    ASSERT_EQ(again[0].cookie & 0xffffu, a & 0xffffu) << "the same slot";
    const uint32_t stale[] = {a};
    EXPECT_EQ(nic.give_back_cookies(kQueue, stale), 0u);
    // Forged: no such slot; a free slot; a held slot of a generation to come.
    const uint32_t no_slot[] = {4u};
    const uint32_t free_slot[] = {(a & ~0xffffu) | 3u};
    const uint32_t future[] = {b + (1u << 16)};
    EXPECT_EQ(nic.give_back_cookies(kQueue, no_slot), 0u);
    EXPECT_EQ(nic.give_back_cookies(kQueue, free_slot), 0u);
    EXPECT_EQ(nic.give_back_cookies(kQueue, future), 0u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 2u) << "nothing a refusal named was freed";
    const uint32_t live[] = {b, again[0].cookie};
    EXPECT_EQ(nic.give_back_cookies(kQueue, live), 2u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 0u);
    nic.stop_queue(kQueue);
    EXPECT_EQ(nic.give_back_cookies(kQueue, live), 0u) << "a stopped queue takes nothing back";
}

// A cookie names its slot in 16 bits, as the shared rings carry it.
TEST_F(VmqMiniportBatch, AQueueOfMoreSlotsThanACookieNamesIsRefusedSayingWhatToChange) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {65, 65536, 64});  // 65 blocks of 1024 slots
    std::string why;
    EXPECT_EQ(nic.start_queue(kQueue, &why), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_NE(why.find("66560 slots of 64 bytes; at most 65536"), std::string::npos) << why;
    EXPECT_NE(why.find("fewer blocks or larger slots"), std::string::npos) << why;
    EXPECT_EQ(nic.queue_ref(kQueue), nullptr) << "nothing started";
}

TEST_F(VmqMiniportBatch, QueueRefReceivesAndGivesBackAsTheQueueIdDoes) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {1, 8192, 2048});  // 4 slots
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(nic.queue_ref(kQueue + 1), nullptr) << "no such queue";
    const VmqMiniport::QueueRef q = nic.queue_ref(kQueue);
    ASSERT_NE(q, nullptr);
    make_packets(3, 100);
    std::vector<RxDescriptor> out(3);
    ASSERT_EQ(nic.receive_batch(q, spans_, SIZE_MAX, out.data()), 3u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 3u) << "the same queue as by its id";
    const uint32_t forged[] = {out[0].cookie + (1u << 16)};
    EXPECT_EQ(nic.give_back_cookies(q, forged), 0u) << "the same checks as by its id";
    EXPECT_EQ(nic.give_back_cookies(q, cookies_of(out)), 3u);
    EXPECT_EQ(nic.stats(kQueue).outstanding, 0u);
    nic.stop_queue(kQueue);
}

TEST_F(VmqMiniportBatch, QueueRefKeptPastStopQueueReceivesNothingAndTakesNothingBack) {
    open_queue({sizeof(ndisshm_queue_params), 0, 0});
    VmqMiniport nic(adapter_, {1, 16384, 2048});
    ASSERT_EQ(nic.start_queue(kQueue), NDIS_STATUS_SUCCESS);
    const VmqMiniport::QueueRef q = nic.queue_ref(kQueue);
    make_packets(2, 1500);  // two lines and more: receive_batch would ask ahead for slots
    std::vector<RxDescriptor> out(2);
    ASSERT_EQ(nic.receive_batch(q, spans_, SIZE_MAX, out.data()), 2u);
    nic.stop_queue(kQueue);  // its blocks are freed; the ref keeps only the records
    std::vector<RxDescriptor> more(2);
    EXPECT_EQ(nic.receive_batch(q, spans_, SIZE_MAX, more.data()), 0u);
    EXPECT_EQ(nic.give_back_cookies(q, cookies_of(out)), 0u);
    EXPECT_EQ(nic.queue_ref(kQueue), nullptr);
}

}  // namespace
}  // namespace ndisshm::test
