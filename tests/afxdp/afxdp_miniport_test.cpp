// The AF_XDP miniport on an adapter with NDIS's default provider: real
// kernel packets (UDP datagrams and ICMP echo requests sent on the other end
// of a veth) land in the queue's shared memory block, and the consumer reads
// each one in place, by (handle, offset, length).
#include "nic/afxdp_miniport.hpp"

#include <set>

#include "afxdp_fixture.hpp"
#include "os/unix_socket.hpp"

namespace ndisshm_afxdp {
namespace {

using ndisshm::nic::AfxdpMiniport;
using ndisshm::nic::AfxdpPacket;
using ndisshm::nic::AfxdpQueueConfig;

constexpr NDIS_RECEIVE_QUEUE_ID kQueue = 1;

class MiniportTest : public NetTest {
protected:
    void SetUp() override {
        NetTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ASSERT_EQ(ndisshm_adapter_create(rt_, "xdp0", &adapter_), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_queue_create(adapter_, kQueue), NDIS_STATUS_SUCCESS);
        make_links(1);
    }
    void before_teardown() override {
        miniport_.reset();
        if (adapter_ != nullptr) {
            EXPECT_EQ(adapter_blocks(adapter_), 0u) << "a UMEM block outlived its queue";
            ndisshm_adapter_destroy(adapter_);
        }
    }

    AfxdpQueueConfig queue_config(uint32_t frames = 256) const {
        AfxdpQueueConfig c;
        c.ifname = links_->rx(0).ifname;
        c.netns = links_->rx(0).netns;
        c.frames = frames;
        c.unicast_filter.emplace();
        std::copy(std::begin(links_->rx(0).mac), std::end(links_->rx(0).mac), c.unicast_filter->begin());
        return c;
    }

    // The consumer: checks each packet where it lies, then gives it back.
    void consume(NDIS_RECEIVE_QUEUE_ID queue, std::span<const AfxdpPacket> packets) {
        const auto umem = miniport_->umem(queue);
        std::lock_guard lock(seen_mu_);
        for (const AfxdpPacket& p : packets) {
            const bool in_block = umem && p.handle == umem->handle &&
                                  p.offset + uint64_t{p.length} <= umem->length &&
                                  p.data == umem->address + p.offset;
            const Parsed r = parse_frame(p.data, p.length);
            if (!in_block || r.kind == Kind::Bad) ++bad_;
            if (r.kind == Kind::Udp) udp_.insert(r.seq);
            if (r.kind == Kind::Icmp) icmp_.insert(r.seq);
            if (r.kind == Kind::Other) ++other_;
            ++total_;
            if (give_back_)
                EXPECT_TRUE(miniport_->give_back(queue, p.handle, p.offset, p.length, p.cookie));
            else
                held_.push_back(p);
        }
    }
    void start(uint32_t frames = 256) {
        miniport_ = std::make_unique<AfxdpMiniport>(
            adapter_, [this](NDIS_RECEIVE_QUEUE_ID q, std::span<const AfxdpPacket> p) { consume(q, p); });
        std::string why;
        ASSERT_EQ(miniport_->start_queue(kQueue, queue_config(frames), &why), NDIS_STATUS_SUCCESS) << why;
    }
    uint64_t total() {
        std::lock_guard lock(seen_mu_);
        return total_;
    }

    NDIS_HANDLE adapter_ = nullptr;
    std::unique_ptr<AfxdpMiniport> miniport_;
    std::mutex seen_mu_;
    std::set<uint64_t> udp_, icmp_;
    uint64_t bad_ = 0, other_ = 0, total_ = 0;
    bool give_back_ = true;
    std::vector<AfxdpPacket> held_;
};

TEST_F(MiniportTest, EveryKernelPacketLandsIntactInTheQueuesBlockAndIsReadInPlace) {
    start();
    auto umem = miniport_->umem(kQueue);
    ASSERT_TRUE(umem);
    // The UMEM is the block NDIS gave the queue: Receive, for this queue, from the default provider.
    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, reinterpret_cast<NDIS_HANDLE>(umem->handle), &info),
              NDIS_STATUS_SUCCESS);
    EXPECT_EQ(info.queue_id, kQueue);
    EXPECT_EQ(info.usage, NdisSharedMemoryUsageReceive);
    EXPECT_EQ(info.length, 256u * 4096u);
    EXPECT_EQ(info.virtual_address, umem->address);
    EXPECT_STREQ(info.provider, "default");

