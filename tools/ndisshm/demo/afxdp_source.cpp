#include "demo/afxdp_source.hpp"

#include <ndisshm/afxdp.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <utility>

#include "common/units.hpp"
#include "demo/sizing.hpp"

namespace ndisshm::cli {

#if !NDISSHM_WITH_AFXDP
// Built without libxdp (-DNDISSHM_WITH_AFXDP=OFF): the emulated NIC alone.
std::string afxdp_unavailable_reason() {
    return "this ndisshm was built without AF_XDP (libxdp); rebuild with -DNDISSHM_WITH_AFXDP=ON, or use "
           "--nic emulated";
}
std::unique_ptr<TrafficSource> make_afxdp_source(const DemoOptions&) { return nullptr; }
#else

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kBoundTimeoutMs = 15000;  // a guest's UMEM block announced and its socket bound
constexpr int kDrainTimeoutMs = 10000;  // every datagram sent read and given back
constexpr uint32_t kFrames = 1024;      // UMEM frames per guest queue
constexpr uint32_t kFrameBytes = 4096;
// Datagrams sent to a queue and not yet given back by its guest, at most.
// Below the fill ring's frames, so the kernel always has a frame to write
// into; small enough that the veth's own ring (256 packets) never overflows,
// which would drop before AF_XDP sees the packet. Flow control, as the
// emulated NIC's full ring does: any gap a guest sees is a real loss.
constexpr uint64_t kWindow = 256;

class AfxdpSource final : public TrafficSource, private Wire {
public:
    explicit AfxdpSource(const DemoOptions& o) : o_(o) {}
    ~AfxdpSource() override { detach(); }

    std::string headline() const override {
        return "ndisshm demo --nic afxdp: " + std::to_string(o_.guests) + " guest processes, one veth pair each, " +
               fixed(o_.duration_s, 1) + " s of UDP" +
               (o_.rate_pps != 0 ? ", " + std::to_string(o_.rate_pps) + " datagrams/s per guest" : ", full speed");
    }
    std::string host_words() const override { return ", its guests' queues fed by AF_XDP"; }
    uint32_t summary_slot_bytes() const override { return kFrameBytes; }
    std::string teardown_words() const override {
        return "teardown: guests told BYE, AF_XDP sockets closed, then every block freed through its provider";
    }
    std::string unverified_words() const override { return "datagrams sent but not verified"; }

    void attach(ndisshm::Hub& hub) override {
        ndisshm_afxdp_config c;
        ndisshm_afxdp_config_init(&c);
        c.links = o_.guests;
        c.frames_per_queue = kFrames;
        c.frame_bytes = kFrameBytes;
        c.tag = "demo";
        char error[512] = {};
        if (ndisshm_afxdp_attach(hub.handle(), &c, &nic_, error, sizeof(error)) != NDIS_STATUS_SUCCESS)
            throw std::runtime_error(error);
        links_.resize(ndisshm_afxdp_links(nic_, nullptr, 0));
        links_.resize(std::min(links_.size(), ndisshm_afxdp_links(nic_, links_.data(), links_.size())));
    }
    // Sockets closed (the hub stopped), then the namespaces and veths removed.
    void detach() override { ndisshm_afxdp_destroy(std::exchange(nic_, nullptr)); }

    bool start(ndisshm::Hub&, Narration& n) override {
        for (size_t i = 0; i < links_.size(); ++i)
            n.say("  wire " + std::to_string(i) + ": " + links_[i].tx_ifname + " (" + links_[i].tx_address + ") -> " +
                  links_[i].rx_ifname + " (" + links_[i].rx_address + "), a veth pair between " + links_[i].tx_netns +
                  " and " + links_[i].rx_netns);
        return true;
    }

    uint64_t guest_memory_bytes() const override {
        return cli::guest_memory_bytes(o_, uint64_t{kFrames} * kFrameBytes);
    }
    std::vector<std::string> guest_flags() const override {
        return {"--frame-offset", std::to_string(NDISSHM_AFXDP_UDP_PAYLOAD_OFFSET)};
    }
    Wire& wire() override { return *this; }

    bool add_guest(const ndisshm_hub_guest_info& g, pid_t, TrafficGenerator& gen, Narration& n) override {
        // A datagram sent before the socket is bound would go to the stack:
        // the queue is running once its UMEM is registered.
        const auto bound_by = Clock::now() + std::chrono::milliseconds(kBoundTimeoutMs);
        while (!running(g.queue_id) && Clock::now() < bound_by)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (!running(g.queue_id)) {
            n.problem(std::string(g.name) + ": queue " + std::to_string(g.queue_id) + " has no AF_XDP socket");
            return false;
        }
        gen.add_stream(g.guest_id, g.queue_id);
        returned_before_[g.queue_id] = ndisshm_afxdp_returned(nic_, g.queue_id);
        const int link = ndisshm_afxdp_link_of(nic_, g.queue_id);
        n.say("  " + std::string(g.name) + " (guest " + std::to_string(g.guest_id) + "): queue " +
              std::to_string(g.queue_id) + ", " + std::to_string(kFrames) + " frames of " +
              std::to_string(kFrameBytes) + " bytes in its own " + human_bytes(g.memory_bytes) + " memfd, fed by " +
              (link >= 0 ? links_[static_cast<size_t>(link)].rx_ifname : "?"));
        return true;
    }

