// The guest library (<ndisshm/guest.hpp> over <ndisshm/guest.h>) against a
// fake host: a thread with a listening socket that speaks the protocol
// through ipc::Channel. Handshake, packets read in place, descriptors and
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

#include "common/ipc_support.hpp"

namespace ndisshm::test {
namespace {

using ipc::MessageType;
constexpr uint64_t kMemory = 1 << 20;

// What the fake host learned in the handshake, and its view of guest memory.
struct HostSide {
    ipc::Channel channel{os::UniqueFd{}};
    ipc::Hello hello{};
    ipc::SetMemory set{};
    os::UniqueFd memfd;
    std::byte* memory = nullptr;

    ~HostSide() { os::unmap(memory, set.size); }
    void send_block(uint64_t handle, uint64_t offset, uint32_t length, uint32_t queue) {
        EXPECT_TRUE(channel.send(MessageType::BlockAdded, ipc::BlockAdded{handle, offset, length, queue, 1, 0}));
    }
    ipc::Message expect(MessageType type) {
        auto m = channel.receive(5000);
        EXPECT_TRUE(m) << m.error().message();
        if (!m) return {};
        EXPECT_EQ(m->type(), type);
        return std::move(*m);
    }
};

// Listens; `script` runs on its own thread with the accepted connection.
class FakeHost {
public:
    explicit FakeHost(std::function<void(os::UniqueFd)> script) {
        path_ = dir_.path() + "/host.sock";
        auto l = ipc::listen_at(path_);
        EXPECT_TRUE(l) << l.error().message();
        listener_ = std::move(*l);
        thread_ = std::thread([this, script = std::move(script)] {
            auto s = ipc::accept_from(listener_.get());
            EXPECT_TRUE(s) << s.error().message();
            if (s) script(std::move(*s));
        });
    }
    ~FakeHost() { join(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    const std::string& path() const { return path_; }

private:
    test::TempDir dir_;
    std::string path_;
    os::UniqueFd listener_;
    std::thread thread_;
};

// The host's half of a successful handshake.
void handshake(HostSide& h, os::UniqueFd socket) {
    h.channel = ipc::Channel(std::move(socket));
    h.hello = h.expect(MessageType::Hello).as<ipc::Hello>();
    ASSERT_TRUE(h.channel.send(MessageType::HelloAck, ipc::HelloAck{7, 0}));
    ipc::Message m = h.expect(MessageType::SetMemory);
    h.set = m.as<ipc::SetMemory>();
    h.memfd = std::move(m.fd);
    auto mapped = os::map_shared(h.memfd.get(), h.set.size);
    ASSERT_TRUE(mapped) << mapped.error().message();
    h.memory = static_cast<std::byte*>(*mapped);
    ASSERT_TRUE(h.channel.send(MessageType::MemoryAck, ipc::MemoryAck{h.set.size}));
}

struct Seen {
    std::vector<GuestPacket> packets;
    std::vector<std::string> contents;
};

Guest make_guest(Seen& seen) {
    return Guest({.name = "vm-test", .memory_bytes = kMemory, .guest_physical_base = 0x100000000},
                 [&seen](const GuestPacket& p) {
                     seen.packets.push_back(p);
                     seen.contents.emplace_back(reinterpret_cast<const char*>(p.data.data()), p.data.size());
                 });
}

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

TEST(Guest, PacketsAreReadInPlaceAndReturned) {
    std::vector<ipc::PacketDescriptor> sent, returned;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ASSERT_TRUE(h.channel.send(MessageType::QueueAttached, ipc::QueueAttached{3, 0, 0, 0}));
        h.send_block(0xB10C, 65536, 8192, 3);
        std::memcpy(h.memory + 65536 + 0, "first", 5);
        std::memcpy(h.memory + 65536 + 2048, "second packet", 13);
        std::memcpy(h.memory + 65536 + 8192 - 4, "last", 4);
        sent = {{0xB10C, 0, 5, 11}, {0xB10C, 2048, 13, 22}, {0xB10C, 8192 - 4, 4, 33}};
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 3, sent));
        returned = h.expect(MessageType::PacketsDone).packets();
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // QUEUE_ATTACHED
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // BLOCK_ADDED
    EXPECT_EQ(g.stats().blocks, 1u);
    EXPECT_EQ(g.stats().queues, 1u);
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // PACKETS
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    ASSERT_EQ(seen.packets.size(), 3u);
    EXPECT_EQ(seen.contents, (std::vector<std::string>{"first", "second packet", "last"}));
    EXPECT_EQ(seen.packets[1].data.data(), g.memory().data() + 65536 + 2048) << "in place, not a copy";
    EXPECT_EQ(seen.packets[1].queue_id, 3u);
    EXPECT_EQ(seen.packets[1].handle, 0xB10Cu);
    EXPECT_EQ(seen.packets[1].offset, 2048u);
    ASSERT_EQ(returned.size(), sent.size());
    EXPECT_EQ(std::memcmp(returned.data(), sent.data(), sent.size() * sizeof(sent[0])), 0);
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
        const std::vector<ipc::PacketDescriptor> d = {
            {1, 4000, 97, 0},             // one byte past the block's end
            {1, 0xFFFFFFFF, 0xFFFFFFFF, 0},  // offset + length overflows 32 bits
            {9, 0, 64, 0},                // no such block
            {2, 0, 64, 0},                // another queue's block
            {1, 0, 0, 0},                 // empty
            {1, 4032, 64, 0},             // the good one: ends exactly at the block's end
        };
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, d));
        returned = h.expect(MessageType::PacketsDone).packets().size();
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
    std::vector<ipc::PacketDescriptor> sent, returned;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ASSERT_TRUE(h.channel.send(MessageType::BlockAdded, ipc::BlockAdded{1, 0, 4096, 1, 5, 0}));
        ASSERT_TRUE(h.channel.send(MessageType::BlockAdded, ipc::BlockAdded{2, 65536, 4096, 1, 6, 0}));
        std::memcpy(h.memory + 128, "HEAD", 4);
        std::memcpy(h.memory + 65536 + 2048, "payload!", 8);
        std::memcpy(h.memory + 256, "solo", 4);
        sent = {{1, 128, 4, 42, ipc::kSegmentFollows, 0}, {2, 2048, 8, 42, 0, 0}, {1, 256, 4, 43, 0, 0}};
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, sent));
        returned = h.expect(MessageType::PacketsDone).packets();
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
    ASSERT_EQ(returned.size(), 3u);
    EXPECT_EQ(std::memcmp(returned.data(), sent.data(), 3 * sizeof(ipc::PacketDescriptor)), 0)
        << "the chain goes back as it came";
}