    auto tx = ndisshm::os::UdpSender::open(links_->tx(0).netns, links_->rx(0).address, kPort);
    ASSERT_TRUE(tx.ok()) << tx.error().message();
    constexpr uint64_t kUdp = 2000, kPings = 20;
    const auto returned = [&] { return miniport_->stats(kQueue).returned; };
    ASSERT_EQ(send_paced(**tx, 1, kUdp, returned, 128), kUdp) << describe(miniport_->stats(kQueue));
    // ping: echo requests from a raw ICMP socket on the far end.
    auto ping = ndisshm::os::IcmpEchoSender::open(links_->tx(0).netns, links_->rx(0).address);
    ASSERT_TRUE(ping.ok()) << ping.error().message();
    for (uint16_t i = 1; i <= kPings; ++i) {
        ASSERT_TRUE((*ping)->send(0x4e44, i, make_packet(i, 56)).ok());
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_TRUE(eventually([&] { return total() >= kUdp + kPings; })) << total() << " of " << kUdp + kPings;
    std::lock_guard lock(seen_mu_);
    EXPECT_EQ(udp_.size(), kUdp);
    EXPECT_EQ(*udp_.begin(), 1u);
    EXPECT_EQ(*udp_.rbegin(), kUdp);
    EXPECT_EQ(icmp_.size(), kPings);
    EXPECT_EQ(bad_, 0u);
    EXPECT_EQ(other_, 0u) << "the wire carries only what the test sent";
    const auto s = miniport_->stats(kQueue);
    EXPECT_EQ(s.indicated, kUdp + kPings);
    EXPECT_EQ(s.kernel.fill_ring_empty, 0u);
    EXPECT_EQ(s.kernel.rx_dropped, 0u);
    EXPECT_EQ(s.bad_descriptors, 0u);
}

TEST_F(MiniportTest, GiveBackTakesOnlyWhatWasIndicatedAndNotYetReturned) {
    give_back_ = false;
    start();
    auto tx = ndisshm::os::UdpSender::open(links_->tx(0).netns, links_->rx(0).address, kPort);
    ASSERT_TRUE(tx.ok()) << tx.error().message();
    ASSERT_TRUE((*tx)->send(make_packet(7, 100)).ok());
    ASSERT_TRUE(eventually([&] { return total() == 1; }));
    const AfxdpPacket p = held_.at(0);
    EXPECT_FALSE(miniport_->give_back(kQueue, p.handle + 1, p.offset, p.length, p.cookie)) << "another block";
    EXPECT_FALSE(miniport_->give_back(kQueue, p.handle, p.offset + 1, p.length, p.cookie))
        << "altered offset";
    EXPECT_FALSE(miniport_->give_back(kQueue, p.handle, p.offset, p.length, p.cookie + (uint64_t{1} << 32)))
        << "wrong generation";
    EXPECT_FALSE(miniport_->give_back(kQueue + 1, p.handle, p.offset, p.length, p.cookie)) << "another queue";
    EXPECT_EQ(miniport_->stats(kQueue).outstanding, 1u);
    EXPECT_TRUE(miniport_->give_back(kQueue, p.handle, p.offset, p.length, p.cookie));
    EXPECT_FALSE(miniport_->give_back(kQueue, p.handle, p.offset, p.length, p.cookie)) << "twice";
    const auto s = miniport_->stats(kQueue);
    EXPECT_EQ(s.returned, 1u);
    EXPECT_EQ(s.refused, 4u);  // the other queue's refusal is not this queue's to count
    EXPECT_EQ(s.outstanding, 0u);
}

TEST_F(MiniportTest, AStoppedQueueFreesItsBlockAndItsInterfaceQueueCanBeBoundAgain) {
    auto fds_before = ndisshm::os::open_fd_count();
    ASSERT_TRUE(fds_before.ok());
    start();
    EXPECT_EQ(adapter_blocks(adapter_), 1u);
    miniport_->stop_queue(kQueue);
    EXPECT_EQ(adapter_blocks(adapter_), 0u);
    EXPECT_FALSE(miniport_->umem(kQueue));
    // The socket, its rings, the XDP program's and map's descriptors, the wake-up fd: all gone.
    EXPECT_EQ(*ndisshm::os::open_fd_count(), *fds_before);
    // Binding the same interface queue again works only if the first socket is really gone.
    std::string why;
    ASSERT_EQ(miniport_->start_queue(kQueue, queue_config(), &why), NDIS_STATUS_SUCCESS) << why;
    auto tx = ndisshm::os::UdpSender::open(links_->tx(0).netns, links_->rx(0).address, kPort);
    ASSERT_TRUE(tx.ok()) << tx.error().message();
    ASSERT_TRUE((*tx)->send(make_packet(1, 300)).ok());
    EXPECT_TRUE(eventually([&] { return total() == 1; }));
}

TEST_F(MiniportTest, AnInterfaceThatDoesNotExistFailsWithTheReasonAndFreesTheBlock) {
    miniport_ =
        std::make_unique<AfxdpMiniport>(adapter_, [](NDIS_RECEIVE_QUEUE_ID, std::span<const AfxdpPacket>) {});
    AfxdpQueueConfig c = queue_config();
    c.ifname = "nosuchif0";
    std::string why;
    EXPECT_EQ(miniport_->start_queue(kQueue, c, &why), NDIS_STATUS_FAILURE);
    EXPECT_NE(why.find("xsk_socket__create(nosuchif0"), std::string::npos) << why;
    EXPECT_NE(why.find("No such device"), std::string::npos) << why;
    EXPECT_EQ(adapter_blocks(adapter_), 0u);
    c = queue_config();
    c.frames = 10;
    EXPECT_EQ(miniport_->start_queue(kQueue, c, &why), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_NE(why.find("frames"), std::string::npos) << why;
}

}  // namespace
}  // namespace ndisshm_afxdp
