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
    const auto newer = static_cast<uint16_t>(kVersion + 1);
    expect_refused(datagram(11, &bye, sizeof(bye), sizeof(bye), kMagic, newer),
                   "unsupported protocol version " + std::to_string(newer));
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

// Older peers (version 1: 24-byte descriptors; version 2: descriptors in
// PACKETS messages; version 3: ERROR with a fixed 120-byte reason; version 4:
// 32-byte ring entries naming blocks by handle) are refused at once, by
// version, with both named, and never parsed with the new layout.
TEST_F(ChannelMalformed, OlderPeersAreRefusedByVersionNamingBoth) {
    const std::byte v1_packets[8 + 24] = {std::byte{1}};
    expect_refused(datagram(9, v1_packets, sizeof(v1_packets), sizeof(v1_packets), kMagic, 1),
                   "unsupported protocol version 1 (expected 5)");
    Hello hello{};
    expect_refused(datagram(1, &hello, sizeof(hello), sizeof(hello), kMagic, 2),
                   "unsupported protocol version 2 (expected 5)");
    const std::byte v3_error[8 + 120] = {};
    expect_refused(datagram(12, v3_error, sizeof(v3_error), sizeof(v3_error), kMagic, 3),
                   "unsupported protocol version 3 (expected 5)");
    // A version-4 BLOCK_ADDED is the same size as ours (its last field was
    // reserved, ours is the index): only the version tells them apart.
    const BlockAdded v4_block{1, 0, 4096, 1, 4, 0};
    expect_refused(datagram(7, &v4_block, sizeof(v4_block), sizeof(v4_block), kMagic, 4),
                   "unsupported protocol version 4 (expected 5)");
}

TEST_F(ChannelMalformed, TheRetiredPacketTypesAreUnknown) {
    const std::byte batch[8 + 32] = {std::byte{1}};
    expect_refused(datagram(9, batch, sizeof(batch), sizeof(batch)), "unknown message type 9");
    expect_refused(datagram(10, batch, sizeof(batch), sizeof(batch)), "unknown message type 10");
}

TEST_F(ChannelMalformed, RingsAttachedWithoutItsTwoFds) {
    expect_refused(datagram(MessageType::RingsAttached, RingsAttached{}),
                   "0 file descriptor(s) (RINGS_ATTACHED carries exactly 2 eventfds)");
    expect_refused(datagram(MessageType::RingsAttached, RingsAttached{}), "1 file descriptor(s)", 1);
    expect_refused(datagram(MessageType::RingsAttached, RingsAttached{}), "3 file descriptor(s)", 3);
}

TEST_F(ChannelMalformed, FdOnAMessageThatTakesNone) {
    expect_refused(datagram(MessageType::Bye, Bye{}), "carries 1 file descriptor(s); the type takes none", 1);
    expect_refused(datagram(MessageType::BlockAdded, BlockAdded{}), "the type takes none", 2);
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
}

// ERROR's reason is sized by the datagram: a NUL inside it (which would cut
// it short wherever it is printed), one over kMaxReasonBytes, and a payload
// too short for the status are refused; none is read past its length.
TEST_F(ChannelMalformed, ErrorReasonIsBoundedAndHoldsNoNul) {
    Bytes payload(sizeof(ErrorMessage) + kMaxReasonBytes + 1, std::byte{'B'});
    payload[sizeof(ErrorMessage) + 5] = std::byte{0};
    expect_refused(datagram(12, payload.data(), sizeof(ErrorMessage) + 10, sizeof(ErrorMessage) + 10),
                   "ERROR #1: reason holds a NUL byte");
    payload[sizeof(ErrorMessage) + 5] = std::byte{'B'};
    expect_refused(datagram(12, payload.data(), payload.size(), payload.size()),
                   "ERROR #1: payload is 1033 bytes, the type takes 8..1032");
    expect_refused(datagram(12, payload.data(), 7, 7), "ERROR #1: payload is 7 bytes, the type takes 8..1032");
    // The longest, the shortest: valid.
    const auto verdict = [](const Bytes& b) { return validate(b.data(), b.size(), false, 0); };
    EXPECT_EQ(verdict(datagram(12, payload.data(), payload.size() - 1, payload.size() - 1)), "");
    EXPECT_EQ(verdict(datagram(12, payload.data(), sizeof(ErrorMessage), sizeof(ErrorMessage))), "");
}

// validate() on random bytes and on random mutations of a valid message:
// it always answers, never reads out of bounds (ASan would say).
TEST(ChannelMalformedValidate, RandomInputNeverCrashes) {
    std::mt19937_64 rng(20240611);
    const Bytes valid = datagram(MessageType::BlockAdded, BlockAdded{1, 0, 4096, 1, 4, 0});
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
