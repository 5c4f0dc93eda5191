// A host and a guest in one process, through their real code paths: the hub
// (GuestHub, its thread and socket) on an adapter of a runtime, and a guest
// of the guest library (ndisshm_guest_*) connecting to it over the Unix
// socket. One run: the hub starts; the guest makes its memory, connects,
// hands the memory over and gets its queue's blocks; the host delivers
// packets, the guest reads them and gives them back; then one side ends it
// (the guest says BYE, or the host stops). Both sides' system calls go
// through src/os/, so a fault armed there lands on either side.
#pragma once

#include <gtest/gtest.h>
#include <ndisshm/guest.h>
#include <ndisshm/host.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "faults/fault_support.hpp"
#include "hub/guest_hub.hpp"

namespace ndisshm::test {

inline constexpr uint32_t kGuestBlocks = 2;
inline constexpr int kPackets = 4;
inline constexpr int kWaitMs = 2000;     // for what happens unless the fault stopped it
inline constexpr int kConnectMs = 1000;  // the guest's handshake; the hub gives up on it after 500 ms

class GuestRun {
public:
    enum class Ending { GuestSaysBye, HostStops };
    struct Outcome {
        bool hub_started = false;
        bool attached = false;      // the guest got its queue and every block
        uint64_t packets = 0;       // read by the guest
        NDIS_STATUS last = NDIS_STATUS_SUCCESS;
        bool clean = false;         // everything above, all packets delivered and returned, a clean end
    };

