// The guest library (<ndisshm/guest.hpp> over <ndisshm/guest.h>) against a
// fake host: a thread with a listening socket that speaks the protocol
// through ipc::Channel and drives the queue's rings in the guest's memory
// (common/ring_support.hpp). Handshake, packets read in place from the
// receive ring and given back through the completion ring, descriptors and
// blocks outside their bounds refused and counted, the host's end (BYE,
// vanishing, refusal, garbage) reported.
#include <ndisshm/guest.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "unit/guest/fake_host.hpp"

namespace ndisshm::test {
namespace {

TEST(Guest, HandshakeGivesTheHostASealedMemfdOfTheRightSize) {
    bool shrink_refused = false;
    uint64_t size = 0;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        EXPECT_STREQ(h.hello.name, "vm-test");
        EXPECT_EQ(h.set.size, kMemory);
        EXPECT_EQ(h.set.guest_physical_base, 0x100000000u);
        auto seals = os::memfd_seals(h.memfd.get());
        ASSERT_TRUE(seals) << seals.error().message();
        EXPECT_NE(*seals & os::kSealShrink, 0u);
        size = *os::file_size(h.memfd.get());
        // What a hostile guest would try, from the host's copy of the fd.
        shrink_refused = ::ftruncate(h.memfd.get(), 4096) != 0 && errno == EPERM;
        h.expect(MessageType::Bye);
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.stats().guest_id, 7u);
    EXPECT_EQ(g.stats().connected, 1u);
    EXPECT_EQ(g.memory().size(), kMemory);
    EXPECT_EQ(::ftruncate(g.memory_fd(), 4096), -1) << "the guest cannot shrink it either";
    g.close();
    host.join();
    EXPECT_TRUE(shrink_refused);
    EXPECT_EQ(size, kMemory);
    EXPECT_EQ(g.stats().connected, 0u);
}

TEST(Guest, PacketsAreReadInPlaceFromTheRingAndGivenBackByCookie) {
    std::vector<uint32_t> returned;
    std::atomic<bool> attached{false};
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ASSERT_TRUE(h.channel.send(MessageType::QueueAttached, ipc::QueueAttached{3, 0, 0, 0}));
        h.send_block(0xB10C, 65536, 8192, 3);
        HostRingEnd r = h.attach_rings(3);
        while (!attached) std::this_thread::yield();
        std::memcpy(h.memory + 65536 + 0, "first", 5);
        std::memcpy(h.memory + 65536 + 2048, "second packet", 13);
        std::memcpy(h.memory + 65536 + 8192 - 4, "last", 4);
        r.send({{0xB10C, 0, 5, 11}, {0xB10C, 2048, 13, 22}, {0xB10C, 8192 - 4, 4, 33}});
        returned = r.await_completions(3);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // QUEUE_ATTACHED
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // BLOCK_ADDED
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // the rings' BLOCK_ADDED
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // RINGS_ATTACHED
    attached = true;
    EXPECT_EQ(g.stats().blocks, 2u);
    EXPECT_EQ(g.stats().queues, 1u);
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // the packets
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    ASSERT_EQ(seen.packets.size(), 3u);
    EXPECT_EQ(seen.contents, (std::vector<std::string>{"first", "second packet", "last"}));
    EXPECT_EQ(seen.packets[1].data.data(), g.memory().data() + 65536 + 2048) << "in place, not a copy";
    EXPECT_EQ(seen.packets[1].queue_id, 3u);
    EXPECT_EQ(seen.packets[1].handle, 0xB10Cu);
    EXPECT_EQ(seen.packets[1].offset, 2048u);
    EXPECT_EQ(returned, (std::vector<uint32_t>{11, 22, 33})) << "each cookie once, as received";
    const auto st = g.stats();
    EXPECT_EQ(st.packets, 3u);
    EXPECT_EQ(st.bytes, 22u);
    EXPECT_EQ(st.bad_descriptors, 0u);
    EXPECT_EQ(st.batches, 1u);
    EXPECT_NE(g.last_error().find("host closed the connection"), std::string::npos) << g.last_error();
}

TEST(Guest, DescriptorsOutsideTheirBlockAreCountedAndNotRead) {
    size_t returned = 0;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        h.send_block(2, 4096, 4096, 2);  // queue 2's
        HostRingEnd r = h.attach_rings(1);
        const std::vector<ipc::PacketDescriptor> d = {
            {1, 4000, 97, 1},             // one byte past the block's end
            {1, 0xFFFFFFFF, 0xFFFFFFFF, 2},  // offset + length overflows 32 bits
            {9, 0, 64, 3},                // no such block
            {2, 0, 64, 4},                // another queue's block
            {1, 0, 0, 5},                 // empty
            {1, 4032, 64, 6},             // the good one: ends exactly at the block's end
        };
        r.send(d);
        returned = r.await_completions(6).size();
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(g.stats().bad_descriptors, 5u);
    EXPECT_EQ(g.stats().packets, 1u);
    ASSERT_EQ(seen.packets.size(), 1u);
    EXPECT_EQ(seen.packets[0].offset, 4032u);
    EXPECT_EQ(returned, 6u) << "bad descriptors go back to the host too";
}

// Lookahead split: a packet comes as two chained descriptors, the first in
// a ReceiveLookahead block, the rest in a ReceivePostLookahead block. The
// guest hands it over as one packet of two segments that point into its
// memory where the host wrote them, and returns both descriptors.
TEST(Guest, AChainedPacketIsReadInPlaceAcrossItsSegments) {
    std::vector<uint32_t> returned;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ASSERT_TRUE(h.channel.send(MessageType::BlockAdded, ipc::BlockAdded{1, 0, 4096, 1, 5, 1}));
        ASSERT_TRUE(h.channel.send(MessageType::BlockAdded, ipc::BlockAdded{2, 65536, 4096, 1, 6, 2}));
        HostRingEnd r = h.attach_rings(1);
        std::memcpy(h.memory + 128, "HEAD", 4);
        std::memcpy(h.memory + 65536 + 2048, "payload!", 8);
        std::memcpy(h.memory + 256, "solo", 4);
        r.send({{1, 128, 4, 42, ipc::kSegmentFollows, 0}, {2, 2048, 8, 42, 0, 0}, {1, 256, 4, 43, 0, 0}});
        returned = r.await_completions(2);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    std::vector<std::vector<std::string>> packets;
    std::vector<size_t> lengths;
    std::vector<const std::byte*> where;
    Guest g({.name = "vm-split", .memory_bytes = kMemory}, [&](const GuestPacket& p) {
        std::vector<std::string> parts;
        for (const GuestSegment& seg : p.segments) {
            parts.emplace_back(reinterpret_cast<const char*>(seg.data.data()), seg.data.size());
            where.push_back(seg.data.data());
        }
        packets.push_back(parts);
        lengths.push_back(p.length);
        EXPECT_EQ(p.data.data(), p.segments[0].data.data()) << "data is the first segment";
    });
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    ASSERT_EQ(packets.size(), 2u);
    EXPECT_EQ(packets[0], (std::vector<std::string>{"HEAD", "payload!"}));
    EXPECT_EQ(packets[1], (std::vector<std::string>{"solo"}));
    EXPECT_EQ(lengths, (std::vector<size_t>{12, 4}));
    ASSERT_EQ(where.size(), 3u);
    EXPECT_EQ(where[0], g.memory().data() + 128) << "in place, not a copy";
    EXPECT_EQ(where[1], g.memory().data() + 65536 + 2048);
    EXPECT_EQ(g.stats().packets, 2u);
    EXPECT_EQ(g.stats().bytes, 16u);
    EXPECT_EQ(returned, (std::vector<uint32_t>{42, 43})) << "one completion per packet, the chain's cookie";
}

// One bad segment spoils its packet: neither half is read, both go back.
TEST(Guest, AChainWithASegmentInAnotherQueuesBlockIsNotRead) {
    size_t returned = 0;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        h.send_block(2, 4096, 4096, 2);  // queue 2's
        HostRingEnd r = h.attach_rings(1);
        const std::vector<ipc::PacketDescriptor> d = {
            {1, 0, 64, 1, ipc::kSegmentFollows, 0},   {2, 0, 64, 1, 0, 0},  // second half in queue 2's block
            {1, 64, 64, 2, ipc::kSegmentFollows, 0},  {1, 4090, 64, 2, 0, 0},  // second half past its block
            {1, 128, 64, 3, ipc::kSegmentFollows, 0}, {1, 192, 64, 3, 0, 0},   // good
        };
        r.send(d);
        returned = r.await_completions(3).size();
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    size_t seen = 0, segments = 0;
    Guest g({.name = "vm-split", .memory_bytes = kMemory}, [&](const GuestPacket& p) {
        ++seen;
        segments += p.segments.size();
    });
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(seen, 1u);
    EXPECT_EQ(segments, 2u);
    EXPECT_EQ(g.stats().bad_descriptors, 4u);
    EXPECT_EQ(g.stats().packets, 1u);
    EXPECT_EQ(returned, 3u) << "bad packets go back too";
}

TEST(Guest, BlocksOutsideGuestMemoryAreRefused) {
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, kMemory - 4096, 8192, 1);        // runs past the end
        h.send_block(2, ~uint64_t{0} - 100, 4096, 1);    // offset + length wraps
        h.send_block(3, 0, 0, 1);                        // empty
        h.send_block(4, 0, 4096, 1);                     // good
        h.send_block(4, 8192, 4096, 1);                  // duplicate handle
        ASSERT_TRUE(h.channel.send(MessageType::BlockRemoved, ipc::BlockRemoved{77}));  // unknown
        HostRingEnd r = h.attach_rings(1);
        r.send({{1, 0, 64, 1}, {2, 0, 64, 2}, {4, 0, 64, 3}});
        r.await_completions(3);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    const auto st = g.stats();
    EXPECT_EQ(st.bad_blocks, 5u);
    EXPECT_EQ(st.blocks, 2u) << "the good one and the rings' block";
    EXPECT_EQ(st.bad_descriptors, 2u);
    EXPECT_EQ(st.packets, 1u);
}

