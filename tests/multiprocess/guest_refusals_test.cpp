// Guests that lie or misbehave: each is refused with an ERROR that says why
// (and the same reason in the host's log), its session alone ends, and an
// honest guest beside it keeps receiving.
#include "hub_fixture.hpp"

namespace ndisshm_mp {
namespace {

class Refusal : public HubTest {
protected:
    void SetUp() override {
        HubTest::SetUp();
        honest_ = spawn_guest("honest");
        queue_ = wait_attached(*honest_);
        ASSERT_NE(queue_, 0u);
    }

    // Runs a guest with `args`, expects the host to refuse it with a reason
    // containing `why` (in its ERROR message, unless `error_sent` is false,
    // and in the host's log), then checks the honest guest is untouched.
    void expect_refused(const std::vector<std::string>& args, const std::string& why, bool error_sent = true) {
        auto bad = spawn_guest("bad", args);
        if (error_sent) {
            auto e = bad->wait_line("ERROR ");
            ASSERT_TRUE(e) << bad->transcript();
            EXPECT_NE(e->find(why), std::string::npos) << *e;
        }
        ASSERT_TRUE(bad->wait_line("CLOSED")) << bad->transcript();
        ASSERT_TRUE(wait_closed(1));
        EXPECT_NE(last_reason().find(why), std::string::npos) << last_reason();
        EXPECT_EQ(hub_->stats().refused, 1u);
        EXPECT_FALSE(maps_guest_memory("bad"));
        EXPECT_EQ(adapter_blocks(), kGuestBlocks) << "the refused guest left blocks behind";
        deliver_and_check(*honest_, queue_, 20, seen_ += 20);
    }

