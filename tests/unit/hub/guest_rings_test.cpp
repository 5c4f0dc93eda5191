// The host's side of a guest queue's rings (hub/guest_rings.hpp): what it
// produces, what it accepts back, and what it refuses, with the guest played
// by common/ring_support.hpp's GuestRingEnd over the same memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/ring_support.hpp"
#include "hub/guest_rings.hpp"
#include "os/unix_socket.hpp"

namespace ndisshm::test {
namespace {

using namespace ndisshm::ipc;

constexpr uint32_t kSize = 8;

class GuestRingsTest : public ::testing::Test {
protected:
    GuestRingsTest() : geometry_(RingGeometry::for_size(kSize)), words_((geometry_.bytes + 7) / 8, ~uint64_t{0}) {
        auto rx = os::WakeFd::create();
        auto done = os::WakeFd::create();
        EXPECT_TRUE(rx && done);
        rx_kick_ = rx->fd();
        done_kick_ = done->fd();
        rings_.emplace(base(), geometry_, std::move(*rx), std::move(*done), blocks_);
        guest_ = GuestRingEnd::over(base(), kSize, geometry_.done_offset);
    }
    // The BLOCK_ADDED index of `handle`, announced now if it was not yet.
    uint16_t index_of(uint64_t handle) {
        if (!blocks_.find(handle)) {
            EXPECT_TRUE(blocks_.add(handle));
        }
        return *blocks_.find(handle);
    }
    std::byte* base() { return reinterpret_cast<std::byte*>(words_.data()); }

    // A packet of `segments` segments of block `handle`, as the hub hands one over.
    static Outstanding packet(uint64_t handle, uint8_t segments = 1) {
        Outstanding o;
        o.segments = segments;
        for (uint8_t k = 0; k < segments; ++k)
            o.seg[k] = {handle, k * 100u, 100, 0, k + 1u < segments ? kSegmentFollows : 0u, 0};
        return o;
    }
    void push(uint64_t handle, uint8_t segments = 1) {
        uint32_t d = 0, p = 0;
        ASSERT_EQ(rings_->room(d, p), "");
        ASSERT_GE(d, segments);
        ASSERT_GE(p, 1u);
        index_of(handle);
        rings_->push(packet(handle, segments));
    }
    std::vector<uint64_t> reap(std::string* why = nullptr) {
        std::vector<uint64_t> back;
        const std::string w = rings_->reap([&](const Outstanding& o) { back.push_back(o.seg[0].handle); });
        if (why != nullptr) *why = w;
        else EXPECT_EQ(w, "");
        return back;
    }
    static bool readable(int fd) {
        auto r = os::wait_readable(fd, 0);
        return r && *r;
    }

    RingGeometry geometry_;
    std::vector<uint64_t> words_;
    BlockIndex blocks_;
    std::optional<GuestRings> rings_;
    GuestRingEnd guest_;
    int rx_kick_ = -1, done_kick_ = -1;
};

TEST_F(GuestRingsTest, TheRingsStartZeroedAndEmpty) {
    EXPECT_EQ(guest_.rx.load_producer(), 0u);
    EXPECT_EQ(guest_.rx.load_flags(), 0u);
    EXPECT_EQ(guest_.done.load_producer(), 0u);
    uint32_t d = 0, p = 0;
    EXPECT_EQ(rings_->room(d, p), "");
    EXPECT_EQ(d, kSize);
    EXPECT_EQ(p, kSize);
    EXPECT_EQ(rings_->outstanding(), 0u);
}

TEST_F(GuestRingsTest, PushedPacketsAreSeenOnlyOncePublishedEachChainWithOneCookie) {
    push(1);
    push(2, 2);
    EXPECT_EQ(guest_.take().size(), 0u) << "not published yet";
    EXPECT_FALSE(rings_->publish()) << "the guest did not ask to be woken";
    const auto got = guest_.take();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].block, index_of(1)) << "the block by its BLOCK_ADDED index";
    EXPECT_EQ(got[1].block, index_of(2));
    EXPECT_EQ(got[0].flags, 0u);
    EXPECT_EQ(got[1].flags, kSegmentFollows);
    EXPECT_EQ(got[2].flags, 0u);
    EXPECT_EQ(got[1].cookie, got[2].cookie) << "every segment of a packet carries its cookie";
    EXPECT_NE(got[0].cookie, got[1].cookie);
    EXPECT_EQ(rings_->outstanding(), 2u);
    EXPECT_FALSE(readable(rx_kick_)) << "no eventfd touched under load";
}