    std::vector<Phase> phases() const override {
        Phase p;
        p.path = Path::ZeroCopy;
        p.intro = "zero copy: the kernel writes each frame through AF_XDP into the guest's own memory";
        p.label = "zero-copy (AF_XDP)";
        p.run = "AF_XDP";
        p.unit = "datagrams";
        p.payload = " of payload";
        p.cpu_owner = "sender";
        p.per_unit = "datagram";
        p.progress_retries = false;
        return {p};
    }

    // Until every guest has read and given back every datagram it was sent:
    // its counts are then final, and a datagram the kernel took but never
    // delivered shows as a loss, not as one still on its way.
    void drain(const ndisshm::Hub&, const TrafficGenerator& gen, const Phase&,
               const std::map<uint32_t, std::string>& names, Narration& n) override {
        auto back = [&](const Stream& s) { return s.gone || returned(s.guest_queue) >= s.zero_copy.packets; };
        auto all_back = [&] {
            return std::all_of(gen.streams().begin(), gen.streams().end(), [&](const auto& e) { return back(e.second); });
        };
        const auto deadline = Clock::now() + std::chrono::milliseconds(kDrainTimeoutMs);
        while (!all_back() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        for (const auto& [id, s] : gen.streams()) {
            if (back(s)) continue;
            ndisshm_afxdp_queue_stats st{};
            ndisshm_afxdp_get_queue_stats(nic_, s.guest_queue, &st);
            const auto name = names.find(id);
            n.problem((name != names.end() ? name->second : "guest " + std::to_string(id)) + ": " +
                      std::to_string(s.zero_copy.packets - returned(s.guest_queue)) + " of " +
                      std::to_string(s.zero_copy.packets) + " datagrams never came back (indicated " +
                      std::to_string(st.indicated) + ", kernel: rx_dropped " + std::to_string(st.kernel_rx_dropped) +
                      ", rx_ring_full " + std::to_string(st.kernel_rx_ring_full) + ", fill_ring_empty " +
                      std::to_string(st.kernel_fill_ring_empty) + ")");
        }
    }

    uint64_t slots(const ndisshm_hub_queue_info&) const override { return kFrames; }  // the UMEM's frames

    void check(const LiveSummary& s, Narration& n) override {
        for (const GuestRow& g : s.guests)
            if (g.sent == 0 && s.problems.empty()) n.problem(g.name + ": no datagram reached it");
    }

private:
    // ---- The wire: UDP datagrams on the queue's veth, at most kWindow in flight.
    size_t send(Path, Stream& s, std::span<const ndisshm_hub_packet> packets) override {
        size_t sent = 0;
        char error[256] = {};
        const NDIS_STATUS st =
            ndisshm_afxdp_send(nic_, s.guest_queue, packets.data(), packets.size(), &sent, error, sizeof(error));
        // RESOURCES: the veth's transmit queue is full; the generator offers them again.
        if (st != NDIS_STATUS_SUCCESS && st != NDIS_STATUS_RESOURCES) {
            s.gone = true;
            s.failure = error;
        }
        return sent;
    }
    uint64_t room(const Stream& s) override {
        const uint64_t sent = s.zero_copy.packets;
        const uint64_t in_flight = sent - std::min(sent, returned(s.guest_queue));
        return in_flight < kWindow ? kWindow - in_flight : 0;
    }

    bool running(uint32_t queue) const {
        ndisshm_afxdp_queue_stats st{};
        return ndisshm_afxdp_get_queue_stats(nic_, queue, &st) == NDIS_STATUS_SUCCESS && st.running != 0;
    }
    // Given back since its stream began.
    uint64_t returned(uint32_t queue) const {
        const auto it = returned_before_.find(queue);
        return ndisshm_afxdp_returned(nic_, queue) - (it != returned_before_.end() ? it->second : 0);
    }

    const DemoOptions& o_;
    ndisshm_afxdp* nic_ = nullptr;  // the hub's queue driver: attached before it starts, gone after it stops
    std::vector<ndisshm_afxdp_link> links_;
    std::map<uint32_t, uint64_t> returned_before_;  // by queue: its give-backs before its stream began
};

}  // namespace

std::string afxdp_unavailable_reason() {
    std::string why(ndisshm_afxdp_unavailable_reason(nullptr, 0) + 1, '\0');
    why.resize(ndisshm_afxdp_unavailable_reason(why.data(), why.size()));
    return why;
}

std::unique_ptr<TrafficSource> make_afxdp_source(const DemoOptions& options) {
    return std::make_unique<AfxdpSource>(options);
}

#endif  // NDISSHM_WITH_AFXDP

}  // namespace ndisshm::cli