    std::unique_ptr<ChildProcess> honest_;
    uint32_t queue_ = 0;
    uint64_t seen_ = 0;
};

TEST_F(Refusal, RegionTooSmall) { expect_refused({"--memory", "65536"}, "region too small"); }

TEST_F(Refusal, PipeIsNotAMemfd) { expect_refused({"--fd", "pipe"}, "not a memfd"); }

TEST_F(Refusal, RegularFileIsNotAMemfd) { expect_refused({"--fd", "file"}, "not a memfd"); }

TEST_F(Refusal, SizeThatDoesNotMatchTheMemfd) {
    expect_refused({"--memory", "4194304", "--claim", "8388608"}, "size mismatch");
}

TEST_F(Refusal, MemfdThatCannotBeSealedAgainstShrinking) {
    expect_refused({"--fd", "unsealable"}, "not sealed against shrinking");
}

TEST_F(Refusal, GarbageBytes) { expect_refused({"--behavior", "garbage"}, "malformed message"); }

// A guest that breaks the rings' rules: refused with an ERROR naming the
// rule, its session alone ends, everything of its own is reclaimed (its
// rings included), and the honest guest's packets are untouched.
class RingRefusal : public Refusal {
protected:
    void expect_ring_refused(const std::vector<std::string>& args, const std::string& why, int packets = 1) {
        auto bad = spawn_guest("bad", args);
        const uint32_t q = wait_attached(*bad);
        ASSERT_NE(q, 0u);
        // The host reads what the guest wrote at its next turn: a delivery.
        for (int i = 1; i <= packets && hub_->stats().refused == 0; ++i) {
            if (hub_->deliver(q, make_packet(static_cast<uint64_t>(i), 100)) != ndisshm::ipc::Delivery::Delivered)
                break;  // refused at this turn
            ASSERT_TRUE(bad->wait_line("GOT " + std::to_string(i) + " ")) << bad->transcript();
            hub_->wait_until([&] { return hub_->stats().refused != 0; }, 50);
        }
        auto e = bad->wait_line("ERROR ");
        ASSERT_TRUE(e) << bad->transcript();
        EXPECT_NE(e->find(why), std::string::npos) << *e;
        ASSERT_TRUE(wait_closed(1));
        EXPECT_NE(last_reason().find("ring violation: "), std::string::npos) << last_reason();
        EXPECT_NE(last_reason().find(why), std::string::npos) << last_reason();
        EXPECT_EQ(hub_->stats().refused, 1u);
        EXPECT_FALSE(maps_guest_memory("bad"));
        EXPECT_EQ(adapter_blocks(), kGuestBlocks) << "the refused guest left blocks (or rings) behind";
        // The honest guest's slots are untouched: everything it holds is still its own.
        EXPECT_EQ(hub_->miniport().stats(queue_).outstanding, 0u);
        deliver_and_check(*honest_, queue_, 10, seen_ += 10);
    }
};

TEST_F(RingRefusal, ACompletionOfACookieNeverHandedOut) {
    // Slot 5, generation 1: well-formed, but not a packet this guest holds.
    expect_ring_refused({"--behavior", "forge-cookie", "--forge-cookie", std::to_string((1u << 16) | 5)},
                        "names a packet the guest does not hold", 2);
}

TEST_F(RingRefusal, ACompletionOutsideTheTable) {
    expect_ring_refused({"--behavior", "forge-cookie", "--forge-cookie", std::to_string((1u << 16) | 0xffff)},
                        "names no slot", 2);
}

TEST_F(RingRefusal, TheSamePacketGivenBackTwice) {
    expect_ring_refused({"--behavior", "double-done"}, "does not hold (given back twice", 2);
}

TEST_F(RingRefusal, AReceiveConsumerIndexAheadOfTheProducer) {
    expect_ring_refused({"--behavior", "wild-index"}, "consumer index", 2);
}

TEST_F(RingRefusal, MoreCompletionsThanTheRingHolds) {
    expect_ring_refused({"--behavior", "overrun"}, "entries ready past consumer", 2);
}

TEST_F(Refusal, UnsealedMemfdIsSealedByTheHostSoTheGuestCannotShrinkIt) {
    auto g = spawn_guest("shrinker", {"--fd", "unsealed", "--behavior", "shrink"});
    auto t = g->wait_line("TRUNCATE ");  // tried right after MEMORY_ACK, before the queue comes
    ASSERT_TRUE(t) << g->transcript();
    EXPECT_EQ(*t, "TRUNCATE EPERM");
    const uint32_t q = wait_attached(*g);
    ASSERT_NE(q, 0u);
    // The host writes all over the guest's memory and does not fault.
    deliver_and_check(*g, q, 50, 50, 2048);
    EXPECT_EQ(hub_->stats().closed, 0u);
}

TEST_F(Refusal, SealedMemfdCannotBeShrunkAfterHandover) {
    auto g = spawn_guest("shrinker", {"--behavior", "shrink"});
    auto t = g->wait_line("TRUNCATE ");
    ASSERT_TRUE(t) << g->transcript();
    EXPECT_EQ(*t, "TRUNCATE EPERM");
    const uint32_t q = wait_attached(*g);
    deliver_and_check(*g, q, 20, 20, 2048);
}

TEST_F(Refusal, AGuestThatStopsReadingCannotStallTheHost) {
    auto deaf = spawn_guest("deaf", {"--behavior", "deaf"});  // reads neither its socket nor its rings
    const auto q = deaf->wait_line("QUEUE ");
    ASSERT_TRUE(q) << deaf->transcript();
    const auto dq = static_cast<uint32_t>(std::stoul(q->substr(6)));
    // Its rings attached (it never says so: it reads nothing), beside the
    // honest guest's: before that moment every offer is dropped at once,
    // and none would fill the ring.
    ASSERT_TRUE(hub_->wait_until(
        [&] { return hub_->miniport().stats(dq).slots != 0 && hub_->ready_guests() >= 2; }, 5000));
    // Its ring fills (no slot comes back) and then every packet is dropped at
    // once: nothing waits on a guest that does not read.
    const auto start = std::chrono::steady_clock::now();
    uint64_t delivered = 0;
    for (uint64_t seq = 1; seq <= 2000; ++seq)
        if (hub_->deliver(dq, make_packet(seq, 64)) == ndisshm::ipc::Delivery::Delivered) ++delivered;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_EQ(delivered, hub_->miniport().stats(dq).slots);
    // Dropped by the miniport (no free slot): every offer is counted.
    EXPECT_EQ(hub_->stats().dropped, 2000 - delivered);
    EXPECT_LE(hub_->miniport().stats(dq).ring_full, 2000 - delivered);
    deliver_and_check(*honest_, queue_, 20, 20);
}

class SlowHandshake : public HubTest {
protected:
    void SetUp() override {
        HubTest::SetUp();
        hub_->stop();
        hub_.reset();
        start_hub(/*handshake_timeout_ms=*/300);
    }
};

TEST_F(SlowHandshake, AGuestThatNeverSendsItsMemoryIsDropped) {
    auto g = spawn_guest("staller", {"--behavior", "stall-before-memory"});
    ASSERT_TRUE(g->wait_line("HELLO_ACK")) << g->transcript();
    auto e = g->wait_line("ERROR ");
    ASSERT_TRUE(e) << g->transcript();
    EXPECT_NE(e->find("handshake not finished"), std::string::npos) << *e;
    ASSERT_TRUE(wait_closed(1));
}

}  // namespace
}  // namespace ndisshm_mp

