// A guest with reconnection on (ndisshm_guest_config.reconnect_ms) against
// real hubs of this process, one after another on the same socket: the
// session's end is followed by attempts, a new host takes the same memory
// and traffic resumes; nothing of the old session survives; the deadline
// ends it with what was tried; a full host is tried again. (A host killed
// with SIGKILL is tests/cli/reconnect_test.sh's: it needs a process to kill.)
#include <gtest/gtest.h>
#include <ndisshm/guest.h>
#include <ndisshm/hub.h>
#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/ipc_support.hpp"

namespace ndisshm::test {
namespace {

using Clock = std::chrono::steady_clock;

// What a guest saw, through its callbacks.
struct Seen {
    std::vector<ndisshm_guest_event_kind> events;
    std::string disconnect_reason;
    uint32_t reconnected_id = 0, reconnect_attempts = 0;
    uint64_t packets = 0;
    int last_first_byte = -1;
    bool held_memory_of_old_session = false;
};

class GuestReconnect : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("NDISSHM_QUIET", "1", 1);
        ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        socket_ = dir_.path() + "/host.sock";
    }
    void TearDown() override {
        for (auto* g : guests_) ndisshm_guest_destroy(g);
        ndisshm_hub_destroy(hub_);
        ndisshm_runtime_destroy(rt_);
    }