// One bad segment spoils its packet: neither half is read, both go back.
TEST(Guest, AChainWithASegmentInAnotherQueuesBlockIsNotRead) {
    size_t returned = 0;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        h.send_block(2, 4096, 4096, 2);  // queue 2's
        const std::vector<ipc::PacketDescriptor> d = {
            {1, 0, 64, 1, ipc::kSegmentFollows, 0},   {2, 0, 64, 1, 0, 0},  // second half in queue 2's block
            {1, 64, 64, 2, ipc::kSegmentFollows, 0},  {1, 4090, 64, 2, 0, 0},  // second half past its block
            {1, 128, 64, 3, ipc::kSegmentFollows, 0}, {1, 192, 64, 3, 0, 0},   // good
        };
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, d));
        returned = h.expect(MessageType::PacketsDone).packets().size();
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
    EXPECT_EQ(returned, 6u);
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
        const std::vector<ipc::PacketDescriptor> d = {{1, 0, 64, 0}, {2, 0, 64, 0}, {4, 0, 64, 0}};
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, d));
        h.expect(MessageType::PacketsDone);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    const auto st = g.stats();
    EXPECT_EQ(st.bad_blocks, 5u);
    EXPECT_EQ(st.blocks, 1u);
    EXPECT_EQ(st.bad_descriptors, 2u);
    EXPECT_EQ(st.packets, 1u);
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