TEST_F(GuestRingsTest, EachCookieComesBackOnceWithTheHostsOwnCopy) {
    push(10);
    push(20, 2);
    rings_->publish();
    const auto got = guest_.take();
    // The guest scribbles over the entries it read: the host gives back its own copies.
    for (uint32_t i = 0; i < 3; ++i) guest_.rx.store(i, RxEntry{0xBAD, 0xBAD, got[i].cookie, 0xBAD, 0});
    guest_.complete({got[2].cookie, got[0].cookie});  // out of order, the chain once
    std::vector<Outstanding> back;
    EXPECT_EQ(rings_->reap([&](const Outstanding& o) { back.push_back(o); }), "");
    ASSERT_EQ(back.size(), 2u);
    EXPECT_EQ(back[0].seg[0].handle, 20u);
    EXPECT_EQ(back[0].segments, 2u);
    EXPECT_EQ(back[0].seg[1].offset, 100u);
    EXPECT_EQ(back[1].seg[0].handle, 10u);
    EXPECT_EQ(rings_->outstanding(), 0u);
    EXPECT_EQ(guest_.done.load_consumer(), 2u) << "the host's consumer index published";
}

// The hub's own miniport names its packets: rings of Cookies::Miniport.
class MiniportCookieRingsTest : public GuestRingsTest {
protected:
    MiniportCookieRingsTest() {
        auto rx = os::WakeFd::create();
        auto done = os::WakeFd::create();
        EXPECT_TRUE(rx && done);
        rings_.reset();
        rings_.emplace(base(), geometry_, std::move(*rx), std::move(*done), blocks_, Cookies::Miniport);
        // The miniport's queue: blocks 0..3 (handles 30, 31, 40, 41), announced in another order.
        for (uint64_t h : {41, 40, 31, 30}) index_of(h);
        std::vector<nic::RxBlock> queue_blocks;
        for (uint64_t h : kMiniportBlocks) queue_blocks.push_back({h, nullptr, 65536, 4});
        EXPECT_EQ(rings_->map_blocks(queue_blocks), "");
    }
    static constexpr uint64_t kMiniportBlocks[] = {30, 31, 40, 41};
    // The miniport's side, as VmqMiniport::give_back_cookies checks it: a
    // cookie it handed out and holds now, taken back once.
    std::vector<uint32_t> miniport_holds_;
    std::vector<uint32_t> taken_;
    std::string reap_cookies() {
        return rings_->reap_cookies(
            [&](std::span<const uint32_t> cookies) {
                size_t n = 0;
                for (; n < cookies.size(); ++n) {
                    auto it = std::find(miniport_holds_.begin(), miniport_holds_.end(), cookies[n]);
                    if (it == miniport_holds_.end()) break;
                    miniport_holds_.erase(it);
                    taken_.push_back(cookies[n]);
                }
                return n;
            },
            [](uint32_t) { return std::string("is not held (the miniport's words)"); });
    }
    void push_rx(const nic::RxDescriptor& d) {
        rings_->push_rx(d);
        miniport_holds_.push_back(d.cookie);
    }
};

