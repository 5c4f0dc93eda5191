// The afxdp suite's common ground: real kernel packets on a private veth
// wire (its own two network namespaces, removed even when a test fails),
// read through AF_XDP into NDIS shared memory.
//
// A test skips, with the precise reason, only where the machine forbids what
// it needs: root, network namespaces, AF_XDP sockets. CI runs as root and
// permits all three, so there the suite runs. Anything else that fails
// (a veth that cannot be made, an XDP program that will not load) fails.
#pragma once

#include <gtest/gtest.h>
#include <ndisshm/host.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hub/afxdp_hub_nic.hpp"
#include "os/netns.hpp"
#include "packet_format.hpp"

namespace ndisshm_afxdp {

using Kind = ndisshm::support::FrameKind;
using Parsed = ndisshm::support::ParsedFrame;
using ndisshm::support::make_packet;
using ndisshm::support::parse_frame;
inline constexpr uint16_t kPort = ndisshm::support::kUdpPort;

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class NetTest : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("NDISSHM_QUIET", "1", 1);
        if (const std::string why = ndisshm::nic::AfxdpHubNic::unavailable_reason(); !why.empty())
            GTEST_SKIP() << "AF_XDP on a veth pair cannot run here: " << why;
        ndisshm::os::VethLinks::sweep_stale();  // what a killed run of this suite left behind
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.report_to_stderr = 0;
        ASSERT_EQ(ndisshm_runtime_create(&c, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ndisshm_runtime_set_violation_callback(rt_, &NetTest::on_violation, this);
    }

    void TearDown() override {
        // Sockets before their interfaces, interfaces before the runtime.
        before_teardown();
        links_.reset();
        if (rt_ != nullptr) {
            EXPECT_EQ(violations(), 0u) << first_violation_;
            ndisshm_runtime_destroy(rt_);
        }
    }
    // For fixtures that own sockets or hubs: release them here.
    virtual void before_teardown() {}

    void make_links(uint32_t count) {
        auto l = ndisshm::os::VethLinks::create("xt", count);
        ASSERT_TRUE(l.ok()) << l.error().message();
        links_ = std::move(*l);
    }

    uint64_t violations() const {
        uint64_t n = 0;
        for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
            n += ndisshm_runtime_violation_count(rt_, static_cast<ndisshm_violation_kind>(k));
        return n;
    }
    static void on_violation(void* self, const ndisshm_violation* v) {
        auto* t = static_cast<NetTest*>(self);
        std::lock_guard lock(t->mu_);
        if (t->first_violation_.empty()) t->first_violation_ = v->message;
    }

    static uint64_t adapter_blocks(NDIS_HANDLE adapter) {
        ndisshm_adapter_stats s{};
        EXPECT_EQ(ndisshm_adapter_get_stats(adapter, &s), NDIS_STATUS_SUCCESS);
        return s.total.blocks;
    }

    // Waits (bounded) until `done` holds.
    static bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
        const auto end = Clock::now() + limit;
        while (Clock::now() < end) {
            if (done()) return true;
            std::this_thread::sleep_for(2ms);
        }
        return done();
    }

    ndisshm_runtime* rt_ = nullptr;
    std::unique_ptr<ndisshm::os::VethLinks> links_;
    std::mutex mu_;
    std::string first_violation_;
};

// A queue's counters, for failure messages: where packets went missing.
inline std::string describe(const ndisshm::nic::AfxdpQueueStats& s) {
    return "indicated " + std::to_string(s.indicated) + ", returned " + std::to_string(s.returned) +
           ", outstanding " + std::to_string(s.outstanding) + ", filtered " + std::to_string(s.filtered) +
           ", kernel: rx_dropped " + std::to_string(s.kernel.rx_dropped) + ", rx_ring_full " +
           std::to_string(s.kernel.rx_ring_full) + ", fill_ring_empty " +
           std::to_string(s.kernel.fill_ring_empty) + ", rx_invalid " + std::to_string(s.kernel.rx_invalid);
}

// Payload sizes that cover small, odd and full-MTU datagrams (1472 = 1500 - IPv4 - UDP).
inline size_t payload_size(uint64_t seq) {
    static constexpr size_t kSizes[] = {16, 17, 64, 255, 512, 1000, 1471, 1472};
    return kSizes[seq % std::size(kSizes)];
}

// Sends UDP datagrams seq = first .. first + count - 1, never more than
// `window` ahead of what the receiver gave back (`returned`), so no frame is
// lacking and nothing is dropped. Bounded by `limit`; returns how many went.
inline uint64_t send_paced(ndisshm::os::UdpSender& tx, uint64_t first, uint64_t count,
                           const std::function<uint64_t()>& returned, uint64_t window,
                           std::chrono::milliseconds limit = 8000ms) {
    const auto end = Clock::now() + limit;
    const uint64_t base = returned();
    uint64_t sent = 0;
    while (sent < count && Clock::now() < end) {
        if (sent - (returned() - base) >= window) {
            std::this_thread::sleep_for(50us);
            continue;
        }
        const auto p = make_packet(first + sent, payload_size(first + sent));
        auto s = tx.send(p);
        if (!s) {
            if (s.error().err == ENOBUFS || s.error().err == EAGAIN)
                continue;  // the veth's queue is full: again
            ADD_FAILURE() << s.error().message();
            break;
        }
        ++sent;
    }
    return sent;
}

// As fast as the kernel takes them, until `stop` or `limit`: the flood that
// teardown must survive. Returns how many datagrams went.
inline uint64_t flood(ndisshm::os::UdpSender& tx, const std::atomic<bool>& stop,
                      std::chrono::milliseconds limit = 5000ms) {
    std::vector<std::vector<std::byte>> payloads;
    for (uint64_t s = 1; s <= 64; ++s) payloads.push_back(make_packet(1'000'000 + s, payload_size(s)));
    std::vector<std::span<const std::byte>> spans(payloads.begin(), payloads.end());
    const auto end = Clock::now() + limit;
    uint64_t sent = 0;
    while (!stop.load() && Clock::now() < end) {
        auto n = tx.send_batch(spans);
        if (n)
            sent += *n;
        else
            std::this_thread::yield();  // ENOBUFS: the veth's queue is full
    }
    return sent;
}

}  // namespace ndisshm_afxdp