    void start_hub(uint32_t max_guests = 4) {
        ndisshm_hub_config c;
        ndisshm_hub_config_init(&c);
        c.socket_path = socket_.c_str();
        c.max_guests = max_guests;
        c.log = [](void*, const char*) {};
        char err[256] = {};
        ASSERT_EQ(ndisshm_hub_create(rt_, &c, &hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
        ASSERT_EQ(ndisshm_hub_start(hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    }
    // Stops the hub as a host that shuts down does: BYE to every guest,
    // every block freed; the books must then be empty.
    void stop_hub() {
        ndisshm_hub_stop(hub_);
        ndisshm_adapter_stats a{};
        ASSERT_EQ(ndisshm_adapter_get_stats(ndisshm_hub_adapter(hub_), &a), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(a.total.blocks, 0u) << "the stopped host left blocks behind";
        EXPECT_EQ(a.total.allocations, a.total.frees);
        ndisshm_hub_destroy(hub_);
        hub_ = nullptr;
    }

    ndisshm_guest* make_guest(const char* name, uint32_t reconnect_ms, Seen* seen) {
        ndisshm_guest_config c;
        ndisshm_guest_config_init(&c);
        c.name = name;
        c.memory_bytes = 8 << 20;
        c.reconnect_ms = reconnect_ms;
        c.context = seen;
        c.on_event = [](void* ctx, const ndisshm_guest_event* e) {
            auto* s = static_cast<Seen*>(ctx);
            s->events.push_back(e->kind);
            if (e->kind == NDISSHM_GUEST_DISCONNECTED) s->disconnect_reason = e->reason;
            if (e->kind == NDISSHM_GUEST_RECONNECTED) {
                s->reconnected_id = e->guest_id;
                s->reconnect_attempts = e->attempts;
            }
        };
        c.on_packet = [](void* ctx, const ndisshm_guest_packet* p) {
            auto* s = static_cast<Seen*>(ctx);
            ++s->packets;
            s->last_first_byte = static_cast<const unsigned char*>(p->data)[0];
        };
        ndisshm_guest* g = nullptr;
        char err[256] = {};
        EXPECT_EQ(ndisshm_guest_create(&c, &g, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
        guests_.push_back(g);
        return g;
    }

    // Polls `g` until `done` or 5 s; every status but SUCCESS/TIMEOUT fails.
    template <typename Done>
    void poll_until(ndisshm_guest* g, Done done, const char* what) {
        const auto until = Clock::now() + std::chrono::seconds(5);
        char err[256] = {};
        while (!done()) {
            ASSERT_LT(Clock::now(), until) << "timed out waiting for " << what;
            const NDIS_STATUS s = ndisshm_guest_poll(g, 20, err, sizeof(err));
            ASSERT_TRUE(s == NDIS_STATUS_SUCCESS || s == NDISSHM_STATUS_TIMEOUT) << what << ": " << err;
        }
    }
    // Polls `g` until its session ends for good (neither SUCCESS nor
    // TIMEOUT), for at most 5 s: that status, or TIMEOUT if it never ended.
    static NDIS_STATUS poll_until_ended(ndisshm_guest* g, char* err, size_t bytes) {
        const auto until = Clock::now() + std::chrono::seconds(5);
        NDIS_STATUS s = NDIS_STATUS_SUCCESS;
        while ((s == NDIS_STATUS_SUCCESS || s == NDISSHM_STATUS_TIMEOUT) && Clock::now() < until)
            s = ndisshm_guest_poll(g, 50, err, bytes);
        return s;
    }
    ndisshm_guest_stats stats(const ndisshm_guest* g) {
        ndisshm_guest_stats s{};
        ndisshm_guest_get_stats(g, &s);
        return s;
    }
    // The queue the hub gave the guest called `name` (0: none yet).
    uint32_t queue_of(const char* name) {
        ndisshm_hub_guest_info info[8] = {};
        const size_t n = ndisshm_hub_list_guests(hub_, info, 8);
        for (size_t i = 0; i < n && i < 8; ++i)
            if (std::string(info[i].name) == name) return info[i].queue_id;
        return 0;
    }
    // Delivers one packet of `fill` to `name`'s queue, once its rings are up.
    void deliver(ndisshm_guest* g, const char* name, unsigned char fill, Seen& seen) {
        std::vector<unsigned char> frame(256, fill);
        const uint64_t before = seen.packets;
        const auto until = Clock::now() + std::chrono::seconds(5);
        int r = NDISSHM_HUB_DROPPED;
        while (r != NDISSHM_HUB_DELIVERED) {
            ASSERT_LT(Clock::now(), until) << "the hub never delivered to " << name;
            const uint32_t q = queue_of(name);
            r = q == 0 ? NDISSHM_HUB_NO_GUEST : ndisshm_hub_deliver(hub_, q, frame.data(), frame.size());
            char err[256] = {};
            (void)ndisshm_guest_poll(g, 10, err, sizeof(err));  // takes the queue, blocks and rings
        }
        poll_until(g, [&] { return seen.packets > before; }, "the packet");
        EXPECT_EQ(seen.last_first_byte, fill);
    }

    TempDir dir_;
    std::string socket_;
    ndisshm_runtime* rt_ = nullptr;
    ndisshm_hub* hub_ = nullptr;
    std::vector<ndisshm_guest*> guests_;
};

TEST_F(GuestReconnect, AGuestWhoseHostStopsTakesItsMemoryToTheNextHostAndTrafficResumes) {
    start_hub();
    Seen seen;
    ndisshm_guest* g = make_guest("vm1", 10000, &seen);
    char err[256] = {};
    ASSERT_EQ(ndisshm_guest_connect(g, socket_.c_str(), 5000, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    deliver(g, "vm1", 0xa1, seen);
    const int memfd = ndisshm_guest_memory_fd(g);
    const uint32_t first_id = stats(g).guest_id;

    stop_hub();
    poll_until(g, [&] { return stats(g).reconnecting == 1; }, "the loss");
    EXPECT_NE(seen.disconnect_reason.find("BYE"), std::string::npos) << seen.disconnect_reason;
    ndisshm_guest_stats s = stats(g);
    EXPECT_EQ(s.connected, 0u);
    EXPECT_EQ(s.queues, 0u) << "the old session's queues are forgotten";
    EXPECT_EQ(s.blocks, 0u) << "and its blocks";
    EXPECT_EQ(s.sessions_lost, 1u);
    EXPECT_EQ(seen.events.back(), NDISSHM_GUEST_DISCONNECTED);

    // No host: attempts fail and the guest goes on trying.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(ndisshm_guest_poll(g, 50, err, sizeof(err)), NDISSHM_STATUS_TIMEOUT) << err;
    EXPECT_GE(stats(g).reconnect_attempts, 1u);

    start_hub();
    poll_until(g, [&] { return stats(g).connected == 1; }, "the reconnection");
    EXPECT_EQ(seen.events.back(), NDISSHM_GUEST_RECONNECTED);
    EXPECT_GE(seen.reconnect_attempts, 1u);
    EXPECT_EQ(seen.reconnected_id, stats(g).guest_id);
    EXPECT_EQ(ndisshm_guest_memory_fd(g), memfd) << "the same memory goes to the new host";
    (void)first_id;
    deliver(g, "vm1", 0xb2, seen);
    s = stats(g);
    EXPECT_EQ(s.reconnects, 1u);
    EXPECT_EQ(s.reconnecting, 0u);
    EXPECT_EQ(s.queues, 1u);
    EXPECT_EQ(s.packets, 2u);
    EXPECT_EQ(ndisshm_hub_wait_guests(hub_, 1, 1000), 1);
}

TEST_F(GuestReconnect, ReconnectionGivesUpAtItsDeadlineWithTheLossAndWhatItTried) {
    start_hub();
    Seen seen;
    ndisshm_guest* g = make_guest("vm1", 400, &seen);
    char err[512] = {};
    ASSERT_EQ(ndisshm_guest_connect(g, socket_.c_str(), 5000, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    stop_hub();
    const auto start = Clock::now();
    const NDIS_STATUS s = poll_until_ended(g, err, sizeof(err));
    const auto took = Clock::now() - start;
    ASSERT_NE(s, NDISSHM_STATUS_TIMEOUT) << "never gave up";
    EXPECT_EQ(s, NDISSHM_STATUS_HOST_BYE) << "the loss itself, as without reconnection";
    EXPECT_NE(std::string(err).find("gave up reconnecting after"), std::string::npos) << err;
    EXPECT_NE(std::string(err).find("connect("), std::string::npos) << "the last attempt's error: " << err;
    EXPECT_GE(took, std::chrono::milliseconds(350));
    const ndisshm_guest_stats st = stats(g);
    EXPECT_EQ(st.reconnecting, 0u);
    EXPECT_GE(st.reconnect_attempts, 3u) << "50, 100, 200 ms and the deadline";
    EXPECT_LE(st.reconnect_attempts, 8u) << "backoff, not a spin";
    EXPECT_EQ(st.reconnects, 0u);
    EXPECT_EQ(ndisshm_guest_poll(g, 0, err, sizeof(err)), NDIS_STATUS_FAILURE) << "the session has ended";
}

TEST_F(GuestReconnect, AFullHostSaysWhyAndIsTriedAgainUntilASlotFrees) {
    start_hub(1);
    Seen first_seen, second_seen;
    ndisshm_guest* first = make_guest("first", 0, &first_seen);
    ndisshm_guest* second = make_guest("second", 10000, &second_seen);
    char err[256] = {};
    ASSERT_EQ(ndisshm_guest_connect(first, socket_.c_str(), 5000, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    EXPECT_EQ(ndisshm_guest_connect(second, socket_.c_str(), 5000, err, sizeof(err)), NDISSHM_STATUS_REFUSED);
    EXPECT_NE(std::string(err).find("0xC000009A"), std::string::npos) << "RESOURCES, with the reason: " << err;
    EXPECT_EQ(stats(second).reconnecting, 1u) << "a full host is tried again";
    EXPECT_EQ(stats(second).sessions_lost, 0u) << "no session was lost";

    ndisshm_guest_close(first);
    poll_until(second, [&] { return stats(second).connected == 1; }, "the slot");
    EXPECT_EQ(second_seen.events.back(), NDISSHM_GUEST_RECONNECTED);
    deliver(second, "second", 0xc3, second_seen);
}

TEST_F(GuestReconnect, WithoutReconnectionTheLossEndsTheSession) {
    start_hub();
    Seen seen;
    ndisshm_guest* g = make_guest("vm1", 0, &seen);
    char err[256] = {};
    ASSERT_EQ(ndisshm_guest_connect(g, socket_.c_str(), 5000, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    stop_hub();
    EXPECT_EQ(poll_until_ended(g, err, sizeof(err)), NDISSHM_STATUS_HOST_BYE) << err;
    EXPECT_EQ(stats(g).reconnect_attempts, 0u);
    for (auto kind : seen.events) EXPECT_NE(kind, NDISSHM_GUEST_DISCONNECTED);
}

TEST_F(GuestReconnect, NobodyListeningAtConnectIsAnErrorNotARetry) {
    Seen seen;
    ndisshm_guest* g = make_guest("vm1", 10000, &seen);
    char err[256] = {};
    EXPECT_EQ(ndisshm_guest_connect(g, socket_.c_str(), 1000, err, sizeof(err)), NDIS_STATUS_FAILURE);
    EXPECT_NE(std::string(err).find("connect("), std::string::npos) << err;
    EXPECT_EQ(stats(g).reconnecting, 0u) << "a wrong path is not retried for a minute";
}

TEST_F(GuestReconnect, ItsFdWakesWhenAnAttemptIsDueAndCloseStopsTrying) {
    start_hub();
    Seen seen;
    ndisshm_guest* g = make_guest("vm1", 10000, &seen);
    char err[256] = {};
    ASSERT_EQ(ndisshm_guest_connect(g, socket_.c_str(), 5000, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    const int fd = ndisshm_guest_fd(g);
    ASSERT_GE(fd, 0);
    stop_hub();
    poll_until(g, [&] { return stats(g).reconnecting == 1; }, "the loss");
    // Asleep on the fd, as in a caller's epoll: the retry timer wakes it
    // within the backoff's cap, with no call into the library.
    pollfd p{fd, POLLIN, 0};
    const auto t0 = Clock::now();
    ASSERT_EQ(::poll(&p, 1, 3000), 1) << "the fd never woke for the next attempt";
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2500));
    const uint64_t before = stats(g).reconnect_attempts;
    EXPECT_EQ(ndisshm_guest_poll(g, 0, err, sizeof(err)), NDISSHM_STATUS_TIMEOUT) << err;
    EXPECT_EQ(stats(g).reconnect_attempts, before + 1) << "the attempt that was due was made";

    ndisshm_guest_close(g);
    EXPECT_EQ(stats(g).reconnecting, 0u);
    EXPECT_EQ(ndisshm_guest_poll(g, 0, err, sizeof(err)), NDIS_STATUS_FAILURE);
    EXPECT_NE(std::string(err).find("closed while reconnecting"), std::string::npos) << err;
}

TEST_F(GuestReconnect, PacketsHeldFromALostSessionGoStaleAndTheTableDoesNotGrow) {
    start_hub();
    Seen seen;
    ndisshm_guest* g = make_guest("vm1", 10000, &seen);
    char err[256] = {};
    ASSERT_EQ(ndisshm_guest_connect(g, socket_.c_str(), 5000, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    for (int round = 0; round < 3; ++round) {
        // One packet taken with rx_burst and held across the loss.
        std::vector<unsigned char> frame(128, static_cast<unsigned char>(0x10 + round));
        ndisshm_guest_packet held{};
        const auto until = Clock::now() + std::chrono::seconds(5);
        uint32_t got = 0;
        while (got == 0) {
            ASSERT_LT(Clock::now(), until);
            if (const uint32_t q = queue_of("vm1"); q != 0) (void)ndisshm_hub_deliver(hub_, q, frame.data(), 128);
            (void)ndisshm_guest_wait(g, 10, err, sizeof(err));
            got = ndisshm_guest_rx_burst(g, &held, 1);
        }
        EXPECT_EQ(static_cast<const unsigned char*>(held.data)[0], 0x10 + round);
        stop_hub();
        start_hub();
        poll_until(g, [&] { return stats(g).reconnects == static_cast<uint64_t>(round + 1); }, "the reconnection");
        // Its token names the old session: returning it is harmless and
        // reaches no ring of the new one.
        EXPECT_EQ(ndisshm_guest_rx_return(g, &held, 1), NDIS_STATUS_SUCCESS);
    }
    deliver(g, "vm1", 0xd4, seen);
    ndisshm_hub_stats hs{};
    ndisshm_hub_get_stats(hub_, &hs);
    EXPECT_EQ(hs.delivered, 1u) << "the new host saw one packet";
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (hs.returned < 1 && Clock::now() < until) {
        (void)ndisshm_guest_poll(g, 10, err, sizeof(err));
        ndisshm_hub_get_stats(hub_, &hs);
    }
    EXPECT_EQ(hs.returned, 1u) << "and got exactly it back: no stale cookie reached it";
}

}  // namespace
}  // namespace ndisshm::test
