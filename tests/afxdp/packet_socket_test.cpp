// os::PacketSocket, the plain AF_PACKET socket bench/afxdp_bench.cpp holds
// the AF_XDP path against: on the receive end of a private veth it gets every
// frame the sender put on the wire, whole and intact, and only that
// interface's; and when a call fails, the error names the call and errno's
// text (the fault seam makes the kernel say no).
#include "os/packet_socket.hpp"

#include <algorithm>
#include <cstring>
#include <set>

#include "afxdp_fixture.hpp"
#include "os/fault.hpp"

namespace ndisshm_afxdp {
namespace {

using ndisshm::os::PacketSocket;
namespace fault = ndisshm::os::fault;

class PacketSocketTest : public NetTest {
protected:
    void SetUp() override {
        NetTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        make_links(2);
        // No address on the receive ends: the stack drops the datagrams
        // instead of answering with ICMP (which would fail the sender's next
        // send with ECONNREFUSED), as on a switch port.
        const std::string ns = links_->rx_netns().substr(links_->rx_netns().rfind('/') + 1);
        for (uint32_t i = 0; i < 2; ++i)
            ASSERT_TRUE(ndisshm::os::run_ip({"-n", ns, "addr", "flush", "dev", links_->rx(i).ifname}).ok());
    }
    void TearDown() override {
        fault::disarm();
        NetTest::TearDown();
    }
    std::unique_ptr<ndisshm::os::UdpSender> sender(uint32_t link) {
        auto tx = ndisshm::os::UdpSender::open(links_->tx(link).netns, links_->rx(link).address, kPort);
        EXPECT_TRUE(tx.ok()) << tx.error().message();
        return tx.ok() ? std::move(*tx) : nullptr;
    }
};

TEST_F(PacketSocketTest, ReceivesEveryFrameSentOnItsInterfaceWholeAndIntactAndNoneOfAnotherInterface) {
    auto sock = PacketSocket::open({links_->rx(0).ifname, links_->rx(0).netns});
    ASSERT_TRUE(sock.ok()) << sock.error().message();
    // The other link carries traffic too: none of it may reach this socket.
    auto other = sender(1);
    auto tx = sender(0);
    ASSERT_NE(tx, nullptr);
    ASSERT_NE(other, nullptr);
    constexpr uint64_t kCount = 200;
    for (uint64_t seq = 1; seq <= kCount; ++seq) {
        ASSERT_TRUE(tx->send(make_packet(seq, payload_size(seq))).ok());
        ASSERT_TRUE(other->send(make_packet(100'000 + seq, 64)).ok());
    }
    std::vector<std::byte> storage(16 * 2048);
    std::vector<std::span<std::byte>> buffers;
    for (size_t i = 0; i < 16; ++i) buffers.emplace_back(storage.data() + i * 2048, 2048);
    uint32_t lengths[16];
    std::set<uint64_t> seen;
    uint64_t bad = 0, foreign = 0;
    const auto end = Clock::now() + 5s;
    while (seen.size() + bad + foreign < kCount && Clock::now() < end) {
        auto n = (*sock)->receive(buffers, lengths, 100);
        ASSERT_TRUE(n.ok()) << n.error().message();
        for (size_t i = 0; i < *n; ++i) {
            const Parsed p = parse_frame(buffers[i].data(), lengths[i]);
            if (p.kind != Kind::Udp) {
                ++bad;
            } else if (p.seq > kCount) {
                ++foreign;
            } else {
                EXPECT_EQ(lengths[i], 42 + payload_size(p.seq)) << "frame of datagram " << p.seq;
                seen.insert(p.seq);
            }
        }
    }
    EXPECT_EQ(seen.size(), kCount);
    EXPECT_EQ(bad, 0u) << "frames that were not an intact datagram of ours";
    EXPECT_EQ(foreign, 0u) << "frames of the other interface";
    auto st = (*sock)->stats();
    ASSERT_TRUE(st.ok()) << st.error().message();
    EXPECT_EQ(st->drops, 0u);
    EXPECT_GE(st->packets, kCount);
}

TEST_F(PacketSocketTest, NothingWaitingReturnsNoFrameOnceTheTimeoutPasses) {
    auto sock = PacketSocket::open({links_->rx(0).ifname, links_->rx(0).netns});
    ASSERT_TRUE(sock.ok()) << sock.error().message();
    std::vector<std::byte> storage(2048);
    std::span<std::byte> buffer(storage);
    uint32_t length = 0;
    const auto start = Clock::now();
    auto n = (*sock)->receive({&buffer, 1}, {&length, 1}, 50);
    ASSERT_TRUE(n.ok()) << n.error().message();
    EXPECT_EQ(*n, 0u);
    EXPECT_GE(Clock::now() - start, 40ms);
}

TEST_F(PacketSocketTest, AFailingCallIsNamedWithErrnosText) {
    ASSERT_TRUE(fault::arm("socket", 1, EMFILE));
    auto s = PacketSocket::open({links_->rx(0).ifname, links_->rx(0).netns});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().err, EMFILE);
    EXPECT_NE(s.error().message().find("socket(AF_PACKET"), std::string::npos) << s.error().message();
    EXPECT_NE(s.error().message().find(std::strerror(EMFILE)), std::string::npos) << s.error().message();

    ASSERT_TRUE(fault::arm("bind", 1, EADDRNOTAVAIL));
    s = PacketSocket::open({links_->rx(0).ifname, links_->rx(0).netns});
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message().find("bind(" + links_->rx(0).ifname + ")"), std::string::npos)
        << s.error().message();
    fault::disarm();

    s = PacketSocket::open({"nosuchif0", links_->rx(0).netns});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().err, ENODEV);
    EXPECT_NE(s.error().message().find("if_nametoindex(nosuchif0)"), std::string::npos)
        << s.error().message();

    auto good = PacketSocket::open({links_->rx(0).ifname, links_->rx(0).netns});
    ASSERT_TRUE(good.ok()) << good.error().message();
    ASSERT_TRUE(fault::arm("recvmsg", 1, EIO));
    std::vector<std::byte> storage(2048);
    std::span<std::byte> buffer(storage);
    uint32_t length = 0;
    auto n = (*good)->receive({&buffer, 1}, {&length, 1}, 0);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.error().err, EIO);
    EXPECT_NE(n.error().message().find("recvmmsg"), std::string::npos) << n.error().message();
}

}  // namespace
}  // namespace ndisshm_afxdp