// Ring entries name a block by its BLOCK_ADDED index: a second block
// announced with an index another holds (or one past 16 bits) is refused,
// and the index keeps naming the first, whose handle the reader is given.
TEST(Guest, ABlockIndexAnotherBlockHoldsIsRefusedAndKeepsNamingTheFirst) {
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);  // index 1
        ASSERT_TRUE(h.channel.send(MessageType::BlockAdded, ipc::BlockAdded{0xB2, 8192, 4096, 1, 4, 1}));
        ASSERT_TRUE(
            h.channel.send(MessageType::BlockAdded, ipc::BlockAdded{0xB3, 16384, 4096, 1, 4, ipc::kMaxBlocks}));
        std::memcpy(h.memory + 100, "first", 5);
        std::memcpy(h.memory + 8192 + 100, "other", 5);
        HostRingEnd r = h.attach_rings(1);
        r.send({{1, 100, 5, 1}});
        r.await_completions(1);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(g.stats().bad_blocks, 2u) << "an index in use, an index past 16 bits";
    ASSERT_EQ(seen.packets.size(), 1u);
    EXPECT_EQ(seen.packets[0].handle, 1u) << "the handle BLOCK_ADDED paired with the index";
    EXPECT_EQ(seen.contents[0], "first");
}

TEST(Guest, QueueEventsAndDetachForgetTheQueuesBlocks) {
    std::vector<ndisshm_guest_event> events;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ASSERT_TRUE(h.channel.send(MessageType::QueueAttached, ipc::QueueAttached{5, ipc::kQueueLookaheadSplit, 256, 0}));
        h.send_block(50, 0, 4096, 5);
        h.send_block(51, 4096, 4096, 5);
        ASSERT_TRUE(h.channel.send(MessageType::BlockRemoved, ipc::BlockRemoved{50}));
        ASSERT_TRUE(h.channel.send(MessageType::QueueDetached, ipc::QueueDetached{5, 0}));  // 51 still there
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Guest g({.name = "events", .memory_bytes = kMemory}, {},
            [&](const ndisshm_guest_event& e) { events.push_back(e); });
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    std::vector<int> kinds;
    for (const auto& e : events) kinds.push_back(e.kind);
    EXPECT_EQ(kinds, (std::vector<int>{NDISSHM_GUEST_QUEUE_ATTACHED, NDISSHM_GUEST_BLOCK_ADDED,
                                       NDISSHM_GUEST_BLOCK_ADDED, NDISSHM_GUEST_BLOCK_REMOVED,
                                       NDISSHM_GUEST_BLOCK_REMOVED, NDISSHM_GUEST_QUEUE_DETACHED}));
    ASSERT_EQ(events.size(), 6u);
    EXPECT_EQ(events[0].lookahead_size, 256u);
    EXPECT_EQ(events[0].flags, ipc::kQueueLookaheadSplit);
    EXPECT_EQ(events[2].guest_offset, 4096u);
    EXPECT_EQ(events[4].handle, 51u);
    EXPECT_EQ(g.stats().blocks, 0u);
    EXPECT_EQ(g.stats().queues, 0u);
}

