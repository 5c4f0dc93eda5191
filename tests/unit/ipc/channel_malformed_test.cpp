// ipc::Channel against a hostile or broken peer: each malformed datagram is
// refused with EPROTO and a reason naming what is wrong, any fd it carried is
// closed (the process's fd count is unchanged), and the channel is not thrown
// off: the next well-formed datagram still reads correctly.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#include "common/ipc_support.hpp"

namespace ndisshm::test {
using namespace ndisshm::ipc;  // the layer under test
namespace {

using test::Bytes;
using test::datagram;
using test::fd_count;
using test::packets_datagram;
using test::send_raw;

class ChannelMalformed : public ::testing::Test {
protected:
    void SetUp() override {
        auto p = os::seqpacket_pair();
        ASSERT_TRUE(p) << p.error().message();
        raw_ = std::move(p->first);
        channel_.emplace(std::move(p->second));
    }

    // Sends `bytes` with `fds` memfds, expects EPROTO mentioning `reason`,
    // and no fd left open by the refusal.
    void expect_refused(const Bytes& bytes, const std::string& reason, int fds = 0) {
        const size_t before = fd_count();
        {
            std::vector<os::UniqueFd> owned;
            std::vector<int> raw;
            for (int i = 0; i < fds; ++i) {
                owned.push_back(test::sealed_memfd(4096));
                raw.push_back(owned.back().get());
            }
            send_raw(raw_.get(), bytes, raw);
        }  // our copies are closed: only the ones in flight remain
        auto m = channel_->receive(1000);
        ASSERT_FALSE(m) << "accepted a malformed message (" << reason << ")";
        EXPECT_EQ(m.error().err, EPROTO) << m.error().message();
        EXPECT_NE(m.error().detail.find(reason), std::string::npos)
            << "reason '" << m.error().detail << "' lacks '" << reason << "'";
        EXPECT_EQ(fd_count(), before) << "an fd of a refused message stayed open";
        // Message boundaries hold: the next datagram is read whole and valid.
        send_raw(raw_.get(), datagram(MessageType::Bye, Bye{}));
        auto next = channel_->receive(1000);
        ASSERT_TRUE(next) << next.error().message();
        EXPECT_EQ(next->type(), MessageType::Bye);
    }

