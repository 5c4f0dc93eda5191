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
        EXPECT_EQ(adapter_blocks(), kBlocksPerQueue) << "the refused guest left blocks behind";
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

TEST_F(Refusal, PacketsDoneWithAnOffsetOutsideTheBlock) {
    auto bad = spawn_guest("bad", {"--behavior", "forge-offset"});
    const uint32_t q = wait_attached(*bad);
    ASSERT_NE(q, 0u);
    ASSERT_EQ(hub_->deliver(q, make_packet(1, 100)), ndisshm::ipc::Delivery::Delivered);
    ASSERT_TRUE(bad->wait_line("CLOSED")) << bad->transcript();
    ASSERT_TRUE(wait_closed(1));
    EXPECT_NE(last_reason().find("lies outside its block"), std::string::npos) << last_reason();
    EXPECT_EQ(adapter_blocks(), kBlocksPerQueue);
    deliver_and_check(*honest_, queue_, 10, 10);
}

TEST_F(Refusal, PacketsDoneNamingAnotherGuestsBlock) {
    // The honest guest's block handle, which the bad guest learns here from
    // the host's books (a real guest might guess or leak it).
    const uint64_t theirs = hub_->miniport().blocks(queue_).at(0).handle;
    auto bad = spawn_guest("bad", {"--behavior", "forge-handle", "--forge-handle", std::to_string(theirs)});
    const uint32_t q = wait_attached(*bad);
    ASSERT_NE(q, 0u);
    ASSERT_EQ(hub_->deliver(q, make_packet(1, 100)), ndisshm::ipc::Delivery::Delivered);
    ASSERT_TRUE(wait_closed(1));
    EXPECT_NE(last_reason().find("not one of its own queue's"), std::string::npos) << last_reason();
    // The honest guest's slots are untouched: everything it holds is still its own.
    EXPECT_EQ(hub_->miniport().stats(queue_).outstanding, 0u);
    deliver_and_check(*honest_, queue_, 10, 10);
}

TEST_F(Refusal, PacketsDoneGivingTheSameSlotBackTwice) {
    auto bad = spawn_guest("bad", {"--behavior", "double-done"});
    const uint32_t q = wait_attached(*bad);
    ASSERT_EQ(hub_->deliver(q, make_packet(1, 100)), ndisshm::ipc::Delivery::Delivered);
    ASSERT_TRUE(wait_closed(1));
    EXPECT_NE(last_reason().find("returned twice"), std::string::npos) << last_reason();
}

TEST_F(Refusal, PacketsDoneNamingAQueueThatIsNotItsOwn) {
    auto bad = spawn_guest("bad", {"--behavior", "wrong-queue"});
    const uint32_t q = wait_attached(*bad);
    ASSERT_EQ(hub_->deliver(q, make_packet(1, 100)), ndisshm::ipc::Delivery::Delivered);
    ASSERT_TRUE(wait_closed(1));
    EXPECT_NE(last_reason().find("not its own queue"), std::string::npos) << last_reason();
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
    auto deaf = spawn_guest("deaf", {"--behavior", "deaf"});
    const auto q = deaf->wait_line("QUEUE ");
    ASSERT_TRUE(q) << deaf->transcript();
    const auto dq = static_cast<uint32_t>(std::stoul(q->substr(6)));
    ASSERT_TRUE(hub_->wait_until([&] { return hub_->miniport().stats(dq).slots != 0; }, 5000));
    // Its ring fills (no slot comes back) and then every packet is dropped at
    // once: nothing waits on a guest that does not read.
    const auto start = std::chrono::steady_clock::now();
    uint64_t delivered = 0;
    for (uint64_t seq = 1; seq <= 2000; ++seq)
        if (hub_->deliver(dq, make_packet(seq, 64)) == ndisshm::ipc::Delivery::Delivered) ++delivered;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_EQ(delivered, hub_->miniport().stats(dq).slots);
    EXPECT_EQ(hub_->miniport().stats(dq).ring_full, 2000 - delivered);
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