TEST_F(MiniportCookieRingsTest, AMiniportPacketIsPushedAsItsSegmentsWithTheMiniportsCookie) {
    nic::RxDescriptor one{30, 0x40, 64, 0x50001, 0, 1, {}};
    nic::RxDescriptor two{40, 0x80, 128, 0x70002, 2, 2, {41, 0x1000, 1372, 3}};
    push_rx(one);
    push_rx(two);
    EXPECT_EQ(rings_->outstanding(), 2u);
    uint32_t descriptors = 0, packets = 0;
    EXPECT_EQ(rings_->room(descriptors, packets), "");
    EXPECT_EQ(descriptors, kSize - 3) << "three entries pushed (not yet published: the producer's own count)";
    EXPECT_EQ(packets, kSize - 2);
    rings_->publish();
    const auto got = guest_.take();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].block, index_of(30)) << "the miniport's block by its BLOCK_ADDED index";
    EXPECT_EQ(got[0].offset, 0x40u);
    EXPECT_EQ(got[0].length, 64u);
    EXPECT_EQ(got[0].flags, 0u);
    EXPECT_EQ(got[1].block, index_of(40));
    EXPECT_EQ(got[1].length, 128u);
    EXPECT_EQ(got[1].flags, kSegmentFollows);
    EXPECT_EQ(got[2].block, index_of(41));
    EXPECT_EQ(got[2].offset, 0x1000u);
    EXPECT_EQ(got[2].length, 1372u);
    EXPECT_EQ(got[2].flags, 0u);
    EXPECT_EQ(got[0].cookie, one.cookie) << "the ring carries the miniport's cookie as it is";
    EXPECT_EQ(got[1].cookie, two.cookie);
    EXPECT_EQ(got[2].cookie, two.cookie) << "one cookie per packet";
    guest_.complete({two.cookie, one.cookie});
    EXPECT_EQ(reap_cookies(), "");
    EXPECT_EQ(taken_, (std::vector<uint32_t>{two.cookie, one.cookie})) << "handed over in the guest's order";
    EXPECT_EQ(rings_->outstanding(), 0u);
    EXPECT_EQ(guest_.done.load_consumer(), 2u);
}

TEST_F(MiniportCookieRingsTest, ACookieTheMiniportRefusesEndsTheReapThereAndNamesIt) {
    push_rx({30, 0, 64, 0x10001, 0, 1, {}});
    push_rx({31, 0, 64, 0x10002, 1, 1, {}});
    rings_->publish();
    guest_.take();
    // A good one, a replay of it, then the other good one.
    guest_.complete({0x10001, 0x10001, 0x10002});
    const std::string why = reap_cookies();
    EXPECT_NE(why.find("completion ring entry 1"), std::string::npos) << why;
    EXPECT_NE(why.find("0x10001"), std::string::npos) << why;
    EXPECT_NE(why.find("0x10001 is not held (the miniport's words)"), std::string::npos) << why;
    EXPECT_EQ(taken_, std::vector<uint32_t>{0x10001}) << "the entries before the bad one were taken";
    EXPECT_EQ(rings_->outstanding(), 1u) << "the live packet is still held";
    EXPECT_EQ(guest_.done.load_consumer(), 1u) << "the consumer stops at the bad entry";
}

TEST_F(MiniportCookieRingsTest, MoreCompletionsThanPacketsInFlightIsAViolationBeforeTheMiniportLooks) {
    push_rx({30, 0, 64, 0x10001, 0, 1, {}});
    rings_->publish();
    guest_.take();
    guest_.complete({0x10001, 0x10001});
    size_t offered = 0;
    const std::string why = rings_->reap_cookies(
        [&](std::span<const uint32_t> cookies) {
            offered = cookies.size();
            return cookies.size();  // a miniport that took anything would still be offered one only
        },
        [](uint32_t) { return std::string("is given back twice"); });
    EXPECT_EQ(offered, 1u);
    EXPECT_NE(why.find("0x10001 is given back twice; more completions than the 1 packets the guest held"), std::string::npos) << why;
    EXPECT_EQ(rings_->outstanding(), 0u);
}

