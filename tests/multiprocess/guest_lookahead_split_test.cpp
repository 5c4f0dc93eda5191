// Lookahead split end to end, into real guest processes of the guest library:
// the hub splits only the queue it chooses; on it the NIC writes each packet's
// first bytes into a ReceiveLookahead block and the rest into a
// ReceivePostLookahead block, both in the guest's own memory, and the guest
// reads the packet in place across the two segments and checks every byte.
#include "hub_fixture.hpp"

namespace ndisshm_mp {
namespace {

constexpr uint32_t kLookahead = 100;

class LookaheadSplitTest : public HubTest {
protected:
    void SetUp() override {
        HubTest::SetUp();
        hub_->stop();
        hub_.reset();
        // Only the guest named "split" gets lookahead split.
        start_hub(5000, {sizeof(ndisshm_queue_params), 0, 0}, [](const ndisshm::ipc::GuestInfo& g, ndisshm_queue_params& p) {
            if (g.name == "split") p = {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, kLookahead};
        });
    }
    std::unique_ptr<ChildProcess> spawn_library_guest(const std::string& name) {
        auto c = std::make_unique<ChildProcess>(
            std::vector<std::string>{NDISSHM_MULTIPROCESS_PEER, "library-guest", socket(), name});
        EXPECT_TRUE(c->started());
        return c;
    }
    // Delivers packets of `sizes` in turn, `rounds` times; the guest must
    // report them all good, `split` of them in two segments.
    void deliver_sizes(ChildProcess& g, uint32_t queue, const std::vector<size_t>& sizes, int rounds,
                       uint64_t expect_total, uint64_t expect_split) {
        for (int r = 0; r < rounds; ++r) {
            for (size_t len : sizes) {
                const auto p = make_packet(next_seq_++, len);
                bool sent = false;
                for (int tries = 0; tries < 2000 && !sent; ++tries) {
                    const auto d = hub_->deliver(queue, p);
                    ASSERT_NE(d, ndisshm::ipc::Delivery::NoGuest) << last_reason() << "\n" << g.transcript();
                    sent = d == ndisshm::ipc::Delivery::Delivered;
                    if (!sent) std::this_thread::sleep_for(std::chrono::microseconds(200));
                }
                ASSERT_TRUE(sent) << "the guest never gave a slot back";
            }
        }
        const std::string want = "GOT " + std::to_string(expect_total) + " 0 " + std::to_string(expect_split);
        EXPECT_TRUE(g.wait_line(want)) << "waiting for '" << want << "'\n" << g.transcript();
    }
};

TEST_F(LookaheadSplitTest, AGuestReadsSplitPacketsInPlaceAcrossTheirSegments) {
    auto g = spawn_library_guest("split");
    const auto q_line = g->wait_line("QUEUE ");
    ASSERT_TRUE(q_line) << g->transcript();
    EXPECT_NE(q_line->find(" 2 100"), std::string::npos) << "QUEUE_ATTACHED says split at 100: " << *q_line;
    const uint32_t q = static_cast<uint32_t>(std::stoul(q_line->substr(6)));
    // 128 packet slots; 100-byte lookaheads rounded to 128 bytes: one block.
    int lookahead = 0, post = 0;
    for (uint32_t i = 0; i < kBlocksPerQueue + 1; ++i) {
        const auto b = g->wait_line("BLOCK ");
        ASSERT_TRUE(b) << g->transcript();
        const std::string usage = b->substr(b->rfind(' ') + 1);
        lookahead += usage == std::to_string(NdisSharedMemoryUsageReceiveLookahead);
        post += usage == std::to_string(NdisSharedMemoryUsageReceivePostLookahead);
    }
    EXPECT_EQ(lookahead, 1);
    EXPECT_EQ(post, static_cast<int>(kBlocksPerQueue));
    ASSERT_TRUE(hub_->wait_until([&] { return hub_->miniport().stats(q).slots != 0; }, 5000));

    // Around the lookahead and up to a slot: 8 .. 100 bytes fit the lookahead
    // alone (one segment), 101 and more are split. 300 rounds: every slot pair
    // is reused, so a stale half would show.
    deliver_sizes(*g, q, {8, 99, 100, 101, 1500, 2048}, 300, 1800, 900);
    const auto s = hub_->miniport().stats(q);
    EXPECT_EQ(s.split, 900u);
    EXPECT_TRUE(hub_->wait_until([&] { return hub_->miniport().stats(q).outstanding == 0; }, 5000))
        << "both segments of every packet given back";
    ndisshm_usage_stats books{};
    ASSERT_EQ(ndisshm_queue_get_stats(adapter_, q, &books), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(books.blocks, kGuestBlocks + 1);
    hub_->stop();
    EXPECT_TRUE(g->wait_line("BYE")) << g->transcript();
    EXPECT_EQ(g->wait_exit(), 0);
}

TEST_F(LookaheadSplitTest, OnlyTheChosenGuestsQueueIsSplit) {
    auto plain = spawn_library_guest("plain");
    auto split = spawn_library_guest("split");
    const auto qp_line = plain->wait_line("QUEUE ");
    const auto qs_line = split->wait_line("QUEUE ");
    ASSERT_TRUE(qp_line && qs_line) << plain->transcript() << split->transcript();
    EXPECT_NE(qp_line->find(" 0 0"), std::string::npos) << *qp_line;
    EXPECT_NE(qs_line->find(" 2 100"), std::string::npos) << *qs_line;
    const uint32_t qp = static_cast<uint32_t>(std::stoul(qp_line->substr(6)));
    const uint32_t qs = static_cast<uint32_t>(std::stoul(qs_line->substr(6)));
    for (uint32_t i = 0; i < kBlocksPerQueue; ++i)
        ASSERT_TRUE(plain->wait_line("BLOCK ")) << plain->transcript();
    for (uint32_t i = 0; i < kBlocksPerQueue + 1; ++i)
        ASSERT_TRUE(split->wait_line("BLOCK ")) << split->transcript();
    ASSERT_TRUE(hub_->wait_until([&] { return hub_->stats().running == 2; }, 5000));
    deliver_sizes(*plain, qp, {1500}, 50, 50, 0);
    deliver_sizes(*split, qs, {1500}, 50, 50, 50);
    EXPECT_EQ(adapter_blocks(), 2 * kGuestBlocks + 1);
}

}  // namespace
}  // namespace ndisshm_mp