TEST(Guest, BatchesQueuedTogetherGoBackInOnePacketsDone) {
    // Three batches of one queue are waiting when the guest polls: it reads
    // them all and returns their descriptors, in order, in one PACKETS_DONE
    // (one message and one wake-up of the host for what arrived together).
    const std::vector<std::vector<ipc::PacketDescriptor>> batches = {
        {{1, 0, 8, 1}, {1, 64, 8, 2}}, {{1, 128, 8, 3}}, {{1, 192, 8, 4}, {1, 256, 8, 5}}};
    std::atomic<bool> queued{false};
    std::vector<ipc::PacketDescriptor> returned;
    bool one_message = false;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        for (const auto& b : batches) ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, b));
        queued = true;
        returned = h.expect(MessageType::PacketsDone).packets();
        // Nothing else came: a second PACKETS_DONE would be here by now.
        one_message = !h.channel.receive(200);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // BLOCK_ADDED
    while (!queued) std::this_thread::yield();
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // the three batches
    EXPECT_EQ(g.stats().batches, 3u);
    EXPECT_EQ(g.stats().packets, 5u);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    std::vector<ipc::PacketDescriptor> sent;
    for (const auto& b : batches) sent.insert(sent.end(), b.begin(), b.end());
    ASSERT_EQ(returned.size(), sent.size());
    EXPECT_EQ(std::memcmp(returned.data(), sent.data(), sent.size() * sizeof(sent[0])), 0) << "in the order received";
    EXPECT_TRUE(one_message);
}

TEST(Guest, BatchesOfTwoQueuesGoBackEachToItsQueueBeforeWhatFollows) {
    // Queue 1's batch, queue 2's batch, then a block removal: each batch goes
    // back under its own queue, and both before the guest handles what came
    // after them.
    std::atomic<bool> queued{false};
    std::vector<uint32_t> done_queues;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        h.send_block(2, 4096, 4096, 2);
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, std::vector<ipc::PacketDescriptor>{{1, 0, 8, 0}}));
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 2, std::vector<ipc::PacketDescriptor>{{2, 0, 8, 0}}));
        ASSERT_TRUE(h.channel.send(MessageType::BlockRemoved, ipc::BlockRemoved{1}));
        queued = true;
        for (int i = 0; i < 2; ++i) done_queues.push_back(h.expect(MessageType::PacketsDone).packets_header().queue_id);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // BLOCK_ADDED 1
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // BLOCK_ADDED 2
    while (!queued) std::this_thread::yield();
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // both batches, then BLOCK_REMOVED
    EXPECT_EQ(g.stats().packets, 2u);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(done_queues, (std::vector<uint32_t>{1, 2}));
}

TEST(Guest, LastWordsQueuedBehindAFailedReturnAreRead) {
    // The host sends a batch and BYE, then closes before reading anything:
    // returning the batch fails (EPIPE), and the BYE still explains the end.
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, std::vector<ipc::PacketDescriptor>{{1, 0, 8, 0}}));
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    host.join();
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE) << g.last_error();
    EXPECT_EQ(g.stats().packets, 1u);
}

TEST(Guest, RefusedMemoryReportsTheHostsReason) {
    FakeHost host([&](os::UniqueFd s) {
        ipc::Channel c(std::move(s));
        auto hello = c.receive(5000);
        ASSERT_TRUE(hello);
        ASSERT_TRUE(c.send(MessageType::HelloAck, ipc::HelloAck{1, 0}));
        auto set = c.receive(5000);
        ASSERT_TRUE(set) << set.error().message();
        ipc::ErrorMessage e{0xC000009Au, 0, {}};
        std::strcpy(e.reason, "memory too small: 1048576 bytes, queues need 4194304");
        ASSERT_TRUE(c.send(MessageType::Error, e));
    });
    Seen seen;
    Guest g = make_guest(seen);
    try {
        g.connect(host.path());
        FAIL() << "connect succeeded";
    } catch (const GuestError& e) {
        EXPECT_EQ(e.status(), NDISSHM_STATUS_REFUSED);
        EXPECT_NE(std::string(e.what()).find("memory too small: 1048576 bytes"), std::string::npos) << e.what();
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
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        const std::vector<ipc::PacketDescriptor> d = {{1, 0, 8, 0}, {1, 8, 8, 1}};
        ASSERT_TRUE(h.channel.send_packets(MessageType::Packets, 1, d));
        returned = h.expect(MessageType::PacketsDone).packets().size();
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    int calls = 0;
    Guest g({.name = "throws", .memory_bytes = kMemory}, [&](const GuestPacket&) {
        ++calls;
        throw std::runtime_error("handler failed");
    });
    g.connect(host.path());
    EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);  // BLOCK_ADDED
    EXPECT_THROW(g.poll_once(5000), std::runtime_error);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(calls, 1) << "the rest of the batch is skipped once a handler threw";
    EXPECT_EQ(returned, 2u);
}

}  // namespace
}  // namespace ndisshm::test