TEST(Guest, HostVanishingIsReported) {
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        // Gives the guest time to block in poll before the "crash".
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    });  // the socket closes without BYE
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_GONE);
    EXPECT_NE(g.last_error().find("host closed the connection without BYE"), std::string::npos) << g.last_error();
    EXPECT_EQ(g.poll_once(0), NDIS_STATUS_FAILURE) << "the session is over";
    EXPECT_EQ(g.poll_once(0), NDIS_STATUS_FAILURE);
    EXPECT_EQ(g.last_error(), "no session: it has ended (host closed the connection without BYE (host gone))");
}

TEST(Guest, PacketsPublishedTogetherAreTakenInOnePoll) {
    // Five packets published in three batches before the guest looks: one
    // poll takes them all (one read of the producer index) and gives their
    // cookies back in the order received, with one publication.
    std::atomic<bool> attached{false}, queued{false};
    std::vector<uint32_t> returned;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        while (!attached) std::this_thread::yield();
        r.send({{1, 0, 8, 1}, {1, 64, 8, 2}});
        r.send({{1, 128, 8, 3}});
        r.send({{1, 192, 8, 4}, {1, 256, 8, 5}});
        queued = true;
        returned = r.await_completions(5);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // 2 x BLOCK_ADDED, RINGS
    attached = true;
    while (!queued) std::this_thread::yield();
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(g.stats().batches, 1u);
    EXPECT_EQ(g.stats().packets, 5u);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(returned, (std::vector<uint32_t>{1, 2, 3, 4, 5})) << "in the order received";
}

