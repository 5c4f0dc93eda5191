// Processes dying at any moment: a guest killed with SIGKILL loses its queue
// and blocks (freed through the provider), its memory is unmapped, and the
// host and the other guest run on untouched; a host killed leaves its guest
// seeing the socket close.
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "hub_fixture.hpp"

namespace ndisshm_mp {
namespace {

class GuestDeath : public HubTest {
protected:
    void expect_only_survivor_left(const std::string& victim, ChildProcess& survivor, uint32_t queue, uint64_t seen) {
        ASSERT_TRUE(wait_closed(1)) << "the hub never noticed the guest die";
        EXPECT_EQ(hub_->stats().running, 1u);
        EXPECT_EQ(adapter_blocks(), kGuestBlocks) << "only the survivor's blocks are left";
        EXPECT_FALSE(maps_guest_memory(victim)) << "the dead guest's memory is still mapped";
        EXPECT_EQ(hub_->provider().stats().guests, 1u);
        EXPECT_EQ(hub_->provider().stats().guest_blocks, kGuestBlocks);
        EXPECT_EQ(violations(), 0u) << first_violation_;
        deliver_and_check(survivor, queue, 20, seen + 20);
    }
};

TEST_F(GuestDeath, KilledBeforeSetMemory) {
    auto other = spawn_guest("other");
    const uint32_t q = wait_attached(*other);
    ASSERT_NE(q, 0u);
    auto victim = spawn_guest("victim", {"--behavior", "stall-before-memory"});
    ASSERT_TRUE(victim->wait_line("HELLO_ACK")) << victim->transcript();
    victim->signal(SIGKILL);
    expect_only_survivor_left("victim", *other, q, 0);
    EXPECT_NE(last_reason().find("closed the connection"), std::string::npos) << last_reason();
}

TEST_F(GuestDeath, KilledAfterItsBlocksWereAdded) {
    auto other = spawn_guest("other");
    const uint32_t q = wait_attached(*other);
    auto victim = spawn_guest("victim");
    const uint32_t vq = wait_attached(*victim);
    ASSERT_NE(vq, 0u);
    EXPECT_EQ(adapter_blocks(), 2 * kGuestBlocks);
    EXPECT_TRUE(maps_guest_memory("victim"));
    victim->signal(SIGKILL);
    expect_only_survivor_left("victim", *other, q, 0);
    ndisshm_usage_stats qs{};
    EXPECT_EQ(ndisshm_queue_get_stats(adapter_, vq, &qs), NDIS_STATUS_INVALID_PARAMETER) << "its queue was freed";
}

// A guest that reads its packets and never gives one back, killed while it
// holds them: every cookie it held is void, its buffers and rings are freed,
// and nothing it held is handed to anyone.
TEST_F(GuestDeath, KilledWhileItHoldsCompletions) {
    auto other = spawn_guest("other");
    const uint32_t q = wait_attached(*other);
    auto victim = spawn_guest("victim", {"--behavior", "hold"});
    const uint32_t vq = wait_attached(*victim);
    ASSERT_NE(vq, 0u);
    for (uint64_t seq = 1; seq <= 40; ++seq)
        ASSERT_EQ(hub_->deliver(vq, make_packet(seq, 256)), ndisshm::ipc::Delivery::Delivered);
    ASSERT_TRUE(victim->wait_line("GOT 40 0")) << victim->transcript();
    // Nothing comes back: the hub holds 40 packets for it.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(hub_->miniport().stats(vq).outstanding, 40u);
    EXPECT_EQ(hub_->stats().returned, 0u);
    victim->signal(SIGKILL);
    expect_only_survivor_left("victim", *other, q, 0);
    EXPECT_TRUE(hub_->wait_until([&] { return hub_->stats().returned == 20; }, 5000))
        << "only the survivor's 20 packets came back: " << hub_->stats().returned;
}

TEST_F(GuestDeath, KilledWhilePacketsFlow) {
    auto other = spawn_guest("other");
    const uint32_t q = wait_attached(*other);
    auto victim = spawn_guest("victim");
    const uint32_t vq = wait_attached(*victim);
    ASSERT_NE(vq, 0u);
    // A NIC thread delivering to the victim as fast as it can, across its death.
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> delivered{0};
    std::thread nic([&] {
        uint64_t seq = 1;
        while (!stop) {
            const auto p = make_packet(seq++, 1500);
            if (hub_->deliver(vq, p) == ndisshm::ipc::Delivery::Delivered) ++delivered;
        }
    });
    ASSERT_TRUE(victim->wait_line("GOT ")) << victim->transcript();
    victim->signal(SIGKILL);
    const bool closed = wait_closed(1);
    stop = true;
    nic.join();
    ASSERT_TRUE(closed);
    EXPECT_GT(delivered.load(), 0u);
    EXPECT_EQ(hub_->deliver(vq, make_packet(1, 64)), ndisshm::ipc::Delivery::NoGuest);
    expect_only_survivor_left("victim", *other, q, 0);
}

TEST_F(GuestDeath, ManyGuestsKilledAtRandomMomentsLeaveNothingBehind) {
    auto other = spawn_guest("other");
    const uint32_t q = wait_attached(*other);
    // Each victim dies at a different point of its life: mid-handshake,
    // while the host carves its blocks, attached, receiving.
    const char* waits[] = {"HELLO_ACK", "MEMORY_ACK", "QUEUE ", "BLOCK ", "GOT "};
    uint64_t closed = 0, seen = 0;
    for (int round = 0; round < 5; ++round) {
        const std::string name = "victim" + std::to_string(round);
        auto v = spawn_guest(name);
        if (round == 4) {
            const uint32_t vq = wait_attached(*v);
            ASSERT_NE(vq, 0u);
            ASSERT_EQ(hub_->deliver(vq, make_packet(1, 100)), ndisshm::ipc::Delivery::Delivered);
        }
        ASSERT_TRUE(v->wait_line(waits[round])) << v->transcript();
        v->signal(SIGKILL);
        ASSERT_TRUE(wait_closed(++closed)) << "round " << round;
        EXPECT_FALSE(maps_guest_memory(name));
        deliver_and_check(*other, q, 5, seen += 5);
    }
    EXPECT_EQ(adapter_blocks(), kGuestBlocks);
    EXPECT_EQ(violations(), 0u) << first_violation_;
}

TEST(HostDeath, GuestSeesTheSocketCloseAndSaysSo) {
    char dir[] = "/tmp/ndisshm-mp-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string sock = std::string(dir) + "/run/host.sock";
    ChildProcess host({NDISSHM_MULTIPROCESS_PEER, "host", sock});
    ASSERT_TRUE(host.wait_line("LISTENING")) << host.transcript();
    ChildProcess guest({NDISSHM_MULTIPROCESS_PEER, "guest", sock, "g"});
    ASSERT_TRUE(guest.wait_line("GOT ")) << guest.transcript();  // packets flowing
    host.signal(SIGKILL);
    EXPECT_EQ(host.wait_exit(), 128 + SIGKILL);
    auto closed = guest.wait_line("CLOSED");
    ASSERT_TRUE(closed) << guest.transcript();
    EXPECT_NE(closed->find("peer closed"), std::string::npos) << *closed;
    EXPECT_EQ(guest.wait_exit(), 3);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

TEST(HostDeath, AGuestThatReconnectsRidesThroughAHostKilledAndOneThatSaysBye) {
    char dir[] = "/tmp/ndisshm-mp-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string sock = std::string(dir) + "/run/host.sock";
    auto host = std::make_unique<ChildProcess>(std::vector<std::string>{NDISSHM_MULTIPROCESS_PEER, "host", sock});
    ASSERT_TRUE(host->wait_line("LISTENING")) << host->transcript();
    ChildProcess guest({NDISSHM_MULTIPROCESS_PEER, "library-guest", sock, "g", "--reconnect-ms", "20000"});
    ASSERT_TRUE(guest.wait_line("GOT ")) << guest.transcript();

    // Killed: no BYE, the socket file left behind; the next host takes it over.
    host->signal(SIGKILL);
    EXPECT_EQ(host->wait_exit(), 128 + SIGKILL);
    auto lost = guest.wait_line("DISCONNECTED");
    ASSERT_TRUE(lost) << guest.transcript();
    EXPECT_NE(lost->find("without BYE"), std::string::npos) << *lost;
    host = std::make_unique<ChildProcess>(
        std::vector<std::string>{NDISSHM_MULTIPROCESS_PEER, "host", sock, "--life-ms", "1500"});
    ASSERT_TRUE(host->wait_line("LISTENING")) << host->transcript();
    ASSERT_TRUE(guest.wait_line("RECONNECTED")) << guest.transcript();
    ASSERT_TRUE(guest.wait_line("QUEUE")) << guest.transcript();
    // Packets of the new host, read in place in the same memory, all good.
    auto got = guest.wait_line("GOT ");
    ASSERT_TRUE(got) << guest.transcript();
    uint64_t total = 0, bad = 1, split = 0;
    ASSERT_EQ(std::sscanf(got->c_str(), "GOT %" SCNu64 " %" SCNu64 " %" SCNu64, &total, &bad, &split), 3);
    EXPECT_EQ(bad, 0u);

    // This host ends by itself, the clean way (BYE): a reconnection too.
    EXPECT_EQ(host->wait_exit(5000), 0) << host->transcript();
    auto bye = guest.wait_line("DISCONNECTED");
    ASSERT_TRUE(bye) << guest.transcript();
    EXPECT_NE(bye->find("(BYE)"), std::string::npos) << *bye;
    host = std::make_unique<ChildProcess>(std::vector<std::string>{NDISSHM_MULTIPROCESS_PEER, "host", sock});
    ASSERT_TRUE(host->wait_line("LISTENING")) << host->transcript();
    ASSERT_TRUE(guest.wait_line("RECONNECTED")) << guest.transcript();
    ASSERT_TRUE(guest.wait_line("GOT ")) << guest.transcript();
    guest.signal(SIGKILL);
    host->signal(SIGKILL);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace ndisshm_mp