TEST_F(MiniportCookieRingsTest, AnImpossibleCompletionProducerIndexTakesNothing) {
    push_rx({30, 0, 64, 0x10001, 0, 1, {}});
    rings_->publish();
    guest_.take();
    guest_.done.store_producer(kSize + 1);
    bool called = false;
    const std::string why = rings_->reap_cookies(
        [&](std::span<const uint32_t>) {
            called = true;
            return size_t{0};
        },
        [](uint32_t) { return std::string(); });
    EXPECT_FALSE(called);
    EXPECT_NE(why.find("claims"), std::string::npos) << why;
    EXPECT_EQ(rings_->outstanding(), 1u);
}

TEST_F(GuestRingsTest, AReplayedCookieIsRefusedAndNothingIsGivenBackTwice) {
    push(1);
    rings_->publish();
    const uint32_t cookie = guest_.take()[0].cookie;
    guest_.complete({cookie});
    EXPECT_EQ(reap(), std::vector<uint64_t>{1});
    guest_.complete({cookie});
    std::string why;
    EXPECT_TRUE(reap(&why).empty());
    EXPECT_NE(why.find("does not hold (given back twice"), std::string::npos) << why;
}

TEST_F(GuestRingsTest, ACookieOfAnOldGenerationOfAReusedSlotIsRefused) {
    push(1);
    rings_->publish();
    const uint32_t first = guest_.take()[0].cookie;
    guest_.complete({first});
    reap();
    push(2);  // the same slot (the free list is a stack), a new generation
    rings_->publish();
    const uint32_t second = guest_.take()[0].cookie;
    EXPECT_EQ(first & kCookieSlotMask, second & kCookieSlotMask) << "same slot";
    EXPECT_NE(first, second) << "another generation";
    guest_.complete({first});
    std::string why;
    EXPECT_TRUE(reap(&why).empty());
    EXPECT_NE(why.find("old generation"), std::string::npos) << why;
    EXPECT_EQ(rings_->outstanding(), 1u) << "the live packet is still held";
}

TEST_F(GuestRingsTest, ACookieNamingNoSlotIsRefusedAfterTheGoodOnesBeforeIt) {
    push(1);
    push(2);
    rings_->publish();
    const auto got = guest_.take();
    guest_.complete({got[0].cookie, (1u << kCookieSlotBits) | 999, got[1].cookie});
    std::string why;
    EXPECT_EQ(reap(&why), std::vector<uint64_t>{1}) << "the entry before the bad one was taken";
    EXPECT_NE(why.find("names no slot"), std::string::npos) << why;
    EXPECT_EQ(rings_->outstanding(), 1u);
}

TEST_F(GuestRingsTest, ImpossibleGuestIndicesAreRefused) {
    push(1);
    rings_->publish();
    guest_.rx.store_consumer(2);  // ahead of the producer's 1
    uint32_t d = 0, p = 0;
    std::string why = rings_->room(d, p);
    EXPECT_NE(why.find("consumer index 2 is ahead of"), std::string::npos) << why;
    EXPECT_EQ(d, 0u);
    guest_.done.store_producer(kSize + 1);  // more completions than the ring holds
    EXPECT_TRUE(reap(&why).empty());
    EXPECT_NE(why.find("claims 9 entries ready"), std::string::npos) << why;
    EXPECT_EQ(rings_->outstanding(), 1u) << "nothing freed on a bad index";
}

