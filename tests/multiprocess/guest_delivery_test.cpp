// Zero-copy receive into real guest processes: each guest's queue buffers are
// carved out of its own memfd, the host writes packets there, and the guest
// reads and checks them in place.
#include "hub_fixture.hpp"

namespace ndisshm_mp {
namespace {

TEST_F(HubTest, TwoGuestsReceivePacketsInPlaceInTheirOwnMemory) {
    auto a = spawn_guest("a");
    auto b = spawn_guest("b");
    const uint32_t qa = wait_attached(*a);
    const uint32_t qb = wait_attached(*b);
    ASSERT_NE(qa, 0u);
    ASSERT_NE(qb, 0u);
    ASSERT_NE(qa, qb);
    EXPECT_EQ(adapter_blocks(), 2 * kGuestBlocks);
    // Interleaved, so a packet for one landing in the other's memory would show.
    for (int round = 1; round <= 20; ++round) {
        deliver_and_check(*a, qa, 5, round * 5);
        deliver_and_check(*b, qb, 5, round * 5);
    }
    EXPECT_EQ(hub_->stats().delivered, 200u);
    EXPECT_TRUE(hub_->wait_until([&] { return hub_->stats().returned == 200; }, 5000)) << "every slot given back";
    EXPECT_TRUE(maps_guest_memory("a"));
    EXPECT_TRUE(maps_guest_memory("b"));
}

TEST_F(HubTest, BlocksCarryGuestPhysicalAddressesAndLieInTheGuestsMemory) {
    auto g = spawn_guest("phys");
    const uint32_t q = wait_attached(*g);
    ASSERT_NE(q, 0u);
    const auto guests = hub_->guests();
    ASSERT_EQ(guests.size(), 1u);
    EXPECT_EQ(guests[0].guest_physical_base, 0x100000000ull);
    for (const auto& b : hub_->miniport().blocks(q)) {
        ndisshm_block_info info{};
        ASSERT_EQ(ndisshm_block_get_info(adapter_, reinterpret_cast<NDIS_HANDLE>(b.handle), &info), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(info.queue_id, q);
        EXPECT_STREQ(info.provider, "guest-hub");
        // SG element = guest physical base + offset in the guest's memory.
        EXPECT_GE(info.first_address, 0x100000000ull);
        EXPECT_LT(info.first_address, 0x100000000ull + guests[0].memory_bytes);
    }
    ndisshm_usage_stats qs{};
    ASSERT_EQ(ndisshm_queue_get_stats(adapter_, q, &qs), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(qs.blocks, kGuestBlocks) << "the receive blocks and the rings";
}

TEST_F(HubTest, PacketsOfEverySizeUpToASlotArriveIntact) {
    auto g = spawn_guest("sizes");
    const uint32_t q = wait_attached(*g);
    ASSERT_NE(q, 0u);
    uint64_t total = 0;
    for (size_t len : {8, 64, 1500, 2047, 2048}) deliver_and_check(*g, q, 3, total += 3, len);
    // Larger than a slot: dropped, never written past the slot.
    const auto big = make_packet(999, 2049);
    EXPECT_EQ(hub_->deliver(q, big), ndisshm::ipc::Delivery::Dropped);
}

// The Hyper-V shape (spec section 7): the switch's binding owns the guests'
// queues, so queue 0, which no binding owns, gets NDIS's own memory, and its
// SharedMemoryHandle stays NULL; the guest provider is never asked.
TEST_F(HubTest, DefaultQueueGetsNdisMemoryNotTheSwitchsProvider) {
    auto g = spawn_guest("q0");
    ASSERT_NE(wait_attached(*g), 0u);
    NDIS_SHARED_MEMORY_PARAMETERS p;
    NdisZeroMemory(&p, sizeof(p));
    p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.QueueId = NDIS_DEFAULT_RECEIVE_QUEUE_ID;
    p.PreferredNode = MM_ANY_NODE_OK;
    p.Usage = NdisSharedMemoryUsageXmit;
    p.Length = 8192;
    std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(2));
    p.SGListBuffer = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
    p.SGListBuffer->NumberOfElements = 2;
    p.SGListBufferLength = static_cast<ULONG>(sg.size());
    NDIS_HANDLE h = nullptr;
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(p.SGListBuffer->NumberOfElements, 1u);
    // Host memory: IOVA = VA, never the guest's physical range.
    EXPECT_EQ(static_cast<uint64_t>(p.SGListBuffer->Elements[0].Address.QuadPart),
              reinterpret_cast<uintptr_t>(p.VirtualAddress));
    std::memset(p.VirtualAddress, 0xab, 8192);
    EXPECT_EQ(p.SharedMemoryHandle, nullptr) << "NDIS's own memory has no SharedMemoryHandle";
    EXPECT_NE(h, nullptr) << "but an allocation handle, as every block";
    EXPECT_EQ(hub_->provider().stats().host_blocks, 0u) << "the switch's provider serves only its own queues";
    ndisshm_block_info info{};
    ASSERT_EQ(ndisshm_block_get_info(adapter_, h, &info), NDIS_STATUS_SUCCESS);
    EXPECT_STREQ(info.provider, "default");
    NdisFreeSharedMemory(adapter_, h);
}

TEST_F(HubTest, HostShutdownTellsEachGuestByeAndFreesEveryBlockThroughItsProvider) {
    auto a = spawn_guest("a");
    auto b = spawn_guest("b");
    const uint32_t qa = wait_attached(*a);
    ASSERT_NE(qa, 0u);
    ASSERT_NE(wait_attached(*b), 0u);
    deliver_and_check(*a, qa, 10, 10);
    hub_->stop();
    EXPECT_TRUE(a->wait_line("BYE")) << a->transcript();
    EXPECT_TRUE(b->wait_line("BYE")) << b->transcript();
    EXPECT_EQ(a->wait_exit(), 0);
    EXPECT_EQ(b->wait_exit(), 0);
    EXPECT_EQ(adapter_blocks(), 0u);
    EXPECT_EQ(hub_->provider().stats().guests, 0u);
    EXPECT_FALSE(std::filesystem::exists(socket())) << "socket file left behind";
}

TEST_F(HubTest, LookaheadSplitParametersReachTheQueueAndTheGuest) {
    hub_->stop();
    hub_.reset();
    start_hub(5000, ndisshm_queue_params{sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 256});
    auto g = spawn_guest("split");
    const uint32_t q = wait_attached(*g, kBlocksPerQueue + 1);  // and one lookahead block
    ASSERT_NE(q, 0u);
    ndisshm_queue_params got{};
    int complete = 0;
    ASSERT_EQ(ndisshm_queue_get_params(adapter_, q, &got, &complete), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(got.flags, static_cast<uint32_t>(NDISSHM_QUEUE_LOOKAHEAD_SPLIT));
    EXPECT_EQ(got.lookahead_size, 256u);
    EXPECT_EQ(complete, 1);
    EXPECT_NE(g->transcript().find("QUEUE " + std::to_string(q) + " 2 256"), std::string::npos) << g->transcript();
    deliver_and_check(*g, q, 5, 5);
}

TEST_F(HubTest, SocketIsPrivateToItsOwner) {
    namespace fs = std::filesystem;
    const auto sock = fs::status(socket()).permissions();
    EXPECT_EQ(sock & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
    const auto dir = fs::status(fs::path(socket()).parent_path()).permissions();
    EXPECT_EQ(dir, fs::perms::owner_all);
}

}  // namespace
}  // namespace ndisshm_mp

namespace ndisshm_mp {
namespace {

// The guest library, through the `ndisshm guest` command, against the hub:
// the two ends of the protocol written apart agree.
TEST_F(HubTest, TheNdisshmGuestCommandReceivesAndSaysByeAtItsPacketLimit) {
#ifndef NDISSHM_CLI
    GTEST_SKIP() << "the CLI is not built (NDISSHM_BUILD_TOOLS=OFF)";
#else
    ChildProcess g({NDISSHM_CLI, "guest", "--socket", socket(), "--name", "cli", "--memory", "8M", "--packets", "30",
                    "--json"});
    ASSERT_TRUE(g.started());
    ASSERT_TRUE(hub_->wait_until([&] { return hub_->stats().running == 1; }, 5000));
    const uint32_t q = hub_->guests().at(0).queue_id;
    for (uint64_t seq = 1; seq <= 30; ++seq) {
        const auto p = make_packet(seq, 1500);
        bool sent = false;
        for (int tries = 0; tries < 2000 && !sent; ++tries) {
            sent = hub_->deliver(q, p) == ndisshm::ipc::Delivery::Delivered;
            if (!sent) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        ASSERT_TRUE(sent);
    }
    EXPECT_EQ(g.wait_exit(), 0) << g.transcript();
    ASSERT_TRUE(wait_closed(1));
    EXPECT_NE(last_reason().find("BYE"), std::string::npos) << last_reason();
    EXPECT_EQ(adapter_blocks(), 0u);
    EXPECT_EQ(hub_->stats().refused, 0u);
#endif
}

}  // namespace
}  // namespace ndisshm_mp
