// Real kernel packets into a real guest process's memory: a hub
// (<ndisshm/hub.h>) whose guests' queues are fed through AF_XDP
// (nic::AfxdpHubNic, what `ndisshm demo --nic afxdp` runs on), a guest that
// reads each frame in place, and the faults around it: the guest killed, the
// host stopping, while a sender floods.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>

#include "afxdp_fixture.hpp"
#include "child_process.hpp"

namespace ndisshm_afxdp {
namespace {

using ndisshm::nic::AfxdpHubNic;
using ndisshm::support::ChildProcess;

constexpr uint32_t kFrames = 512;

class GuestTest : public NetTest {
protected:
    void SetUp() override {
        NetTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        char dir[] = "/tmp/ndisshm-afxdp-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        const std::string socket = dir_ + "/run/host.sock";
        ndisshm_hub_config c;
        ndisshm_hub_config_init(&c);
        c.socket_path = socket.c_str();
        c.adapter_name = "xdp0";
        c.max_guests = 2;
        c.serve_control = 0;
        c.log = [](void* self, const char* line) {
            auto* t = static_cast<GuestTest*>(self);
            std::lock_guard lock(t->mu_);
            t->log_ += std::string("  hub: ") + line + "\n";
        };
        c.log_context = this;
        char err[256] = "";
        ASSERT_EQ(ndisshm_hub_create(rt_, &c, &hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
        ndisshm::nic::AfxdpHubNicConfig nc;
        nc.links = 2;
        nc.frames_per_queue = kFrames;
        nc.tag = "xg";
        auto nic = AfxdpHubNic::attach(hub_, nc);
        ASSERT_TRUE(nic.ok()) << nic.error().message();
        nic_ = std::move(*nic);
        ASSERT_EQ(ndisshm_hub_start(hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    }

    void before_teardown() override {
        stop_flood();
        if (hub_ != nullptr) {
            ndisshm_hub_stop(hub_);  // every guest queue stopped through the driver
            EXPECT_EQ(adapter_blocks(ndisshm_hub_adapter(hub_)), 0u) << "blocks left after the hub stopped";
        }
        nic_.reset();
        if (hub_ != nullptr) ndisshm_hub_destroy(hub_);
        std::error_code ec;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    }

    std::unique_ptr<ChildProcess> spawn_guest(const std::string& name) {
        auto g = std::make_unique<ChildProcess>(std::vector<std::string>{
            NDISSHM_AFXDP_GUEST, ndisshm_hub_socket_path(hub_), name, "--memory", std::to_string(16u << 20)});
        EXPECT_TRUE(g->started());
        return g;
    }
    // The guest's queue, once it has its UMEM block (Receive usage, kFrames frames).
    uint32_t wait_attached(ChildProcess& g) {
        auto q = g.wait_line("QUEUE ");
        EXPECT_TRUE(q) << g.transcript() << hub_log();
        if (!q) return 0;
        auto b = g.wait_line("BLOCK ");
        EXPECT_TRUE(b) << g.transcript() << hub_log();
        if (!b) return 0;
        EXPECT_NE(b->find(" " + std::to_string(kFrames * 4096) + " 4"), std::string::npos) << *b;
        const auto id = static_cast<uint32_t>(std::stoul(q->substr(6)));
        // The guest hears of the block while it is allocated, before the
        // socket is bound: a packet sent before that would go to the stack.
        EXPECT_TRUE(eventually([&] { return nic_->driver().miniport().umem(id).has_value(); })) << hub_log();
        return id;
    }
    // Floods `queue` from a thread until the test (or teardown) stops it; the
    // sender is the fixture's, so it outlives the thread even when an
    // assertion ends the test early.
    void start_flood(uint32_t queue) {
        flood_tx_ = sender(queue);
        ASSERT_NE(flood_tx_, nullptr);
        flooder_ = std::thread([this] { flood(*flood_tx_, stop_); });
    }
    void stop_flood() {
        stop_ = true;
        if (flooder_.joinable()) flooder_.join();
    }
    std::unique_ptr<ndisshm::os::UdpSender> sender(uint32_t queue) {
        auto tx = nic_->sender(queue);
        EXPECT_TRUE(tx.ok()) << tx.error().message();
        return tx.ok() ? std::move(*tx) : nullptr;
    }
    // The hub's and the driver's counters and log lines, for failure messages.
    std::string hub_log() {
        ndisshm_hub_stats h{};
        ndisshm_hub_get_stats(hub_, &h);
        const auto d = nic_->driver().stats();
        std::lock_guard lock(mu_);
        return "\n  hub: delivered " + std::to_string(h.delivered) + ", dropped " +
               std::to_string(h.dropped) + ", returned " + std::to_string(h.returned) +
               "; driver: announced " + std::to_string(d.announced) + ", dropped " +
               std::to_string(d.dropped) + ", returned " + std::to_string(d.returned) + "\n" + log_;
    }
    uint64_t hub_closed() {
        ndisshm_hub_stats s{};
        ndisshm_hub_get_stats(hub_, &s);
        return s.closed;
    }
    // Sends seqs [first, first + count) to `queue`, paced by what its guest gave back.
    void send_to(uint32_t queue, uint64_t first, uint64_t count) {
        auto tx = sender(queue);
        ASSERT_NE(tx, nullptr);
        ASSERT_EQ(send_paced(
                      *tx, first, count, [&] { return nic_->returned(queue); }, 128),
                  count)
            << describe(nic_->driver().miniport().stats(queue)) << hub_log();
    }

    std::string dir_;
    ndisshm_hub* hub_ = nullptr;
    std::unique_ptr<AfxdpHubNic> nic_;
    std::string log_;
    std::unique_ptr<ndisshm::os::UdpSender> flood_tx_;
    std::atomic<bool> stop_{false};
    std::thread flooder_;
};

TEST_F(GuestTest, EveryKernelPacketLandsInTheGuestsMemoryAndIsReadThereInPlace) {
    auto g = spawn_guest("a");
    const uint32_t q = wait_attached(*g);
    ASSERT_NE(q, 0u);
    // The UMEM is the guest's memory: the guest provider carved it, its SG
    // address is a guest physical address inside the guest's range.
    const auto umem = nic_->driver().miniport().umem(q);
    ASSERT_TRUE(umem);
    ndisshm_block_info info{};
    ASSERT_EQ(
        ndisshm_block_get_info(ndisshm_hub_adapter(hub_), reinterpret_cast<NDIS_HANDLE>(umem->handle), &info),
        NDIS_STATUS_SUCCESS);
    EXPECT_EQ(info.queue_id, q);
    EXPECT_EQ(info.usage, NdisSharedMemoryUsageReceive);
    EXPECT_STREQ(info.provider, "guest-hub");
    EXPECT_GE(info.first_address, 0x100000000ull);
    EXPECT_LT(info.first_address, 0x100000000ull + (16u << 20));

    constexpr uint64_t kUdp = 3000, kPings = 20;
    send_to(q, 1, kUdp);
    auto ping = ndisshm::os::IcmpEchoSender::open(nic_->links().tx(0).netns, nic_->links().rx(0).address);
    ASSERT_TRUE(ping.ok()) << ping.error().message();
    for (uint16_t i = 1; i <= kPings; ++i) {
        ASSERT_TRUE((*ping)->send(0x4e44, i, make_packet(i, 56)).ok());
        std::this_thread::sleep_for(1ms);
    }
    const std::string want = "GOT udp=3000 distinct=3000 icmp=20 bad=0 inplace=3020 other=0";
    EXPECT_TRUE(g->wait_line(want)) << "waiting for '" << want << "'\n" << g->transcript() << hub_log();
    const auto s = nic_->driver().miniport().stats(q);
    EXPECT_EQ(s.indicated, kUdp + kPings);
    EXPECT_EQ(s.kernel.fill_ring_empty, 0u);
    EXPECT_TRUE(eventually([&] { return nic_->returned(q) == kUdp + kPings; })) << "every frame given back";
    EXPECT_EQ(nic_->driver().stats().dropped, 0u);

    ndisshm_hub_stop(hub_);
    EXPECT_TRUE(g->wait_line("BYE")) << g->transcript();
    EXPECT_EQ(g->wait_exit(), 0);
}

TEST_F(GuestTest, AGuestKilledWhileTrafficFloodsLeavesNothingBehindAndItsQueueServesTheNextGuest) {
    auto a = spawn_guest("a");
    const uint32_t q = wait_attached(*a);
    ASSERT_NE(q, 0u);
    start_flood(q);
    ASSERT_TRUE(a->wait_line("GOT ")) << a->transcript() << hub_log();
    a->signal(SIGKILL);
    EXPECT_EQ(a->wait_exit(), 128 + SIGKILL);
    ASSERT_TRUE(eventually([&] { return hub_closed() == 1; })) << hub_log();
    std::this_thread::sleep_for(100ms);  // the flood goes on into the link
    stop_flood();
    // Its UMEM was freed through the guest provider after the socket closed
    // (a block left on the queue when the hub freed it would be a verifier
    // violation, checked at teardown), and nothing else is left.
    EXPECT_EQ(adapter_blocks(ndisshm_hub_adapter(hub_)), 0u) << hub_log();
    EXPECT_FALSE(nic_->driver().miniport().umem(q));

    // The next guest gets the same queue, fed by the same interface queue:
    // binding it again works only because the dead guest's socket is gone.
    auto b = spawn_guest("b");
    ASSERT_EQ(wait_attached(*b), q) << hub_log();
    send_to(q, 1, 500);
    EXPECT_TRUE(b->wait_line("GOT udp=500 distinct=500 icmp=0 bad=0 inplace=500 other=0"))
        << b->transcript() << hub_log();
}

// The guest's memory outlives the guest: the test holds its memfd, as a
// VMM holds a dead VM's memory. Had the driver freed the UMEM block before
// closing the socket (or not closed it at all), the kernel, which pinned
// those pages, would go on writing packets into the frames left on the fill
// ring. So the traffic is steady but slower than the guest reads (a flood
// would leave the fill ring empty at the moment of death, and a socket left
// open would then have nowhere to write: the test would prove nothing), the
// range is poisoned once the session is gone, the traffic goes on, and not
// one byte of it may change. Checked against a driver that leaves the socket
// open: the test fails.
TEST_F(GuestTest, AGuestKilledWhileTrafficFloodsGetsNoPacketWrittenIntoItsMemoryAfterItsQueueIsFreed) {
    constexpr uint64_t kGuestMemory = 16u << 20;
    constexpr auto kPoison = std::byte{0xA5};
    auto g = spawn_guest("a");
    const auto queue_line = g->wait_line("QUEUE ");
    ASSERT_TRUE(queue_line) << g->transcript() << hub_log();
    const auto block_line = g->wait_line("BLOCK ");
    ASSERT_TRUE(block_line) << g->transcript() << hub_log();
    unsigned long long handle = 0, offset = 0;
    unsigned length = 0, usage = 0;
    ASSERT_EQ(std::sscanf(block_line->c_str(), "BLOCK 0x%llx %llu %u %u", &handle, &offset, &length, &usage),
              4)
        << *block_line;
    ASSERT_EQ(length, kFrames * 4096u);
    ASSERT_LE(offset + length, kGuestMemory);
    const auto q = static_cast<uint32_t>(std::stoul(queue_line->substr(6)));
    ASSERT_TRUE(eventually([&] { return nic_->driver().miniport().umem(q).has_value(); })) << hub_log();

    // The guest's memfd (the one of its memory's size), reopened through /proc while it lives.
    int memfd = -1;
    for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(g->pid()) + "/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(e.path(), ec).string();
        if (ec || target.rfind("/memfd:", 0) != 0) continue;
        const int fd = ::open(e.path().c_str(), O_RDWR | O_CLOEXEC);
        struct stat st {};
        if (fd >= 0 && ::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) == kGuestMemory) {
            memfd = fd;
            break;
        }
        if (fd >= 0) ::close(fd);
    }
    ASSERT_GE(memfd, 0) << "the guest's memory memfd in /proc/" << g->pid() << "/fd";
    void* map = ::mmap(nullptr, kGuestMemory, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    ::close(memfd);
    ASSERT_NE(map, MAP_FAILED);
    const std::span<std::byte> umem(static_cast<std::byte*>(map) + offset, length);

    // The fixture's sender and thread, so teardown stops it even when an assertion ends the test.
    flood_tx_ = sender(q);
    ASSERT_NE(flood_tx_, nullptr);
    auto sent = std::make_shared<std::atomic<uint64_t>>(0);
    flooder_ = std::thread([this, sent] {
        const auto payload = make_packet(1, 1000);
        while (!stop_.load()) {
            if (flood_tx_->send(payload)) ++*sent;
            std::this_thread::sleep_for(100us);
        }
    });
    ASSERT_TRUE(g->wait_line("GOT ")) << g->transcript() << hub_log();
    // While the queue lives the kernel writes there: the check can see it.
    ASSERT_TRUE(eventually([&] {
        return std::any_of(umem.begin(), umem.end(), [](std::byte b) { return b != std::byte{0}; });
    })) << "no packet seen in the guest's UMEM range";
    g->signal(SIGKILL);
    EXPECT_EQ(g->wait_exit(), 128 + SIGKILL);
    ASSERT_TRUE(eventually([&] { return hub_closed() == 1; })) << hub_log();
    ASSERT_TRUE(eventually([&] { return !nic_->driver().miniport().umem(q).has_value(); }))
        << "the queue's UMEM is freed once the session is closed" << hub_log();
    std::memset(umem.data(), std::to_integer<int>(kPoison), umem.size());
    const uint64_t at_poison = sent->load();
    std::this_thread::sleep_for(200ms);  // the traffic goes on into the link
    stop_flood();
    EXPECT_GT(sent->load(), at_poison + 100) << "the traffic stopped: the check would prove nothing";
    const auto written = std::count_if(umem.begin(), umem.end(), [&](std::byte b) { return b != kPoison; });
    EXPECT_EQ(written, 0) << "bytes written into the dead guest's memory after its UMEM was freed";
    EXPECT_EQ(adapter_blocks(ndisshm_hub_adapter(hub_)), 0u) << hub_log();
    ::munmap(map, kGuestMemory);
}

TEST_F(GuestTest, TheHostStoppingWhileTrafficFloodsEndsTheGuestCleanly) {
    auto g = spawn_guest("a");
    const uint32_t q = wait_attached(*g);
    ASSERT_NE(q, 0u);
    start_flood(q);
    ASSERT_TRUE(g->wait_line("GOT ")) << g->transcript() << hub_log();
    ndisshm_hub_stop(hub_);  // the driver's queue stops (socket closed, then the block freed) mid-flood
    EXPECT_TRUE(g->wait_line("BYE")) << g->transcript() << hub_log();
    EXPECT_EQ(g->wait_exit(), 0);
    stop_flood();
    EXPECT_EQ(adapter_blocks(ndisshm_hub_adapter(hub_)), 0u);
    // Every frame the guest read before the end was intact.
    const auto transcript = g->transcript();
    EXPECT_NE(transcript.find(" bad=0 "), std::string::npos) << transcript;
    for (size_t at = transcript.find(" bad="); at != std::string::npos; at = transcript.find(" bad=", at + 1))
        EXPECT_EQ(transcript.compare(at, 7, " bad=0 "), 0) << transcript.substr(at, 40);
}

}  // namespace
}  // namespace ndisshm_afxdp
