// Reconnection against a fake host that plays each connection by script:
// which ends are tried again and which are not, and an attempt that meets a
// host going away mid-handshake. (Real hubs one after another:
// tests/unit/api/guest_reconnect_test.cpp.)
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fake_host.hpp"

namespace ndisshm::test {
namespace {

using Clock = std::chrono::steady_clock;

// Accepts connections one after another and plays scripts[i] on the i-th;
// once the scripts run out it accepts no more.
class ScriptedHost {
public:
    explicit ScriptedHost(std::vector<std::function<void(os::UniqueFd)>> scripts) {
        path_ = dir_.path() + "/host.sock";
        auto l = ipc::listen_at(path_);
        EXPECT_TRUE(l) << l.error().message();
        listener_ = std::move(*l);
        thread_ = std::thread([this, scripts = std::move(scripts)] {
            for (const auto& script : scripts) {
                auto s = ipc::accept_from(listener_.get());
                EXPECT_TRUE(s) << s.error().message();
                if (!s) return;
                script(std::move(*s));
                ++played_;
            }
        });
    }
    ~ScriptedHost() {
        if (thread_.joinable()) thread_.join();
    }
    const std::string& path() const { return path_; }
    int played() const { return played_.load(); }

private:
    test::TempDir dir_;
    std::string path_;
    os::UniqueFd listener_;
    std::thread thread_;
    std::atomic<int> played_{0};
};

void refuse(ipc::Channel& c, uint32_t code, const char* reason) { ASSERT_TRUE(c.send_error(code, reason)); }

struct Events {
    std::vector<ndisshm_guest_event_kind> kinds;
    uint32_t reconnected_id = 0, attempts = 0;
};

Guest make_reconnecting_guest(Events& ev, uint32_t reconnect_ms = 5000) {
    return Guest({.name = "vm-re", .memory_bytes = kMemory, .reconnect_ms = reconnect_ms}, {},
                 [&ev](const ndisshm_guest_event& e) {
                     ev.kinds.push_back(e.kind);
                     if (e.kind == NDISSHM_GUEST_RECONNECTED) {
                         ev.reconnected_id = e.guest_id;
                         ev.attempts = e.attempts;
                     }
                 });
}

// Polls until the status is neither SUCCESS nor TIMEOUT, or `until` holds.
NDIS_STATUS poll_until(Guest& g, const std::function<bool()>& until) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline && !until()) {
        const NDIS_STATUS s = g.poll_once(20);
        if (s != NDIS_STATUS_SUCCESS && s != NDISSHM_STATUS_TIMEOUT) return s;
    }
    return until() ? NDIS_STATUS_SUCCESS : NDISSHM_STATUS_TIMEOUT;
}

TEST(GuestReconnectScripted, ARefusalForAnythingButResourcesEndsTheSessionForGood) {
    ScriptedHost host({[](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        refuse(h.channel, 0xC0000001u, "this guest is not welcome here");  // NDIS_STATUS_FAILURE
    }});
    Events ev;
    Guest g = make_reconnecting_guest(ev);
    g.connect(host.path());
    EXPECT_EQ(poll_until(g, [] { return false; }), NDISSHM_STATUS_REFUSED);
    EXPECT_NE(g.last_error().find("not welcome"), std::string::npos) << g.last_error();
    EXPECT_EQ(g.stats().reconnect_attempts, 0u);
    EXPECT_EQ(g.stats().reconnecting, 0u);
    for (auto k : ev.kinds) EXPECT_NE(k, NDISSHM_GUEST_DISCONNECTED);
}

TEST(GuestReconnectScripted, AHostThatBreaksTheProtocolIsNotTriedAgain) {
    ScriptedHost host({[](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        ipc::Bye bye{};
        test::send_raw(h.channel.fd(), test::datagram(11, &bye, sizeof(bye), sizeof(bye), 0xBADu));
    }});
    Events ev;
    Guest g = make_reconnecting_guest(ev);
    g.connect(host.path());
    EXPECT_EQ(poll_until(g, [] { return false; }), NDISSHM_STATUS_PROTOCOL);
    EXPECT_EQ(g.stats().reconnect_attempts, 0u);
}

TEST(GuestReconnectScripted, AnAttemptThatMeetsAHostGoingMidHandshakeIsTriedAgain) {
    ScriptedHost host({
        [](os::UniqueFd s) {  // a session, then the host dies (no BYE)
            HostSide h;
            handshake(h, std::move(s));
        },
        [](os::UniqueFd s) {  // the next host dies after HELLO
            ipc::Channel c(std::move(s));
            (void)c.receive(5000);
        },
        [](os::UniqueFd s) {  // and the one after that is full, for now
            ipc::Channel c(std::move(s));
            (void)c.receive(5000);
            refuse(c, 0xC000009Au, "the host is full");
        },
        [](os::UniqueFd s) {  // this one takes it, and then goes away for good
            HostSide h;
            handshake(h, std::move(s));
            h.expect(MessageType::Bye);
        },
    });
    Events ev;
    Guest g = make_reconnecting_guest(ev);
    g.connect(host.path());
    ASSERT_EQ(poll_until(g, [&] { return g.stats().reconnects == 1; }), NDIS_STATUS_SUCCESS) << g.last_error();
    EXPECT_EQ(ev.attempts, 3u) << "gone mid-handshake, full, then in";
    EXPECT_EQ(ev.reconnected_id, 7u);
    EXPECT_EQ(g.stats().sessions_lost, 1u);
    EXPECT_EQ(g.stats().reconnect_attempts, 3u);
    ASSERT_GE(ev.kinds.size(), 2u);
    EXPECT_EQ(ev.kinds[ev.kinds.size() - 2], NDISSHM_GUEST_DISCONNECTED);
    EXPECT_EQ(ev.kinds.back(), NDISSHM_GUEST_RECONNECTED);
    g.close();  // BYE to the fourth host
}

TEST(GuestReconnectScripted, AnAttemptRefusedForGoodStopsReconnectingWithBothReasons) {
    ScriptedHost host({
        [](os::UniqueFd s) {
            HostSide h;
            handshake(h, std::move(s));
        },
        [](os::UniqueFd s) {
            ipc::Channel c(std::move(s));
            (void)c.receive(5000);
            refuse(c, 0xC00000BBu, "protocol version unsupported");  // NDIS_STATUS_NOT_SUPPORTED
        },
    });
    Events ev;
    Guest g = make_reconnecting_guest(ev);
    g.connect(host.path());
    EXPECT_EQ(poll_until(g, [] { return false; }), NDISSHM_STATUS_REFUSED);
    EXPECT_NE(g.last_error().find("without BYE"), std::string::npos) << "the loss: " << g.last_error();
    EXPECT_NE(g.last_error().find("reconnecting stopped after 1 attempt"), std::string::npos) << g.last_error();
    EXPECT_NE(g.last_error().find("protocol version unsupported"), std::string::npos) << g.last_error();
    EXPECT_EQ(g.stats().reconnecting, 0u);
}

}  // namespace
}  // namespace ndisshm::test
