// The rings' layout and index arithmetic (ipc/ring.hpp): geometry, the
// hot words on lines of their own, entries at `index & mask`, free-running
// indices across 2^32, full and empty.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ipc/ring.hpp"

namespace ndisshm::test {
namespace {

using namespace ndisshm::ipc;

struct Block {
    explicit Block(uint32_t size) : geometry(RingGeometry::for_size(size)), words((geometry.bytes + 7) / 8) {}
    std::byte* base() { return reinterpret_cast<std::byte*>(words.data()); }
    RingGeometry geometry;
    std::vector<uint64_t> words;
};

TEST(RingLayout, EachRingHasAProducerLineAConsumerLineAndItsEntries) {
    static_assert(kProducerOffset == 0 && kConsumerOffset == 64 && kFlagsOffset == 68);
    static_assert(sizeof(RxEntry) == 16 && sizeof(Completion) == 4);
    const RingGeometry g = RingGeometry::for_size(512);
    EXPECT_EQ(g.size, 512u);
    EXPECT_EQ(g.done_offset, 128u + 512 * 16) << "the completion ring right after the receive entries";
    EXPECT_EQ(g.done_offset % kRingLine, 0u) << "on a line of its own";
    EXPECT_EQ(g.bytes, g.done_offset + 128 + 512 * 4);
}

TEST(RingLayout, OnlyPowersOfTwoInRangeAreValidSizes) {
    for (uint32_t ok : {8u, 64u, 512u, 65536u}) EXPECT_TRUE(RingGeometry::valid_size(ok)) << ok;
    for (uint32_t bad : {0u, 1u, 4u, 48u, 513u, 131072u, 0x80000000u}) EXPECT_FALSE(RingGeometry::valid_size(bad)) << bad;
}

TEST(RingView, AnEntryStoredAsItsWordsReadsBackAsTheSameEntry) {
    Block b(8);
    ReceiveRing ring(b.base(), 8);
    ring.store_words(9, entry_words(0xBEEF, 0x800, 1500, 0xAABB0007, kSegmentFollows));
    const RxEntry d = ring.load(9);
    EXPECT_EQ(d.block, 0xBEEFu);
    EXPECT_EQ(d.offset, 0x800u);
    EXPECT_EQ(d.length, 1500u);
    EXPECT_EQ(d.cookie, 0xAABB0007u);
    EXPECT_EQ(d.flags, kSegmentFollows);
    RxEntry same{0x800, 1500, 0xAABB0007, 0xBEEF, kSegmentFollows};
    ring.store(10, same);
    EXPECT_EQ(std::memcmp(b.base() + kRingHeaderBytes + 1 * 16, b.base() + kRingHeaderBytes + 2 * 16, 16), 0)
        << "store_words and store write the same bytes";
    RxEntry into{};
    ring.load_into(9, into);
    EXPECT_EQ(std::memcmp(&into, &d, sizeof(d)), 0) << "load_into reads what load does";
}

TEST(RingView, FourByteCompletionsAreWordsOfTheirOwn) {
    Block b(8);
    CompletionRing done(b.base() + b.geometry.done_offset, 8);
    for (uint32_t i = 0; i < 8; ++i) done.store(i, Completion{0x10000u * i + 7});
    for (uint32_t i = 0; i < 8; ++i) {
        uint32_t raw;
        std::memcpy(&raw, b.base() + b.geometry.done_offset + kRingHeaderBytes + 4 * i, 4);
        EXPECT_EQ(raw, 0x10000u * i + 7) << "entry " << i << " at 4 bytes a piece";
        EXPECT_EQ(done.load(i).cookie, raw);
    }
}

TEST(RingView, WordsLandWhereTheLayoutSays) {
    Block b(8);
    ReceiveRing rx(b.base(), 8);
    rx.store_producer(0x11111111);
    rx.store_consumer(0x22222222);
    rx.store_flags(kNeedWakeup);
    uint32_t at[3];
    std::memcpy(&at[0], b.base() + kProducerOffset, 4);
    std::memcpy(&at[1], b.base() + kConsumerOffset, 4);
    std::memcpy(&at[2], b.base() + kFlagsOffset, 4);
    EXPECT_EQ(at[0], 0x11111111u);
    EXPECT_EQ(at[1], 0x22222222u);
    EXPECT_EQ(at[2], kNeedWakeup);
    rx.store(3, RxEntry{8, 9, 10, 7, kSegmentFollows});
    RxEntry d;
    std::memcpy(&d, b.base() + kRingHeaderBytes + 3 * sizeof(RxEntry), sizeof(d));
    EXPECT_EQ(d.block, 7u);
    EXPECT_EQ(d.offset, 8u);
    EXPECT_EQ(d.cookie, 10u);
    EXPECT_EQ(d.flags, kSegmentFollows);
}

TEST(RingView, IndicesRunFreeAcross2To32AndEntriesWrapByTheMask) {
    Block b(8);
    ReceiveRing rx(b.base(), 8);
    // A producer 3 short of wrapping, a consumer 5 behind it: 5 ready, then
    // 8 (full) across the wrap, then empty again.
    uint32_t prod = 0xFFFFFFFDu, cons = prod - 5;
    for (uint32_t i = cons; i != prod; ++i) rx.store(i, RxEntry{0, 1, i, 0, 0});
    EXPECT_EQ(prod - cons, 5u);
    for (int i = 0; i < 3; ++i, ++prod) rx.store(prod, RxEntry{0, 1, prod, 0, 0});
    EXPECT_EQ(prod, 0u) << "wrapped";
    EXPECT_EQ(prod - cons, 8u) << "full: the unsigned difference is still right";
    // Entry i is at i & 7: the eight live ones are the last eight written.
    for (uint32_t i = cons; i != prod; ++i) EXPECT_EQ(rx.load(i).cookie, i);
    cons = prod;
    EXPECT_EQ(prod - cons, 0u) << "empty";
}

TEST(RingView, TakingTheWakeupClearsTheFlagOnceAndOnlyWhenSet) {
    Block b(8);
    const ReceiveRing r(b.base(), 8);
    EXPECT_FALSE(r.take_wakeup()) << "nobody asked";
    r.store_flags(kNeedWakeup);
    EXPECT_TRUE(r.take_wakeup());
    EXPECT_EQ(r.load_flags(), 0u);
    EXPECT_FALSE(r.take_wakeup()) << "one kick per request";
}

TEST(RingView, ABatchIsVisibleOnlyOnceItsIndexIsPublished) {
    Block b(16);
    ReceiveRing host(b.base(), 16), guest(b.base(), 16);
    for (uint32_t i = 0; i < 4; ++i) host.store(i, RxEntry{0, 1, i + 1, 0, 0});
    EXPECT_EQ(guest.load_producer(), 0u) << "written, not yet published";
    host.store_producer(4);
    EXPECT_EQ(guest.load_producer(), 4u);
    for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(guest.load(i).cookie, i + 1);
}

}  // namespace
}  // namespace ndisshm::test