    GuestRun() {
        ndisshm_runtime_config c;
        ndisshm_runtime_config_init(&c);
        c.report_to_stderr = 0;
        EXPECT_EQ(ndisshm_runtime_create(&c, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ndisshm_runtime_set_violation_callback(rt_, &GuestRun::on_violation, this);
        EXPECT_EQ(ndisshm_adapter_create(rt_, "nic0", &adapter_), NDIS_STATUS_SUCCESS);
        char dir[] = "/tmp/ndisshm-faults-XXXXXX";
        EXPECT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        fds_before_ = open_fds();
    }
    ~GuestRun() {
        hub_.reset();
        ndisshm_adapter_destroy(adapter_);
        ndisshm_runtime_destroy(rt_);
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    // The run; faults armed by the caller land anywhere in it.
    Outcome execute(Ending ending) {
        Outcome o;
        o.hub_started = start_hub();
        if (!o.hub_started) return o;
        Guest g = connect_guest("g1");
        o.attached = g.attached;
        o.last = g.status;
        bool all_returned = false;
        if (g.attached) {
            exchange(g);
            o.packets = g.packets();
            o.last = g.status;
            // Every packet back, unless the session ended meanwhile (then waiting is pointless).
            hub_->wait_until([&] { return hub_->stats().returned >= kPackets || sessions_ended(); }, kWaitMs);
            all_returned = hub_->stats().returned >= kPackets;
        }
        if (ending == Ending::GuestSaysBye) {
            if (g.guest != nullptr) ndisshm_guest_close(g.guest);  // BYE
            hub_->wait_until([&] { return sessions_ended(); }, kWaitMs);
        }
        record_guest_error(g);
        const auto st = hub_->stats();
        o.clean = o.attached && o.packets == kPackets && all_returned && st.refused == 0 &&
                  (o.last == NDIS_STATUS_SUCCESS || o.last == NDISSHM_STATUS_TIMEOUT);
        g.destroy();
        return o;
    }

    // The fault hit the hub thread's poll (guest_hub.cpp's run() logs it, waits and polls again).
    bool hub_poll_failed() const { return text().find("hub: poll failed") != std::string::npos; }

    // After the faulted run, the host still serves a new guest, start to end (faults disarmed by then),
    // with the same hub unless the fault kept it from starting.
    void expect_recovers() {
        if (hub_ == nullptr) {
            ASSERT_TRUE(start_hub()) << text();
        }
        Guest g = connect_guest("g2");
        ASSERT_TRUE(g.attached) << "a new guest after the fault: " << ndisshm_status_name(g.status) << "\n"
                                << text();
        exchange(g);
        EXPECT_EQ(g.packets(), static_cast<uint64_t>(kPackets)) << text();
        g.destroy();
    }

    // The host stops; then nothing of either side may be left.
    void expect_clean_end() {
        if (hub_ != nullptr) hub_->stop();
        ndisshm_adapter_stats s{};
        ASSERT_EQ(ndisshm_adapter_get_stats(adapter_, &s), NDIS_STATUS_SUCCESS);
        EXPECT_EQ(s.total.blocks, 0u) << "blocks left on the adapter after the hub stopped";
        EXPECT_EQ(s.total.allocations, s.total.frees);
        EXPECT_EQ(s.queues, 1u) << "guest queues left on the adapter";
        EXPECT_EQ(violations_, 0u) << last_violation_;
        if (hub_ != nullptr) {
            const auto st = hub_->stats();
            EXPECT_EQ(st.closed, st.accepted) << "sessions left open";
        }
        hub_.reset();
        EXPECT_EQ(mappings_of("ndisshm-guest-"), 0) << "guest memory still mapped";
        EXPECT_EQ(open_fds(), fds_before_) << "file descriptors leaked\n" << text();
    }

    // Everything either side said: hub log lines, why sessions ended, the guest's last error.
    std::string text() const {
        std::lock_guard lock(mu_);
        std::string all;
        if (hub_ != nullptr) {
            const auto st = hub_->stats();
            all += "hub: accepted " + std::to_string(st.accepted) + " closed " + std::to_string(st.closed) +
                   " refused " + std::to_string(st.refused) + " delivered " + std::to_string(st.delivered) +
                   " dropped " + std::to_string(st.dropped) + " returned " + std::to_string(st.returned) + "\n";
        }
        for (const auto& l : log_) all += l + "\n";
        if (hub_ != nullptr)
            for (const auto& r : hub_->closed_reasons()) all += "closed: " + r + "\n";
        return all;
    }

private:
    // One guest of the guest library; destroyed (BYE, memory unmapped) with this object.
    struct Guest {
        std::string name;
        ndisshm_guest* guest = nullptr;
        NDIS_STATUS status = NDIS_STATUS_SUCCESS;
        bool attached = false;
        char error[256] = "";  // why the last guest call failed
        Guest() = default;
        Guest(Guest&& o) noexcept
            : name(std::move(o.name)), guest(std::exchange(o.guest, nullptr)), status(o.status), attached(o.attached) {
            std::memcpy(error, o.error, sizeof(error));
        }
        Guest& operator=(Guest&&) = delete;
        ~Guest() { destroy(); }
        uint64_t packets() const {
            ndisshm_guest_stats s{};
            if (guest != nullptr) ndisshm_guest_get_stats(guest, &s);
            return s.packets;
        }
        bool ended() const { return status != NDIS_STATUS_SUCCESS && status != NDISSHM_STATUS_TIMEOUT; }
        void destroy() {
            if (guest != nullptr) ndisshm_guest_destroy(guest);
            guest = nullptr;
        }
    };

    static void on_violation(void* context, const ndisshm_violation* v) {
        auto* self = static_cast<GuestRun*>(context);
        ++self->violations_;
        self->last_violation_ = v->message;
    }
    bool sessions_ended() const {
        const auto st = hub_->stats();
        return st.closed >= st.accepted;
    }
    void say(const std::string& line) {
        std::lock_guard lock(mu_);
        log_.push_back(line);
    }

    bool start_hub() {
        ndisshm::ipc::GuestHubConfig c;
        c.socket_path = dir_ + "/run/host.sock";
        c.miniport.blocks_per_queue = kGuestBlocks;
        c.miniport.block_bytes = 64 * 1024;
        c.miniport.slot_bytes = 2048;
        c.handshake_timeout_ms = 500;
        c.log = [this](const std::string& line) { say("hub: " + line); };
        auto hub = ndisshm::ipc::GuestHub::start(adapter_, c);
        if (!hub.ok()) {
            say("hub start: " + hub.error().message());
            return false;
        }
        hub_ = std::move(*hub);
        return true;
    }

    Guest connect_guest(const char* name) {
        Guest g;
        g.name = name;
        char error[256] = "";
        ndisshm_guest_config c;
        ndisshm_guest_config_init(&c);
        c.name = name;
        c.memory_bytes = 1 << 20;
        (void)ndisshm_guest_create(&c, &g.guest, error, sizeof(error));
        if (g.guest == nullptr) {
            say(std::string("guest create: ") + error);
            g.status = NDIS_STATUS_FAILURE;
            return g;
        }
        g.status = ndisshm_guest_connect(g.guest, hub_->socket_path().c_str(), kConnectMs, g.error, sizeof(g.error));
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
        while (!g.ended() && std::chrono::steady_clock::now() < deadline) {
            ndisshm_guest_stats s{};
            ndisshm_guest_get_stats(g.guest, &s);
            if (s.queues == 1 && s.blocks == kGuestBlocks) {
                g.attached = true;
                break;
            }
            g.status = ndisshm_guest_poll(g.guest, 50, g.error, sizeof(g.error));
        }
        record_guest_error(g);
        return g;
    }

    // kPackets packets to the guest's queue, read and given back by the guest.
    void exchange(Guest& g) {
        // The guest may see its blocks a moment before the hub lists it as running.
        uint32_t queue = 0;
        hub_->wait_until(
            [&] {
                for (const auto& info : hub_->guests())
                    if (info.name == g.name) queue = info.queue_id;
                return queue != 0;
            },
            kWaitMs);
        if (queue == 0) return;
        std::vector<std::byte> packet(256, std::byte{0x5A});
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
        // Dropped until the queue's buffers are all there (the guest may see them first), and whenever a
        // send finds the guest's socket full: a NIC drops then too, and the next packet may go through.
        for (int i = 0; i < kPackets && std::chrono::steady_clock::now() < deadline;) {
            const auto d = hub_->deliver(queue, packet);
            if (d == ndisshm::ipc::Delivery::NoGuest) break;
            if (d == ndisshm::ipc::Delivery::Delivered) ++i;
            else std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        while (!g.ended() && g.packets() < static_cast<uint64_t>(kPackets) &&
               hub_->stats().delivered > g.packets() && std::chrono::steady_clock::now() < deadline)
            g.status = ndisshm_guest_poll(g.guest, 50, g.error, sizeof(g.error));
        record_guest_error(g);
    }

    void record_guest_error(const Guest& g) {
        if (g.guest == nullptr || !g.ended()) return;
        say(std::string("guest ") + ndisshm_status_name(g.status) + ": " + g.error);
    }

    ndisshm_runtime* rt_ = nullptr;
    NDIS_HANDLE adapter_ = nullptr;
    std::string dir_;
    size_t fds_before_ = 0;
    std::unique_ptr<ndisshm::ipc::GuestHub> hub_;
    mutable std::mutex mu_;
    std::vector<std::string> log_;
    uint64_t violations_ = 0;
    std::string last_violation_;
};

}  // namespace ndisshm::test
