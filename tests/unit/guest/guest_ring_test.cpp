// The guest library's rings against the fake host (fake_host.hpp): packets
// held from bursts until returned (in C and C++), a sleeping guest that asks
// for a kick and is woken by it, the fd for one's own epoll loop, and rings a
// host lies about (an impossible index, rings outside their block).
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "unit/guest/fake_host.hpp"

namespace ndisshm::test {
namespace {

// A C guest, in interrupt mode or busy polling, connected to the fake host at
// `path` and through the handshake's three polls (queue, block, rings);
// nullptr, with the failure recorded, if it got no further.
ndisshm_guest* connect_c_guest(const char* name, bool busy, const std::string& path) {
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = name;
    c.memory_bytes = kMemory;
    c.flags = busy ? NDISSHM_GUEST_BUSY_POLL : 0;
    ndisshm_guest* g = nullptr;
    EXPECT_EQ(ndisshm_guest_create(&c, &g, nullptr, 0), NDIS_STATUS_SUCCESS);
    if (g == nullptr) return nullptr;
    if (ndisshm_guest_connect(g, path.c_str(), 5000, nullptr, 0) != NDIS_STATUS_SUCCESS) {
        ADD_FAILURE() << name << ": connect failed";
        ndisshm_guest_destroy(g);
        return nullptr;
    }
    for (int i = 0; i < 3; ++i) EXPECT_EQ(ndisshm_guest_poll(g, 5000, nullptr, 0), NDIS_STATUS_SUCCESS);
    return g;
}

TEST(GuestRing, RxBurstHoldsPacketsUntilTheyAreReturned) {
    std::atomic<bool> attached{false}, sent{false}, returned_two{false}, taken{false};
    std::vector<uint32_t> first, second;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        while (!attached) std::this_thread::yield();
        std::memcpy(h.memory + 64, "abc", 3);
        r.send({{1, 0, 8, 1}, {1, 64, 3, 2}, {1, 128, 8, 3}});
        sent = true;
        while (!returned_two) std::this_thread::yield();
        first = r.take_completions();
        taken = true;
        second = r.await_completions(1);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);
    attached = true;
    while (!sent) std::this_thread::yield();
    ndisshm_guest_packet p[8];
    ASSERT_EQ(ndisshm_guest_rx_burst(g.handle(), p, 8), 3u);
    EXPECT_EQ(ndisshm_guest_rx_burst(g.handle(), p + 3, 5), 0u) << "nothing more ready";
    EXPECT_EQ(std::string(static_cast<const char*>(p[1].data), p[1].length), "abc") << "in place";
    EXPECT_EQ(p[1].segments[0].data, g.memory().data() + 64);
    // Returned in another order than received; the third stays held.
    const ndisshm_guest_packet two[] = {p[2], p[0]};
    EXPECT_EQ(ndisshm_guest_rx_return(g.handle(), two, 2), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(ndisshm_guest_rx_return(g.handle(), two, 2), NDIS_STATUS_SUCCESS) << "twice: ignored";
    ndisshm_guest_packet forged = p[1];
    forged.token = 0xFFFFFFFF;  // a slot that does not exist
    EXPECT_EQ(ndisshm_guest_rx_return(g.handle(), &forged, 1), NDIS_STATUS_INVALID_PARAMETER);
    returned_two = true;
    while (!taken) std::this_thread::yield();
    EXPECT_EQ(std::string(static_cast<const char*>(p[1].segments[0].data), 3), "abc") << "still valid while held";
    EXPECT_EQ(ndisshm_guest_rx_return(g.handle(), &p[1], 1), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(first, (std::vector<uint32_t>{3, 1})) << "each once, in the order returned";
    EXPECT_EQ(second, std::vector<uint32_t>{2});
}

TEST(GuestRing, TheCppGuestReceivesBurstsAndGivesThemBack) {
    std::atomic<bool> attached{false};
    std::vector<uint32_t> back;
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        while (!attached) std::this_thread::yield();
        r.send({{1, 0, 8, 5}, {1, 64, 8, 6}});
        back = r.await_completions(2);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Guest g({.name = "bursts", .memory_bytes = kMemory, .busy_poll = true});
    g.connect(host.path());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);
    attached = true;
    ASSERT_EQ(g.wait(5000), NDIS_STATUS_SUCCESS) << "packets ready";
    std::vector<ndisshm_guest_packet> p(4);
    size_t n = 0;
    for (int tries = 0; tries < 1000 && n < 2; ++tries) n += g.rx_burst(std::span(p).subspan(n));
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(p[1].offset, 64u);
    EXPECT_TRUE(g.rx_return(std::span(p).first(2)));
    ndisshm_guest_packet never{};
    never.token = 12345;
    EXPECT_FALSE(g.rx_return(std::span(&never, 1))) << "a packet this guest never handed out";
    EXPECT_GE(g.fd(), 0);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(back, (std::vector<uint32_t>{5, 6}));
}

// Interrupt mode (the default): a guest with nothing to do sleeps with
// need-wakeup set, and the host's kick wakes it; busy polling never asks.
TEST(GuestRing, ASleepingGuestAsksForAKickAndIsWokenByIt) {
    for (const bool busy : {false, true}) {
        std::atomic<bool> attached{false};
        bool flag_seen = false;
        FakeHost host([&](os::UniqueFd s) {
            HostSide h;
            HostRingEnd r = one_block_and_rings(h, std::move(s));
            while (!attached) std::this_thread::yield();
            // The guest is (or is about to be) in its wait.
            const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
            while (!flag_seen && std::chrono::steady_clock::now() < until) {
                flag_seen = (r.rx.load_flags() & ipc::kNeedWakeup) != 0;
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            r.send({{1, 0, 8, 1}});
            r.await_completions(1);
            ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
        });
        ndisshm_guest* g = connect_c_guest("sleeper", busy, host.path());
        ASSERT_NE(g, nullptr);
        attached = true;
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(ndisshm_guest_poll(g, 10000, nullptr, 0), NDIS_STATUS_SUCCESS);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << "woken, not timed out";
        ndisshm_guest_stats st;
        ndisshm_guest_get_stats(g, &st);
        EXPECT_EQ(st.packets, 1u);
        while (ndisshm_guest_poll(g, 5000, nullptr, 0) >= 0) {
        }
        host.join();
        ndisshm_guest_destroy(g);
        EXPECT_EQ(flag_seen, !busy) << (busy ? "busy polling never sets need-wakeup" : "a sleeper sets it");
    }
}

// wait reads the clock only once the rings are empty, and a busy poller only
// every 64 turns after that: the timeout must hold all the same, in both
// modes, and a zero timeout must return at once.
TEST(GuestRing, AWaitWithNothingComingEndsAtItsTimeoutInBothModes) {
    for (const bool busy : {false, true}) {
        std::atomic<bool> done{false};
        FakeHost host([&](os::UniqueFd s) {
            HostSide h;
            HostRingEnd r = one_block_and_rings(h, std::move(s));
            while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
        });
        ndisshm_guest* g = connect_c_guest(busy ? "busy-waiter" : "waiter", busy, host.path());
        ASSERT_NE(g, nullptr);
        const char* mode = busy ? "busy polling" : "interrupt mode";
        auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(ndisshm_guest_wait(g, 0, nullptr, 0), NDISSHM_STATUS_TIMEOUT) << mode;
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << mode << ": a zero timeout";
        t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(ndisshm_guest_wait(g, 50, nullptr, 0), NDISSHM_STATUS_TIMEOUT) << mode;
        const auto waited = std::chrono::steady_clock::now() - t0;
        EXPECT_GE(waited, std::chrono::milliseconds(50)) << mode << ": returned before its timeout";
        EXPECT_LT(waited, std::chrono::seconds(5)) << mode << ": kept waiting past its timeout";
        done = true;
        while (ndisshm_guest_poll(g, 5000, nullptr, 0) >= 0) {
        }
        host.join();
        ndisshm_guest_destroy(g);
    }
}

TEST(GuestRing, TheFdBecomesReadableWhenPacketsArriveAfterAnArmedWait) {
    std::atomic<bool> armed{false};
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        while (!armed) std::this_thread::yield();
        r.send({{1, 0, 8, 1}});
        r.await_completions(1);
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    for (int i = 0; i < 3; ++i) EXPECT_EQ(g.poll_once(5000), NDIS_STATUS_SUCCESS);
    const int fd = ndisshm_guest_fd(g.handle());
    ASSERT_GE(fd, 0);
    EXPECT_EQ(ndisshm_guest_wait(g.handle(), 0, nullptr, 0), NDISSHM_STATUS_TIMEOUT) << "armed, nothing yet";
    armed = true;
    auto ready = os::wait_readable(fd, 5000);
    ASSERT_TRUE(ready) << ready.error().message();
    EXPECT_TRUE(*ready) << "the kick makes the guest's fd readable";
    EXPECT_EQ(g.poll_once(0), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(seen.packets.size(), 1u);
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(ndisshm_guest_fd(g.handle()), fd) << "the same fd for the guest's life";
}

TEST(GuestRing, AnImpossibleRingIndexFromTheHostEndsTheSession) {
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        HostRingEnd r = one_block_and_rings(h, std::move(s));
        r.rx.store_producer(65);  // 65 entries ready in a ring of 64
        (void)h.channel.receive(5000);  // until the guest hangs up
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    NDIS_STATUS end = NDIS_STATUS_SUCCESS;
    while ((end = g.poll_once(5000)) >= 0) {
    }
    g.close();
    host.join();
    EXPECT_EQ(end, NDISSHM_STATUS_PROTOCOL);
    EXPECT_NE(g.last_error().find("claims 65 entries ready (it holds 64)"), std::string::npos) << g.last_error();
    EXPECT_EQ(g.stats().packets, 0u);
}

TEST(GuestRing, RingsOutsideTheirBlockOrOfAnotherUsageAreRefused) {
    std::atomic<bool> attached{false};
    FakeHost host([&](os::UniqueFd s) {
        HostSide h;
        handshake(h, std::move(s));
        h.send_block(1, 0, 4096, 1);
        const auto g512 = ipc::RingGeometry::for_size(512);
        auto bad = [&](uint64_t handle, uint32_t size, uint32_t done_offset) {
            HostRingEnd r = HostRingEnd::over(h.memory + 8192, 64);
            const int fds[] = {r.rx_kick.fd(), r.done_kick.fd()};
            EXPECT_TRUE(h.channel.send(MessageType::RingsAttached,
                                       ipc::RingsAttached{1, size, handle, done_offset, 0}, fds));
        };
        h.send_block(0x51, 8192, 4096, 1, 9);  // Usage Other, 4 KiB: too small for 512 entries
        bad(0x51, 512, g512.done_offset);
        h.send_block(0x52, 16384, 4096, 1, 4);  // a Receive block
        bad(0x52, 64, ipc::RingGeometry::for_size(64).done_offset);
        bad(0x51, 48, 0);                                   // not a power of two
        bad(0x51, 64, 0);                                   // the wrong completion offset
        bad(0x99, 64, ipc::RingGeometry::for_size(64).done_offset);  // no such block
        HostRingEnd junk = HostRingEnd::over(h.memory + 8192, 64);
        junk.send({{1, 0, 8, 1}});  // where the refused rings would be: never read
        attached = true;
        ASSERT_TRUE(h.channel.send(MessageType::Bye, ipc::Bye{}));
    });
    Seen seen;
    Guest g = make_guest(seen);
    g.connect(host.path());
    EXPECT_EQ(g.run(), NDISSHM_STATUS_HOST_BYE);
    host.join();
    EXPECT_EQ(g.stats().bad_blocks, 5u);
    EXPECT_EQ(g.stats().packets, 0u);
    EXPECT_EQ(seen.packets.size(), 0u);
}

}  // namespace
}  // namespace ndisshm::test
