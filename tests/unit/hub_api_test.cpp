// <ndisshm/hub.h> as a host author uses it, with a guest of the guest
// library on a thread of this process: life cycle, delivery on both paths
// into the guest's memory, host queues, the lists, statistics and snapshot,
// the control socket, refusals; and every block gone after stop.
#include <ndisshm/guest.hpp>
#include <ndisshm/hub.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ipc_support.hpp"

namespace ndisshm {
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
                    lengths_ += p.data.size();
                    first_ = static_cast<int>(p.data[0]);
                    ++packets_;
                });
                g.connect(socket);
                while (!stop_) {
                    const ndisshm_guest_status s = g.poll_once(50);
                    if (s != NDISSHM_GUEST_OK && s != NDISSHM_GUEST_TIMEOUT) {
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
    void join() {
        if (!thread_.joinable()) return;
        // Given time to see the host's BYE first, when the host stops.
        for (int i = 0; i < 200 && end_ < 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        stop_ = true;
        thread_.join();
    }
    std::atomic<uint64_t> packets_{0}, lengths_{0};
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
        ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt_), NDIS_STATUS_SUCCESS);
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

    ipc_test::TempDir dir_;
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
    const ndisshm_queue_params split{NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 64};
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
    EXPECT_EQ(q[1].books.blocks, 4u);
    EXPECT_EQ(q[2].queue_id, 10u);
    EXPECT_EQ(q[2].kind, uint32_t{NDISSHM_HUB_QUEUE_HOST});
    EXPECT_EQ(q[2].flags, uint32_t{NDISSHM_QUEUE_LOOKAHEAD_SPLIT});
    EXPECT_EQ(q[2].lookahead_size, 64u);
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
    char* reply = ndisshm_control_query(socket_.c_str(), "stat", 5000, err, sizeof(err));
    ASSERT_NE(reply, nullptr) << err;
    EXPECT_NE(std::string(reply).find(R"("name": "t1")"), std::string::npos);
    ndisshm_control_free(reply);
    EXPECT_EQ(ndisshm_control_query(socket_.c_str(), "reboot", 5000, err, sizeof(err)), nullptr);
    EXPECT_NE(std::string(err).find("refused"), std::string::npos) << err;

    ASSERT_EQ(ndisshm_hub_host_queue_free(hub_, 10), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(ndisshm_hub_host_queue_free(hub_, 10), NDIS_STATUS_INVALID_PARAMETER);
    ndisshm_hub_stop(hub_);
    guest.join();
    EXPECT_EQ(guest.end_.load(), NDISSHM_GUEST_HOST_BYE);
    ndisshm_adapter_stats st{};
    ASSERT_EQ(ndisshm_adapter_get_stats(ndisshm_hub_adapter(hub_), &st), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(st.total.blocks, 0u) << "every block freed through its provider";
    EXPECT_EQ(st.total.allocations, 8u) << "4 for the guest's queue, 4 for the host queue";
    EXPECT_EQ(ndisshm_hub_deliver(hub_, g.queue_id, a.data(), 1), NDISSHM_HUB_NO_GUEST);
}

}  // namespace
}  // namespace ndisshm
