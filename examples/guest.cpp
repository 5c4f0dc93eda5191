// A guest in C++ (include/ndisshm/guest.hpp) against a host of our own
// (include/ndisshm/hub.h), both in this one program for the sake of a short
// example: in real use the guest is another process (`ndisshm guest`).
//
// The guest hands its memory (a sealed memfd) to the host; the host's NIC
// writes packets straight into it (zero copy); the guest reads each packet in
// place and checks it. Exits 0 when every packet arrived intact.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <ndisshm/guest.hpp>
#include <ndisshm/hub.h>

namespace {

constexpr int kPackets = 1000;
constexpr uint32_t kPacketBytes = 1500;

// Each packet carries its sequence number and a byte pattern derived from it,
// so the guest can tell a packet that is whole from one that is not.
void fill(std::vector<unsigned char>& frame, uint32_t seq) {
    std::memcpy(frame.data(), &seq, sizeof(seq));
    for (size_t i = sizeof(seq); i < frame.size(); ++i) frame[i] = static_cast<unsigned char>(seq + i);
}

bool intact(std::span<const std::byte> data, uint32_t expected_seq) {
    uint32_t seq;
    if (data.size() != kPacketBytes) return false;
    std::memcpy(&seq, data.data(), sizeof(seq));
    if (seq != expected_seq) return false;
    for (size_t i = sizeof(seq); i < data.size(); ++i)
        if (data[i] != static_cast<std::byte>(seq + i)) return false;
    return true;
}

}  // namespace

int main() {
    const std::string socket = "/tmp/ndisshm-example-guest-" + std::to_string(::getpid()) + ".sock";
    ndisshm_runtime* rt = nullptr;
    if (ndisshm_runtime_create(nullptr, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS) return 1;

    ndisshm_hub_config config;
    ndisshm_hub_config_init(&config);
    config.socket_path = socket.c_str();
    config.serve_control = 0;
    ndisshm_hub* hub = nullptr;
    char error[256] = {};
    if (ndisshm_hub_create(rt, &config, &hub, error, sizeof(error)) != NDIS_STATUS_SUCCESS ||
        ndisshm_hub_start(hub, error, sizeof(error)) != NDIS_STATUS_SUCCESS) {
        std::fprintf(stderr, "host: %s\n", error);
        return 1;
    }

    std::atomic<int> received{0}, broken{0};
    std::thread guest_thread([&] {
        try {
            ndisshm::Guest guest({.name = "example-vm", .memory_bytes = 8 << 20},
                                 [&](const ndisshm::GuestPacket& p) {
                                     // In place: p.data points into this guest's own memory.
                                     if (!intact(p.data, static_cast<uint32_t>(received.load()))) ++broken;
                                     ++received;
                                 });
            guest.connect(socket);
            guest.run();  // until the host says BYE
        } catch (const std::exception& e) {
            std::fprintf(stderr, "guest: %s\n", e.what());
            ++broken;
        }
    });

    if (ndisshm_hub_wait_guests(hub, 1, 5000) != 1) {
        std::fprintf(stderr, "host: no guest came\n");
        return 1;
    }
    ndisshm_hub_guest_info info{};
    ndisshm_hub_list_guests(hub, &info, 1);
    std::vector<unsigned char> frame(kPacketBytes);
    for (uint32_t seq = 0; seq < kPackets;) {
        fill(frame, seq);
        // DROPPED means the guest has not given buffers back yet: offer again.
        if (ndisshm_hub_deliver(hub, info.queue_id, frame.data(), kPacketBytes) == NDISSHM_HUB_DELIVERED) ++seq;
        else std::this_thread::yield();
    }
    while (received.load() < kPackets && broken.load() == 0) std::this_thread::yield();

    ndisshm_hub_destroy(hub);  // BYE to the guest, every block freed through its provider
    guest_thread.join();
    uint64_t violations = ndisshm_global_violation_count();
    for (int k = 1; k < NDISSHM_VIOLATION_KIND_COUNT; ++k)
        violations += ndisshm_runtime_violation_count(rt, static_cast<ndisshm_violation_kind>(k));
    ndisshm_runtime_destroy(rt);
    std::printf("guest: %d packets read in place, %d broken, %llu violations\n", received.load(), broken.load(),
                static_cast<unsigned long long>(violations));
    return received.load() == kPackets && broken.load() == 0 && violations == 0 ? 0 : 1;
}
