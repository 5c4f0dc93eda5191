// The fake host of the guest library's tests: a thread with a listening
// socket that speaks the protocol through ipc::Channel and drives a queue's
// rings in the guest's memory (common/ring_support.hpp). Shared by
// guest_test.cpp (handshake, blocks, packets, the host's end) and
// guest_ring_test.cpp (bursts, sleeping and waking, rings the host lies about).
#pragma once

#include <ndisshm/guest.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/ipc_support.hpp"
#include "common/ring_support.hpp"

namespace ndisshm::test {

using ipc::MessageType;
inline constexpr uint64_t kMemory = 1 << 20;



// What the fake host learned in the handshake, and its view of guest memory.
struct HostSide {
    ipc::Channel channel{os::UniqueFd{}};
    ipc::Hello hello{};
    ipc::SetMemory set{};
    os::UniqueFd memfd;
    std::byte* memory = nullptr;

    ~HostSide() { os::unmap(memory, set.size); }
    void send_block(uint64_t handle, uint64_t offset, uint32_t length, uint32_t queue, uint32_t usage = 4) {
        EXPECT_TRUE(channel.send(MessageType::BlockAdded, ipc::BlockAdded{handle, offset, length, queue, usage, test_block_index(handle)}));
    }
    // The queue's rings: a block of Usage Other at `offset`, then
    // RINGS_ATTACHED with the two eventfds. The host's end of them.
    HostRingEnd attach_rings(uint32_t queue, uint64_t offset = kMemory - 65536, uint32_t size = 64,
                             uint64_t handle = 0x5160) {
        const auto g = ipc::RingGeometry::for_size(size);
        send_block(handle, offset, (g.bytes + 4095) / 4096 * 4096, queue, 9);  // NdisSharedMemoryUsageOther
        HostRingEnd r = HostRingEnd::over(memory + offset, size);
        const int fds[] = {r.rx_kick.fd(), r.done_kick.fd()};
        EXPECT_TRUE(channel.send(MessageType::RingsAttached, ipc::RingsAttached{queue, size, handle, g.done_offset, 0},
                                 fds));
        return r;
    }
    ipc::Message expect(MessageType type) {
        auto m = channel.receive(5000);
        EXPECT_TRUE(m) << m.error().message();
        if (!m) return {};
        EXPECT_EQ(m->type(), type);
        return std::move(*m);
    }
};

// Listens; `script` runs on its own thread with the accepted connection.
class FakeHost {
public:
    explicit FakeHost(std::function<void(os::UniqueFd)> script) {
        path_ = dir_.path() + "/host.sock";
        auto l = ipc::listen_at(path_);
        EXPECT_TRUE(l) << l.error().message();
        listener_ = std::move(*l);
        thread_ = std::thread([this, script = std::move(script)] {
            auto s = ipc::accept_from(listener_.get());
            EXPECT_TRUE(s) << s.error().message();
            if (s) script(std::move(*s));
        });
    }
    ~FakeHost() { join(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    const std::string& path() const { return path_; }

private:
    test::TempDir dir_;
    std::string path_;
    os::UniqueFd listener_;
    std::thread thread_;
};

// The host's half of a successful handshake.
inline void handshake(HostSide& h, os::UniqueFd socket) {
    h.channel = ipc::Channel(std::move(socket));
    h.hello = h.expect(MessageType::Hello).as<ipc::Hello>();
    ASSERT_TRUE(h.channel.send(MessageType::HelloAck, ipc::HelloAck{7, 0}));
    ipc::Message m = h.expect(MessageType::SetMemory);
    h.set = m.as<ipc::SetMemory>();
    h.memfd = std::move(m.fd);
    auto mapped = os::map_shared(h.memfd.get(), h.set.size);
    ASSERT_TRUE(mapped) << mapped.error().message();
    h.memory = static_cast<std::byte*>(*mapped);
    ASSERT_TRUE(h.channel.send(MessageType::MemoryAck, ipc::MemoryAck{h.set.size}));
}

// The start most tests' hosts share: the handshake, one 4 KiB receive block
// (index 1, at offset 0, for queue 1) and queue 1's rings.
inline HostRingEnd one_block_and_rings(HostSide& h, os::UniqueFd socket) {
    handshake(h, std::move(socket));
    h.send_block(1, 0, 4096, 1);
    return h.attach_rings(1);
}

struct Seen {
    std::vector<GuestPacket> packets;
    std::vector<std::string> contents;
};

inline Guest make_guest(Seen& seen) {
    return Guest({.name = "vm-test", .memory_bytes = kMemory, .guest_physical_base = 0x100000000},
                 [&seen](const GuestPacket& p) {
                     seen.packets.push_back(p);
                     seen.contents.emplace_back(reinterpret_cast<const char*>(p.data.data()), p.data.size());
                 });
}

}  // namespace ndisshm::test