namespace ndisshm_mp {
namespace {

// A hostile local client holding more idle connections than the host has
// handshake slots: beyond its own share (4 per process) it is turned away
// with an ERROR that says so, and an honest guest of another process gets
// its queue at once, not after the flood's deadline.
TEST_F(SlowHandshake, AFloodOfIdleConnectionsFromOneProcessCannotKeepAnotherGuestOut) {
    std::vector<ndisshm::ipc::Channel> flood;
    for (int i = 0; i < 40; ++i) {
        auto s = ndisshm::ipc::connect_to(socket());
        ASSERT_TRUE(s) << s.error().message();
        flood.emplace_back(std::move(*s));
    }
    // The ones beyond this process's share hear why.
    size_t turned_away = 0;
    for (auto& c : flood) {
        auto m = c.receive(50);
        if (!m || m->type() != ndisshm::ipc::MessageType::Error) continue;
        const auto e = m->as<ndisshm::ipc::ErrorMessage>();
        EXPECT_EQ(e.code, static_cast<uint32_t>(NDIS_STATUS_RESOURCES));
        EXPECT_NE(m->error_reason().find("too many handshakes pending from process"), std::string::npos)
            << m->error_reason();
        ++turned_away;
    }
    EXPECT_EQ(turned_away, 40u - 4u);
    // An honest guest of another process is not kept out, though the flood's
    // four still hold their slots (their deadline is 300 ms away at most).
    const auto start = std::chrono::steady_clock::now();
    auto honest = spawn_guest("honest");
    const uint32_t q = wait_attached(*honest);
    ASSERT_NE(q, 0u);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    deliver_and_check(*honest, q, 10, 10);
}

// A host at its maximum of guests says so: ERROR with NDIS_STATUS_RESOURCES
// and the reason, which the guest library reports as a refusal (not "host
// gone").
TEST_F(HubTest, AFullHostRefusesWithResourcesAndSaysWhy) {
    hub_->stop();
    hub_.reset();
    ndisshm::ipc::GuestHubConfig c;
    c.socket_path = dir_ + "/run/host.sock";
    c.miniport.blocks_per_queue = kBlocksPerQueue;
    c.miniport.block_bytes = 64 * 1024;
    c.max_guests = 1;
    c.log = [](const std::string&) {};
    auto hub = ndisshm::ipc::GuestHub::start(adapter_, c);
    ASSERT_TRUE(hub.ok()) << hub.error().message();
    hub_ = std::move(*hub);
    auto first = spawn_guest("first");
    ASSERT_NE(wait_attached(*first), 0u);
    auto second = std::make_unique<ChildProcess>(
        std::vector<std::string>{NDISSHM_MULTIPROCESS_PEER, "library-guest", socket(), "second"});
    auto e = second->wait_line("CLOSED ");
    ASSERT_TRUE(e) << second->transcript();
    EXPECT_NE(e->find("host refused: the host runs its maximum of 1 guests"), std::string::npos) << *e;
    EXPECT_NE(e->find("0xC000009A"), std::string::npos) << "NDIS_STATUS_RESOURCES: " << *e;
    EXPECT_EQ(second->wait_exit(), 3);
}

}  // namespace
}  // namespace ndisshm_mp