TEST_F(GuestRingsTest, AFullRingOffersNoRoomAndABatchLargerThanTheFreeSpaceIsCut) {
    for (uint64_t h = 1; h <= 3; ++h) push(h, 2);  // 6 of 8 entries
    rings_->publish();
    uint32_t d = 0, p = 0;
    EXPECT_EQ(rings_->room(d, p), "");
    EXPECT_EQ(d, 2u) << "room for one more two-segment packet";
    EXPECT_EQ(p, kSize - 3);
    push(4, 2);
    rings_->publish();
    EXPECT_EQ(rings_->room(d, p), "");
    EXPECT_EQ(d, 0u) << "full until the guest consumes";
    guest_.take();
    EXPECT_EQ(rings_->room(d, p), "");
    EXPECT_EQ(d, kSize) << "consumed: the ring is free, the packets still held";
    EXPECT_EQ(p, kSize - 4);
}

TEST_F(GuestRingsTest, TheTableBoundsWhatTheGuestHoldsSoCompletionsNeverOverflow) {
    for (uint64_t h = 1; h <= kSize; ++h) {
        push(h);
        rings_->publish();
        guest_.take();
    }
    uint32_t d = 0, p = 0;
    EXPECT_EQ(rings_->room(d, p), "");
    EXPECT_EQ(d, kSize) << "the ring is empty";
    EXPECT_EQ(p, 0u) << "but the guest holds as many packets as the completion ring takes";
}

TEST_F(GuestRingsTest, ASleepingGuestIsKickedAndAnAwakeOneIsNot) {
    push(1);
    EXPECT_FALSE(rings_->publish());
    EXPECT_FALSE(readable(rx_kick_));
    guest_.rx.store_flags(kNeedWakeup);  // the guest is about to sleep
    push(2);
    EXPECT_TRUE(rings_->publish());
    EXPECT_TRUE(readable(rx_kick_));
    EXPECT_EQ(rings_->stats().kicks, 1u);
    EXPECT_FALSE(rings_->publish()) << "nothing new: no kick";
}

TEST_F(GuestRingsTest, AGuestThatHasNotWokenYetIsKickedOnceNotOnceABatch) {
    guest_.rx.store_flags(kNeedWakeup);  // asleep (or stopped) with the flag set
    push(1);
    EXPECT_TRUE(rings_->publish());
    EXPECT_EQ(guest_.rx.load_flags(), 0u) << "the kick took the flag";
    for (uint64_t h = 2; h < kSize; ++h) {
        push(h);
        EXPECT_FALSE(rings_->publish()) << "batch " << h << ": it has its kick already";
    }
    EXPECT_EQ(rings_->stats().kicks, 1u);
    // It wakes, takes them all, and sleeps again (the flag set anew): the
    // next batch kicks again.
    EXPECT_EQ(guest_.take().size(), kSize - 1);
    guest_.rx.store_flags(kNeedWakeup);
    push(kSize);
    EXPECT_TRUE(rings_->publish());
    EXPECT_EQ(rings_->stats().kicks, 2u);
}

TEST_F(GuestRingsTest, TheHostAsksForACompletionKickOnlyWhenItWantsOne) {
    EXPECT_EQ(guest_.done.load_flags(), 0u);
    rings_->want_completions();
    EXPECT_EQ(guest_.done.load_flags(), kNeedWakeup);
    rings_->want_completions();
    EXPECT_EQ(rings_->stats().completion_waits, 1u) << "counted once per wait";
    rings_->stop_wanting_completions();
    EXPECT_EQ(guest_.done.load_flags(), 0u);
}

// Ring entries name blocks by the index BLOCK_ADDED gave them: fresh ones
// first, a freed one last, so that an index names one block for as long as
// it can.
TEST(BlockIndexTest, IndicesGoOutInOrderAndAFreedOneIsReusedLast) {
    BlockIndex blocks;
    EXPECT_EQ(blocks.add(0xA), std::optional<uint16_t>(0));
    EXPECT_EQ(blocks.add(0xB), std::optional<uint16_t>(1));
    EXPECT_FALSE(blocks.add(0xA)) << "a block announced twice gets no second index";
    blocks.remove(0xA);
    EXPECT_FALSE(blocks.find(0xA));
    EXPECT_EQ(blocks.add(0xC), std::optional<uint16_t>(2)) << "a fresh index before the freed 0";
    EXPECT_EQ(blocks.find(0xB), std::optional<uint16_t>(1));
    EXPECT_EQ(blocks.size(), 2u);
}

