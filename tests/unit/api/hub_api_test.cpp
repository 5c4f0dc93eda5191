// <ndisshm/hub.h> as a host author uses it, with a guest of the guest
// library on a thread of this process: life cycle, delivery on both paths
// into the guest's memory, host queues, the lists, statistics and snapshot,
// the control socket, refusals; and every block gone after stop.
#include <gtest/gtest.h>
#include <ndisshm/hub.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ndisshm/guest.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/ipc_support.hpp"

namespace ndisshm::test {
namespace {

// A guest that reads each packet in place and keeps its first byte and
// length, until the host ends the session or the test does (a failed
// assertion must not leave it waiting forever).
class ThreadGuest {
public:
    explicit ThreadGuest(const std::string& socket) {
        thread_ = std::thread([this, socket] {
            try {
                Guest g({"t1", 8 << 20, 0}, [this](const GuestPacket& p) {
                    lengths_ += p.length;
                    first_ = static_cast<int>(p.data[0]);
                    if (p.segments.size() > 1) {
                        ++split_;
                        lookahead_ = p.segments[0].data.size();
                        last_byte_ = static_cast<int>(p.segments.back().data.back());
                    }
                    ++packets_;
                });
                g.connect(socket);
                while (!stop_) {
                    const NDIS_STATUS s = g.poll_once(50);
                    if (s != NDIS_STATUS_SUCCESS && s != NDISSHM_STATUS_TIMEOUT) {
                        end_ = s;
                        return;
                    }
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << "guest: " << e.what();
            }
        });
    }
    ~ThreadGuest() { join(); }
    // Leaves now, without waiting for a BYE: the host sees the socket close.
    void leave() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    void join() {
        if (!thread_.joinable()) return;
        // Given time to see the host's BYE first, when the host stops.
        for (int i = 0; i < 200 && end_ < 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        stop_ = true;
        thread_.join();
    }
    std::atomic<uint64_t> packets_{0}, lengths_{0}, split_{0}, lookahead_{0};
    std::atomic<int> last_byte_{-1};
    std::atomic<int> first_{-1};
    std::atomic<int> end_{-1};

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

class HubApi : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("NDISSHM_QUIET", "1", 1);
        ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ndisshm_runtime_set_violation_callback(rt_, &HubApi::on_violation, this);
        ndisshm_hub_config c;
        ndisshm_hub_config_init(&c);
        socket_ = dir_.path() + "/run/host.sock";
        c.socket_path = socket_.c_str();
        c.max_guests = 2;
        c.log = [](void*, const char*) {};
        char err[256] = {};
        ASSERT_EQ(ndisshm_hub_create(rt_, &c, &hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
        ASSERT_EQ(ndisshm_hub_start(hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    }
    void TearDown() override {
        ndisshm_hub_destroy(hub_);
        ndisshm_runtime_destroy(rt_);
        EXPECT_EQ(violations_, 0) << "verifier findings";
    }
    static void on_violation(void* self, const ndisshm_violation* v) {
        static_cast<HubApi*>(self)->violations_++;
        ADD_FAILURE() << v->message;
    }

    test::TempDir dir_;
    std::string socket_;
    ndisshm_runtime* rt_ = nullptr;
    ndisshm_hub* hub_ = nullptr;
    std::atomic<int> violations_{0};
};

TEST_F(HubApi, BadConfigsAreRefusedWithTheFieldNamed) {
    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    c.slot_bytes = c.block_bytes + 1;
    char err[256] = {};
    ndisshm_hub* h = nullptr;
    EXPECT_EQ(ndisshm_hub_create(rt_, &c, &h, err, sizeof(err)), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_NE(std::string(err).find("slot_bytes"), std::string::npos) << err;
    EXPECT_EQ(h, nullptr);
    c.struct_size = 8;
    EXPECT_EQ(ndisshm_hub_create(rt_, &c, &h, err, sizeof(err)), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_hub_start(hub_, err, sizeof(err)), NDIS_STATUS_FAILURE) << "a second start";
}

TEST_F(HubApi, BothPathsReachTheGuestAndTheBooksShowIt) {
    EXPECT_STREQ(ndisshm_hub_socket_path(hub_), socket_.c_str());
    EXPECT_EQ(std::string(ndisshm_hub_control_path(hub_)), dir_.path() + "/run/host.ctl");
    ThreadGuest guest(socket_);
    ASSERT_EQ(ndisshm_hub_wait_guests(hub_, 1, 5000), 1);
    ndisshm_hub_guest_info g{};
    ASSERT_EQ(ndisshm_hub_list_guests(hub_, &g, 1), 1u);
    EXPECT_STREQ(g.name, "t1");
    EXPECT_EQ(g.queue_id, 1u);

    // Host queues must stay out of the guests' range (1..2 here).
    const ndisshm_queue_params split{sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 64};
    EXPECT_EQ(ndisshm_hub_host_queue_create(hub_, 2, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_hub_host_queue_create(hub_, 0, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    ASSERT_EQ(ndisshm_hub_host_queue_create(hub_, 10, &split), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(ndisshm_hub_host_queue_create(hub_, 10, nullptr), NDIS_STATUS_INVALID_PARAMETER);

    std::vector<unsigned char> a(1500, 0xa1), b(700, 0xb2), big(4096, 0xc3);
    EXPECT_EQ(ndisshm_hub_deliver(hub_, g.queue_id, a.data(), 1500), NDISSHM_HUB_DELIVERED);
    EXPECT_EQ(ndisshm_hub_deliver(hub_, 7, a.data(), 1500), NDISSHM_HUB_NO_GUEST);
    EXPECT_EQ(ndisshm_hub_deliver(hub_, g.queue_id, big.data(), 4096), NDISSHM_HUB_DROPPED) << "larger than a slot";
    const ndisshm_hub_packet batch[] = {{b.data(), 700, 0}, {b.data(), 700, 0}};
    EXPECT_EQ(ndisshm_hub_deliver_copy_batch(hub_, 10, g.queue_id, batch, 2), 2u);
    EXPECT_EQ(ndisshm_hub_deliver_copy_batch(hub_, 11, g.queue_id, batch, 2), 0u) << "no such host queue";

    ndisshm_hub_stats s{};
    for (int i = 0; i < 500 && s.returned < 3; ++i) {
        ndisshm_hub_get_stats(hub_, &s);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(s.delivered, 3u);
    EXPECT_EQ(s.copied, 2u);
    EXPECT_EQ(s.returned, 3u);
    EXPECT_EQ(s.host_queues, 1u);
    EXPECT_EQ(guest.packets_.load(), 3u);
    EXPECT_EQ(guest.lengths_.load(), 1500u + 2 * 700u);
    EXPECT_EQ(guest.first_.load(), 0xb2);

    ndisshm_hub_queue_info q[8] = {};
    ASSERT_EQ(ndisshm_hub_list_queues(hub_, q, 8), 3u);
    EXPECT_EQ(q[0].queue_id, 0u);
    EXPECT_EQ(q[0].kind, uint32_t{NDISSHM_HUB_QUEUE_DEFAULT});
    EXPECT_EQ(q[1].kind, uint32_t{NDISSHM_HUB_QUEUE_GUEST});
    EXPECT_EQ(q[1].received, 3u);
    EXPECT_EQ(q[1].books.blocks, 5u) << "4 receive blocks and the rings";
    EXPECT_EQ(q[2].queue_id, 10u);
    EXPECT_EQ(q[2].kind, uint32_t{NDISSHM_HUB_QUEUE_HOST});
    EXPECT_EQ(q[2].flags, uint32_t{NDISSHM_QUEUE_LOOKAHEAD_SPLIT});
    EXPECT_EQ(q[2].lookahead_size, 64u);
    EXPECT_EQ(q[2].lookahead_blocks, 1u) << "64-byte slots for its 128 packets fit one block";
    EXPECT_EQ(q[2].books.blocks, 5u) << "1 lookahead + 4 post-lookahead";
    EXPECT_EQ(q[1].lookahead_blocks, 0u);
    EXPECT_EQ(q[2].received, 2u);
    EXPECT_EQ(q[2].outstanding, 0u) << "host slots go back once copied";

    // The snapshot, as snprintf and over the control socket.
    const size_t need = ndisshm_hub_snapshot_json(hub_, nullptr, 0);
    std::string text(need + 1, '\0');
    EXPECT_EQ(ndisshm_hub_snapshot_json(hub_, text.data(), text.size()), need);
    text.resize(need);
    EXPECT_NE(text.find(R"("provider": "guest-hub")"), std::string::npos) << text;
    char tiny[8];
    EXPECT_EQ(ndisshm_hub_snapshot_json(hub_, tiny, sizeof(tiny)), need);
    EXPECT_EQ(std::strlen(tiny), 7u);
    char err[256] = {};
    char* reply = nullptr;
    ASSERT_EQ(ndisshm_control_query(socket_.c_str(), "stat", 5000, &reply, err, sizeof(err)), NDIS_STATUS_SUCCESS)
        << err;
    EXPECT_STREQ(err, "") << "a success leaves no reason behind";
    EXPECT_NE(std::string(reply).find(R"("name": "t1")"), std::string::npos);
    ndisshm_control_free(reply);
    reply = reinterpret_cast<char*>(1);
    EXPECT_EQ(ndisshm_control_query(socket_.c_str(), "reboot", 5000, &reply, err, sizeof(err)),
              NDIS_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(reply, nullptr);
    EXPECT_NE(std::string(err).find("refused"), std::string::npos) << err;

    ASSERT_EQ(ndisshm_hub_host_queue_free(hub_, 10), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(ndisshm_hub_host_queue_free(hub_, 10), NDIS_STATUS_INVALID_PARAMETER);
    ndisshm_hub_stop(hub_);
    guest.join();
    EXPECT_EQ(guest.end_.load(), NDISSHM_STATUS_HOST_BYE);
    ndisshm_adapter_stats st{};
    ASSERT_EQ(ndisshm_adapter_get_stats(ndisshm_hub_adapter(hub_), &st), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(st.total.blocks, 0u) << "every block freed through its provider";
    EXPECT_EQ(st.total.allocations, 10u) << "4 + the rings for the guest's queue, 1 + 4 for the split host queue";
    EXPECT_EQ(st.by_usage[NdisSharedMemoryUsageOther].allocations, 1u) << "the guest's rings, through NDIS";
    EXPECT_EQ(st.by_usage[NdisSharedMemoryUsageReceiveLookahead].allocations, 1u);
    EXPECT_EQ(st.by_usage[NdisSharedMemoryUsageReceivePostLookahead].allocations, 4u);
    EXPECT_EQ(guest.split_.load(), 0u) << "the copy path joins what the host queue split";
    EXPECT_EQ(ndisshm_hub_deliver(hub_, g.queue_id, a.data(), 1), NDISSHM_HUB_NO_GUEST);
}

// wait_guests returns once a guest's handshake is done, rings attached: a
// delivery made the moment it returns lands. (It once counted a guest from
// its queue's assignment, a few messages earlier, and a delivery right after
// could be dropped for want of rings: seen under TSan.) Ten guests in turn.
TEST_F(HubApi, ADeliveryRightAfterWaitGuestsReturnsLands) {
    for (int turn = 0; turn < 10; ++turn) {
        {
            ThreadGuest guest(socket_);
            // Asked with no wait, again and again: it says yes at the first
            // moment it can, so that a yes too early cannot hide.
            int ready = 0;
            for (int i = 0; i < 500000 && ready == 0; ++i) ready = ndisshm_hub_wait_guests(hub_, 1, 0);
            ASSERT_EQ(ready, 1) << "turn " << turn;
            ndisshm_hub_guest_info g{};
            ASSERT_EQ(ndisshm_hub_list_guests(hub_, &g, 1), 1u);
            std::vector<unsigned char> p(200, static_cast<unsigned char>(turn));
            EXPECT_EQ(ndisshm_hub_deliver(hub_, g.queue_id, p.data(), p.size()), NDISSHM_HUB_DELIVERED)
                << "turn " << turn;
            for (int i = 0; i < 500 && guest.packets_.load() == 0; ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            EXPECT_EQ(guest.packets_.load(), 1u) << "turn " << turn;
            guest.leave();
        }
        ndisshm_hub_stats st{};
        for (int i = 0; i < 500; ++i) {
            ndisshm_hub_get_stats(hub_, &st);
            if (st.running == 0) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ASSERT_EQ(st.running, 0u) << "turn " << turn << ": the guest that left is still counted";
    }
}

// The per-guest choice: the hub asks for each guest's queue parameters, and
// a guest given lookahead split reads its packets as two segments in place.
TEST_F(HubApi, QueueParamsCallbackSplitsOnlyTheQueuesItChooses) {
    ndisshm_hub_destroy(hub_);
    hub_ = nullptr;
    struct Asked {
        uint32_t guest_id = 0, queue_id = 0;
        std::string name;
    };
    static Asked asked;
    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    c.socket_path = socket_.c_str();
    c.max_guests = 2;
    c.log = [](void*, const char*) {};
    c.queue_params = [](void* context, uint32_t guest_id, const char* name, uint32_t queue_id,
                        ndisshm_queue_params* params) {
        *static_cast<Asked*>(context) = {guest_id, queue_id, name};
        EXPECT_EQ(params->flags, 0u) << "the default: lookahead_split is 0";
        if (std::string(name) == "t1") *params = {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 100};
    };
    c.queue_params_context = &asked;
    char err[256] = {};
    ASSERT_EQ(ndisshm_hub_create(rt_, &c, &hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    ASSERT_EQ(ndisshm_hub_start(hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    ThreadGuest guest(socket_);
    ASSERT_EQ(ndisshm_hub_wait_guests(hub_, 1, 5000), 1);
    EXPECT_EQ(asked.name, "t1");
    EXPECT_EQ(asked.queue_id, 1u);
    EXPECT_NE(asked.guest_id, 0u);

    std::vector<unsigned char> p(1500);
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<unsigned char>(i * 7);
    EXPECT_EQ(ndisshm_hub_deliver(hub_, 1, p.data(), 1500), NDISSHM_HUB_DELIVERED);
    EXPECT_EQ(ndisshm_hub_deliver(hub_, 1, p.data(), 100), NDISSHM_HUB_DELIVERED)
        << "no longer than the lookahead";
    ndisshm_hub_stats s{};
    for (int i = 0; i < 500 && s.returned < 2; ++i) {
        ndisshm_hub_get_stats(hub_, &s);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(s.returned, 2u) << "both segments of the split packet went back as one";
    EXPECT_EQ(guest.packets_.load(), 2u);
    EXPECT_EQ(guest.split_.load(), 1u) << "only the 1500-byte packet is split";
    EXPECT_EQ(guest.lookahead_.load(), 100u);
    EXPECT_EQ(guest.last_byte_.load(), static_cast<int>(static_cast<unsigned char>(1499 * 7)));
    EXPECT_EQ(guest.lengths_.load(), 1600u);
    ndisshm_hub_queue_info q[4] = {};
    ASSERT_EQ(ndisshm_hub_list_queues(hub_, q, 4), 2u);
    EXPECT_EQ(q[1].flags, uint32_t{NDISSHM_QUEUE_LOOKAHEAD_SPLIT});
    EXPECT_EQ(q[1].lookahead_size, 100u);
    EXPECT_EQ(q[1].lookahead_blocks, 1u);
    ndisshm_hub_stop(hub_);
    guest.join();
}

// A caller built before queue_params passes the smaller struct: accepted,
// and whatever lies past its end is never read as a callback.
TEST_F(HubApi, ConfigOfTheSizeBeforeQueueParamsIsAccepted) {
    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    const std::string path = dir_.path() + "/old.sock";
    c.socket_path = path.c_str();
    c.serve_control = 0;
    c.queue_params = reinterpret_cast<ndisshm_hub_queue_params_fn>(uintptr_t{1});  // would crash if called
    c.struct_size = offsetof(ndisshm_hub_config, queue_params);
    char err[256] = {};
    ndisshm_hub* old = nullptr;
    ASSERT_EQ(ndisshm_hub_create(rt_, &c, &old, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    ndisshm_hub_destroy(old);
    c.struct_size = offsetof(ndisshm_hub_config, queue_params) + 4;
    EXPECT_EQ(ndisshm_hub_create(rt_, &c, &old, err, sizeof(err)), NDIS_STATUS_INVALID_PARAMETER);
}

}  // namespace
}  // namespace ndisshm::test