    os::UniqueFd raw_;
    std::optional<Channel> channel_;
};

TEST_F(ChannelMalformed, BadMagic) {
    Bye bye{};
    expect_refused(datagram(11, &bye, sizeof(bye), sizeof(bye), 0x12345678u), "bad magic 0x12345678");
}

TEST_F(ChannelMalformed, BadVersion) {
    Bye bye{};
    expect_refused(datagram(11, &bye, sizeof(bye), sizeof(bye), kMagic, 3), "unsupported protocol version 3");
}

TEST_F(ChannelMalformed, UnknownType) {
    Bye bye{};
    expect_refused(datagram(0, &bye, sizeof(bye), sizeof(bye)), "unknown message type 0");
    expect_refused(datagram(99, &bye, sizeof(bye), sizeof(bye)), "unknown message type 99");
}

TEST_F(ChannelMalformed, WrongLengthForAFixedType) {
    const std::byte payload[sizeof(Hello) + 1] = {};
    expect_refused(datagram(1, payload, sizeof(Hello) - 1, sizeof(Hello) - 1), "HELLO #1: payload is 39 bytes, the type takes 40");
    expect_refused(datagram(1, payload, sizeof(Hello) + 1, sizeof(Hello) + 1), "payload is 41 bytes");
    expect_refused(datagram(11, payload, 0, 0), "BYE #1: payload is 0 bytes, the type takes 8");
}

TEST_F(ChannelMalformed, PacketCountMismatchingLength) {
    expect_refused(packets_datagram(3, 2), "count 3 needs 104 payload bytes, got 72");
    expect_refused(packets_datagram(1, 2, MessageType::PacketsDone), "PACKETS_DONE #1: count 1 needs 40");
}

TEST_F(ChannelMalformed, PacketCountZero) { expect_refused(packets_datagram(0, 0), "count 0"); }

TEST_F(ChannelMalformed, PacketCountOverTheMaximum) {
    expect_refused(packets_datagram(kMaxPacketsPerMessage + 1, 1), "over the maximum 2047");
}

// Version 1 (24-byte descriptors, no chains) from an old peer: refused at
// once, never parsed with the new layout.
TEST_F(ChannelMalformed, AVersion1PeerIsRefusedByVersion) {
    const std::byte v1_packets[8 + 24] = {std::byte{1}};
    expect_refused(datagram(9, v1_packets, sizeof(v1_packets), sizeof(v1_packets), kMagic, 1),
                   "unsupported protocol version 1 (expected 2)");
}

TEST_F(ChannelMalformed, ChainCutOffAtTheEndOfTheBatch) {
    std::vector<PacketDescriptor> d = {{1, 0, 64, 7, 0, 0}, {1, 64, 64, 8, kSegmentFollows, 0}};
    expect_refused(packets_datagram(d),
                   "PACKETS #1: chain cut off: the last descriptor says a segment follows");
    d = {{1, 0, 64, 7, kSegmentFollows, 0}};
    expect_refused(packets_datagram(d, MessageType::PacketsDone), "PACKETS_DONE #1: chain cut off");
}

TEST_F(ChannelMalformed, ChainLongerThanAPacketMayBe) {
    std::vector<PacketDescriptor> d(kMaxSegmentsPerPacket + 1,
                                    PacketDescriptor{1, 0, 64, 7, kSegmentFollows, 0});
    d.back().flags = 0;
    expect_refused(packets_datagram(d), "descriptor 4 of 5: a chain of more than 4 segments");
}

TEST_F(ChannelMalformed, UnknownDescriptorFlagsOrReservedBits) {
    expect_refused(packets_datagram({{1, 0, 64, 7, 0x4, 0}}), "descriptor 0 of 1: unknown flags 0x00000004");
    expect_refused(packets_datagram({{1, 0, 64, 7, 0, 1}}), "reserved field is 0x00000001, must be 0");
}

TEST_F(ChannelMalformed, WholeChainsUpToTheLimitAreAccepted) {
    std::vector<PacketDescriptor> d(kMaxSegmentsPerPacket, PacketDescriptor{1, 0, 64, 7, kSegmentFollows, 0});
    d.back().flags = 0;
    d.push_back({2, 0, 64, 8, 0, 0});  // and a one-segment packet after it
    send_raw(raw_.get(), packets_datagram(d));
    auto m = channel_->receive(1000);
    ASSERT_TRUE(m) << m.error().message();
    const auto got = m->packets();
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(chain_length(got, 0), 4u);
    EXPECT_EQ(chain_length(got, 4), 1u);
}

TEST_F(ChannelMalformed, SendRefusesAChainItWouldCutOff) {
    auto p = os::seqpacket_pair();
    ASSERT_TRUE(p) << p.error().message();
    Channel a(std::move(p->first));
    const std::vector<PacketDescriptor> d = {{1, 0, 64, 7, kSegmentFollows, 0}};
    auto s = a.send_packets(MessageType::Packets, 1, d);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().err, EINVAL);
    EXPECT_NE(s.error().detail.find("chain cut off"), std::string::npos) << s.error().detail;
}

TEST_F(ChannelMalformed, PacketsShorterThanTheirHeader) {
    const uint32_t four = 1;
    expect_refused(datagram(9, &four, sizeof(four), sizeof(four)), "shorter than its 8-byte header");
}

TEST_F(ChannelMalformed, FdOnAMessageThatTakesNone) {
    expect_refused(datagram(MessageType::Bye, Bye{}), "carries 1 file descriptor(s); the type takes none", 1);
    expect_refused(packets_datagram(1, 1), "the type takes none", 1);
}

TEST_F(ChannelMalformed, SetMemoryWithoutFd) {
    expect_refused(datagram(MessageType::SetMemory, SetMemory{4096, 0}), "SET_MEMORY #1: no file descriptor");
}

TEST_F(ChannelMalformed, SetMemoryWithTwoFds) {
    expect_refused(datagram(MessageType::SetMemory, SetMemory{4096, 0}), "2 file descriptors", 2);
}

TEST_F(ChannelMalformed, MoreFdsThanTheControlBufferTakes) {
    expect_refused(datagram(MessageType::SetMemory, SetMemory{4096, 0}), "more file descriptors than any message", 9);
}

TEST_F(ChannelMalformed, TruncatedDatagrams) {
    Bytes whole = datagram(MessageType::BlockAdded, BlockAdded{1, 0, 4096, 1, 1, 0});
    expect_refused(Bytes(whole.begin(), whole.begin() + 30), "truncated datagram: header says 32 payload bytes, 14 arrived");
    expect_refused(Bytes(whole.begin(), whole.begin() + 10), "truncated datagram: 10 bytes, shorter than the 16-byte header");
    expect_refused(Bytes{}, "truncated datagram: 0 bytes");
}

TEST_F(ChannelMalformed, DatagramLongerThanItsHeaderSays) {
    Bytes whole = datagram(MessageType::Bye, Bye{});
    whole.resize(whole.size() + 5);
    expect_refused(whole, "datagram has 13 payload bytes, header says 8");
}

TEST_F(ChannelMalformed, PayloadLengthOverTheMaximum) {
    Bye bye{};
    expect_refused(datagram(11, &bye, sizeof(bye), kMaxPayload + 1), "payload length 65537 over the maximum 65536");
}

TEST_F(ChannelMalformed, OversizedDatagram) {
    Bytes big(sizeof(MessageHeader) + kMaxPayload + 100);
    expect_refused(big, "oversized datagram");
}

TEST_F(ChannelMalformed, StringsMustEndInsideTheirArrays) {
    Hello hello;
    std::memset(&hello, 'A', sizeof(hello));
    expect_refused(datagram(MessageType::Hello, hello), "name is not NUL-terminated");
    ErrorMessage e;
    std::memset(&e, 'B', sizeof(e));
    expect_refused(datagram(MessageType::Error, e), "reason is not NUL-terminated");
}

// validate() on random bytes and on random mutations of a valid message:
// it always answers, never reads out of bounds (ASan would say).
TEST(ChannelMalformedValidate, RandomInputNeverCrashes) {
    std::mt19937_64 rng(20240611);
    const Bytes valid = packets_datagram(2, 2);
    size_t accepted = 0;
    for (int round = 0; round < 20000; ++round) {
        Bytes d;
        if (round % 2 == 0) {
            d.resize(rng() % 128);
            for (auto& b : d) b = static_cast<std::byte>(rng());
        } else {
            d = valid;
            for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips)
                d[rng() % d.size()] = static_cast<std::byte>(rng());
            if (rng() % 4 == 0) d.resize(rng() % (d.size() + 1));
        }
        const std::string why = validate(d.data(), d.size(), false, static_cast<int>(rng() % 3));
        if (why.empty()) ++accepted;
    }
    EXPECT_LT(accepted, 20000u);
    EXPECT_EQ(validate(valid.data(), valid.size(), false, 0), "");
}

}  // namespace
}  // namespace ndisshm::test