TEST(BlockIndexTest, NoMoreBlocksAtOnceThanA16BitIndexNames) {
    BlockIndex blocks;
    for (uint64_t h = 1; h <= kMaxBlocks; ++h) ASSERT_TRUE(blocks.add(h)) << h;
    EXPECT_FALSE(blocks.add(kMaxBlocks + 1)) << "every index in use";
    blocks.remove(5);  // index 4
    EXPECT_EQ(blocks.add(kMaxBlocks + 1), std::optional<uint16_t>(4)) << "the freed one, once no fresh one is left";
}

TEST_F(MiniportCookieRingsTest, AQueueBlockNeverAnnouncedToTheGuestCannotBeMapped) {
    const std::vector<nic::RxBlock> queue_blocks{{30, nullptr, 65536, 4}, {0x63, nullptr, 65536, 4}};
    const std::string why = rings_->map_blocks(queue_blocks);
    EXPECT_NE(why.find("block 0x63 of the queue was never announced"), std::string::npos) << why;
}

TEST_F(GuestRingsTest, OnlyDescriptorsOfBlocksTheGuestKnowsCanBePushed) {
    index_of(1);
    const PacketDescriptor known[] = {{1, 0, 64, 0, 0, 0}};
    const PacketDescriptor unknown[] = {{1, 0, 64, 0, kSegmentFollows, 0}, {77, 0, 64, 0, 0, 0}};
    EXPECT_TRUE(rings_->names_known_blocks(known));
    EXPECT_FALSE(rings_->names_known_blocks(unknown)) << "one segment in a block never announced";
}

// A long run of completions, past what one delivery's batch gives back:
// each accepted once, in order, and a replay deep in the run stops the reap
// exactly there.
TEST(GuestRingsReap, ManyCompletionsAreEachTakenOnceUpToABadOne) {
    constexpr uint32_t kBig = 128;
    const RingGeometry g = RingGeometry::for_size(kBig);
    std::vector<uint64_t> words((g.bytes + 7) / 8);
    auto* base = reinterpret_cast<std::byte*>(words.data());
    auto rx = os::WakeFd::create();
    auto done = os::WakeFd::create();
    ASSERT_TRUE(rx && done);
    BlockIndex blocks;
    GuestRings rings(base, g, std::move(*rx), std::move(*done), blocks);
    GuestRingEnd guest = GuestRingEnd::over(base, kBig, g.done_offset);
    for (uint64_t h = 1; h <= 100; ++h) {
        ASSERT_TRUE(blocks.add(h));
        Outstanding o;
        o.segments = 1;
        o.seg[0] = {h, 0, 64, 0, 0, 0};
        rings.push(o);
    }
    rings.publish();
    const auto got = guest.take();
    ASSERT_EQ(got.size(), 100u);
    std::vector<uint32_t> cookies;
    for (uint32_t i = 0; i < 70; ++i) cookies.push_back(got[i].cookie);
    cookies.push_back(got[3].cookie);  // given back twice: the 71st
    for (uint32_t i = 70; i < 100; ++i) cookies.push_back(got[i].cookie);
    guest.complete(cookies);
    std::vector<uint64_t> back;
    const std::string why = rings.reap([&](const Outstanding& o) { back.push_back(o.seg[0].handle); });
    EXPECT_NE(why.find("entry 70: cookie"), std::string::npos) << why;
    ASSERT_EQ(back.size(), 70u) << "every entry before the bad one, none after";
    for (uint64_t i = 0; i < 70; ++i) EXPECT_EQ(back[i], i + 1);
    EXPECT_EQ(rings.outstanding(), 30u);
}

}  // namespace
}  // namespace ndisshm::test
