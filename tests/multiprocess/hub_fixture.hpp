// A host in the test process (runtime, adapter "nic0", guest hub on a socket
// in a private directory) and guests as real processes (multiprocess_peer).
// TearDown stops the hub and holds the books to account: no block left on
// the adapter, no verifier violation, no guest memory still mapped.
#pragma once

#include <gtest/gtest.h>
#include <ndisshm/host.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "hub/guest_hub.hpp"
#include "packet_format.hpp"

namespace ndisshm_mp {

using ndisshm::support::ChildProcess;
using ndisshm::support::make_packet;

inline constexpr uint32_t kBlocksPerQueue = 4;
// Each guest's queue also has its rings: one block of Usage Other.
inline constexpr uint32_t kGuestBlocks = kBlocksPerQueue + 1;

class HubTest : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("NDISSHM_QUIET", "1", 1);
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.report_to_stderr = 0;
        ASSERT_EQ(ndisshm_runtime_create(&c, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ndisshm_runtime_set_violation_callback(rt_, &HubTest::on_violation, this);
        ASSERT_EQ(ndisshm_adapter_create(rt_, "nic0", &adapter_), NDIS_STATUS_SUCCESS);
        char dir[] = "/tmp/ndisshm-mp-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        start_hub();
    }

    void start_hub(int handshake_timeout_ms = 5000, ndisshm_queue_params queue_params = {sizeof(ndisshm_queue_params), 0, 0},
                   std::function<void(const ndisshm::ipc::GuestInfo&, ndisshm_queue_params&)> choose = {}) {
        ndisshm::ipc::GuestHubConfig c;
        c.queue_params = queue_params;
        c.choose_queue_params = std::move(choose);
        c.socket_path = dir_ + "/run/host.sock";  // listen_at makes run/ 0700
        c.miniport.blocks_per_queue = kBlocksPerQueue;
        c.miniport.block_bytes = 64 * 1024;
        c.miniport.slot_bytes = 2048;
        c.handshake_timeout_ms = handshake_timeout_ms;
        c.log = [this](const std::string& line) {
            std::lock_guard lock(mu_);
            log_.push_back(line);
        };
        auto hub = ndisshm::ipc::GuestHub::start(adapter_, c);
        ASSERT_TRUE(hub.ok()) << hub.error().message();
        hub_ = std::move(*hub);
    }

    void TearDown() override {
        if (hub_) hub_->stop();
        if (adapter_ != nullptr) {
            ndisshm_adapter_stats s{};
            ASSERT_EQ(ndisshm_adapter_get_stats(adapter_, &s), NDIS_STATUS_SUCCESS);
            EXPECT_EQ(s.total.blocks, 0u) << "blocks left on the adapter after the hub stopped";
            EXPECT_EQ(s.total.allocations, s.total.frees);
        }
        EXPECT_EQ(violations(), 0u) << first_violation_;
        EXPECT_FALSE(maps_guest_memory("")) << "guest memory still mapped after the hub stopped";
        hub_.reset();
        ndisshm_adapter_destroy(adapter_);
        ndisshm_runtime_destroy(rt_);
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    std::string socket() const { return hub_->socket_path(); }

    std::unique_ptr<ChildProcess> spawn_guest(const std::string& name, std::vector<std::string> args = {}) {
        std::vector<std::string> argv = {NDISSHM_MULTIPROCESS_PEER, "guest", socket(), name};
        argv.insert(argv.end(), args.begin(), args.end());
        auto c = std::make_unique<ChildProcess>(argv);
        EXPECT_TRUE(c->started());
        return c;
    }

    // A guest that got its queue, all its `blocks` receive blocks (a split
    // queue has a lookahead block more) and its rings; returns the queue id.
    uint32_t wait_attached(ChildProcess& g, uint32_t blocks = kBlocksPerQueue) {
        auto q = g.wait_line("QUEUE ");
        EXPECT_TRUE(q) << g.transcript();
        if (!q) return 0;
        for (uint32_t i = 0; i < blocks; ++i) EXPECT_TRUE(g.wait_line("BLOCK ")) << g.transcript();
        EXPECT_TRUE(g.wait_line("RINGS ")) << g.transcript();
        const auto id = static_cast<uint32_t>(std::stoul(q->substr(6)));
        // The guest may hear of its last block just before the hub counts it running.
        EXPECT_TRUE(hub_->wait_until([&] { return hub_->miniport().stats(id).slots != 0; }, 5000));
        return id;
    }

    // Delivers `count` checked packets to `queue` and waits until the guest
    // has seen `expect_total` packets, all good.
    void deliver_and_check(ChildProcess& g, uint32_t queue, uint64_t count, uint64_t expect_total, size_t length = 0) {
        for (uint64_t i = 0; i < count; ++i) {
            const uint64_t seq = next_seq_++;
            const auto p = make_packet(seq, length != 0 ? length : 64 + seq % 1900);
            // A full ring (the guest has not given slots back yet) is retried.
            bool sent = false;
            for (int tries = 0; tries < 2000 && !sent; ++tries) {
                const auto d = hub_->deliver(queue, p);
                ASSERT_NE(d, ndisshm::ipc::Delivery::NoGuest) << last_reason() << "\n" << g.transcript();
                sent = d == ndisshm::ipc::Delivery::Delivered;
                if (!sent) std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            ASSERT_TRUE(sent) << "the guest never gave a slot back";
        }
        const std::string want = "GOT " + std::to_string(expect_total) + " 0";
        EXPECT_TRUE(g.wait_line(want)) << "waiting for '" << want << "'\n" << g.transcript();
    }

    bool wait_closed(uint64_t closed, int timeout_ms = 5000) {
        return hub_->wait_until([&] { return hub_->stats().closed >= closed; }, timeout_ms);
    }

    std::string last_reason() {
        auto r = hub_->closed_reasons();
        return r.empty() ? "" : r.back();
    }

    uint64_t adapter_blocks() {
        ndisshm_adapter_stats s{};
        EXPECT_EQ(ndisshm_adapter_get_stats(adapter_, &s), NDIS_STATUS_SUCCESS);
        return s.total.blocks;
    }

    // Whether this process maps the memfd of guest `name` ("": any guest).
    static bool maps_guest_memory(const std::string& name) {
        std::ifstream maps("/proc/self/maps");
        const std::string needle = "/memfd:mp-guest-" + name;
        for (std::string line; std::getline(maps, line);)
            if (line.find(needle) != std::string::npos) return true;
        return false;
    }

    uint64_t violations() const {
        uint64_t n = 0;
        for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
            n += ndisshm_runtime_violation_count(rt_, static_cast<ndisshm_violation_kind>(k));
        return n;
    }

    static void on_violation(void* self, const ndisshm_violation* v) {
        auto* t = static_cast<HubTest*>(self);
        std::lock_guard lock(t->mu_);
        if (t->first_violation_.empty()) t->first_violation_ = v->message;
    }

    ndisshm_runtime* rt_ = nullptr;
    NDIS_HANDLE adapter_ = nullptr;
    std::string dir_;
    std::unique_ptr<ndisshm::ipc::GuestHub> hub_;
    std::mutex mu_;
    std::vector<std::string> log_;
    std::string first_violation_;
    uint64_t next_seq_ = 1;
};

}  // namespace ndisshm_mp