TEST(Guest, EachQueuesCompletionsGoToItsOwnRing) {
    std::vector<uint32_t> back1, back2;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        h.send_block(2, 4096, 4096, 2);
        HostRingEnd r1 = h.attach_rings(1, kMemory - 65536, 64, 0x5161);
        HostRingEnd r2 = h.attach_rings(2, kMemory - 32768, 64, 0x5162);
        r1.send({{1, 0, 8, 101}});
        r2.send({{2, 0, 8, 202}});
        back1 = r1.await_completions(1);
        back2 = r2.await_completions(1);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(back1, std::vector<uint32_t>{101});
    EXPECT_EQ(back2, std::vector<uint32_t>{202});
    ASSERT_EQ(seen.packets.size(), 2u);
}

TEST(Guest, LastWordsAfterPacketsAreRead) {
    // The host publishes a packet, says BYE and closes at once: the guest
    // reads the packet (its completion lands in memory nobody reads now) and
    // then the BYE, which explains the end.
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        r.send({{1, 0, 8, 7}});
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    host.join();
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE) << g.last_error();
    EXPECT_LE(g.stats().packets, 1u);
}

// A host that refuses the memory after HELLO, with `reason`.
void refuse_memory(os::UniqueFd s, const std::string& reason) {
    ipc::Channel c(std::move(s));
    auto hello = c.receive(5000);
    ASSERT_TRUE(hello);
    ASSERT_TRUE(c.send(MessageType::HelloAck, ipc::HelloAck{1, 0}));
    auto set = c.receive(5000);
    ASSERT_TRUE(set) << set.error().message();
    ASSERT_TRUE(c.send_error(0xC000009Au, reason));
}

// A reason of this many bytes, its end marked.
std::string long_reason(size_t bytes) {
    std::string reason = "memory too small: 1048576 bytes, queues need 4194304;";
    while (reason.size() < bytes - 6) reason += " more";
    return reason.substr(0, bytes - 6) + " (end)";
}

TEST(Guest, RefusedMemoryReportsTheHostsReason) {
    // Longer than version 3's 120-byte field (which cut it), within the
    // 256-byte buffer Guest keeps for its errors.
    const std::string reason = long_reason(200);
    FakeHost host([&](os::UniqueFd s) { refuse_memory(std::move(s), reason); });
    Seen seen;
    Guest g = make_guest(seen);
    try {
        g.connect(host.path());
        FAIL() << "connect succeeded";
    } catch (const GuestError& e) {
        EXPECT_EQ(e.status(), NDISSHM_STATUS_REFUSED);
        EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("0xC000009A"), std::string::npos) << e.what();
    }
}

// Through the C API, whose caller sizes the error buffer: 300 bytes of
// reason arrive whole.
TEST(Guest, ALongRefusalReasonArrivesWholeInALargeEnoughBuffer) {
    const std::string reason = long_reason(300);
    FakeHost host([&](os::UniqueFd s) { refuse_memory(std::move(s), reason); });
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = "long";
    c.memory_bytes = 1 << 20;
    ndisshm_guest* g = nullptr;
    ASSERT_EQ(ndisshm_guest_create(&c, &g, nullptr, 0), NDIS_STATUS_SUCCESS);
    std::vector<char> error(2048, '\xff');
    EXPECT_EQ(ndisshm_guest_connect(g, host.path().c_str(), 5000, error.data(), error.size()), NDISSHM_STATUS_REFUSED);
    ndisshm_guest_destroy(g);
    const std::string text(error.data());
    EXPECT_EQ(text, "host refused: " + reason + " (status 0xC000009A)");
}

TEST(Guest, AHostThatTurnsTheConnectionAwayIsARefusalWithItsReasonNotHostGone) {
    FakeHost host([&](os::UniqueFd s) {
        ipc::Channel c(std::move(s));
        // NDIS_STATUS_RESOURCES
        ASSERT_TRUE(c.send_error(0xC000009Au, "the host is full: 80 sessions; try again later"));
    });  // and closes, before the guest's HELLO may even have arrived
    Seen seen;
    Guest g = make_guest(seen);
    try {
        g.connect(host.path());
        FAIL() << "connect succeeded";
    } catch (const GuestError& e) {
        EXPECT_EQ(e.status(), NDISSHM_STATUS_REFUSED);
        EXPECT_NE(std::string(e.what()).find("the host is full"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("0xC000009A"), std::string::npos) << e.what();
    }
}

TEST(Guest, MalformedMessageFromTheHostEndsTheSession) {
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ipc::Bye bye{};
        test::send_raw(h.channel.fd(), test::datagram(11, &bye, sizeof(bye), sizeof(bye), 0xBADu));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_PROTOCOL);
    EXPECT_NE(g.last_error().find("bad magic"), std::string::npos) << g.last_error();
}

TEST(Guest, HandshakeTimesOutOnASilentHost) {
    FakeHost host([&](os::UniqueFd s) {
        ipc::Channel c(std::move(s));
        (void)c.receive(5000);  // HELLO, never answered
        (void)c.receive(5000);  // until the guest gives up and closes
    });
    Seen seen;
    Guest g = make_guest(seen);
    try {
        g.connect(host.path(), 50);
        FAIL() << "connect succeeded";
    } catch (const GuestError& e) {
        EXPECT_EQ(e.status(), NDIS_STATUS_FAILURE);
        EXPECT_NE(std::string(e.what()).find("did not answer within 50 ms"), std::string::npos) << e.what();
    }
}

TEST(Guest, NoHostAndBadConfigAreClearErrors) {
    Seen seen;
    Guest g = make_guest(seen);
    try {
        g.connect("/nonexistent-ndisshm/host.sock");
        FAIL();
    } catch (const GuestError& e) {
        EXPECT_EQ(e.status(), NDIS_STATUS_FAILURE);
        EXPECT_NE(std::string(e.what()).find("connect(/nonexistent-ndisshm/host.sock)"), std::string::npos);
    }
    EXPECT_THROW(Guest({.name = "", .memory_bytes = 4096}), GuestError);
    EXPECT_THROW(Guest({.name = std::string(32, 'n'), .memory_bytes = 4096}), GuestError);
    char error[128] = {};
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = "zero";
    ndisshm_guest* made = reinterpret_cast<ndisshm_guest*>(1);
    EXPECT_EQ(ndisshm_guest_create(&c, &made, error, sizeof(error)), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(made, nullptr) << "a failed create hands back no guest";
    EXPECT_NE(std::string(error).find("memory_bytes must be > 0"), std::string::npos) << error;
    EXPECT_EQ(ndisshm_guest_create(nullptr, &made, nullptr, 0), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_guest_create(&c, nullptr, nullptr, 0), NDIS_STATUS_INVALID_PARAMETER);
}

TEST(Guest, AHandlerExceptionIsRethrownAndTheBatchStillGoesBack) {
    size_t returned = 0;
    std::atomic<bool> attached{false};
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        while (!attached) std::this_thread::yield();
        r.send({{1, 0, 8, 1}, {1, 8, 8, 2}});
        returned = r.await_completions(2).size();
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    int calls = 0;
    Guest g({.name = "throws", .memory_bytes = kMemory}, [&](const GuestPacket&) {
        ++calls;
        throw std::runtime_error("handler failed");
    });
    g.connect(host.path());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // 2 x BLOCK_ADDED, RINGS
    attached = true;
    EXPECT_THROW(g.poll_once(5000), std::runtime_error);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(calls, 1) << "the rest of the batch is skipped once a handler threw";
    EXPECT_EQ(returned, 2u);
}

}  // namespace
}  // namespace ndisshm::test
