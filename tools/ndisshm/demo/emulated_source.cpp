#include "demo/emulated_source.hpp"

#include <chrono>
#include <optional>
#include <thread>

#include "common/hub_wire.hpp"
#include "common/units.hpp"
#include "demo/sizing.hpp"

namespace ndisshm::cli {
namespace {

constexpr int kDrainTimeoutMs = 10000;  // guests give back what they were sent

class EmulatedSource final : public TrafficSource {
public:
    explicit EmulatedSource(const DemoOptions& o) : o_(o), queues_(o.queues != 0 ? o.queues : o.guests + 1) {}

    std::string headline() const override {
        return "ndisshm demo: " + std::to_string(o_.guests) + " guest processes, " + std::to_string(queues_) +
               " receive queues, " + fixed(o_.duration_s, 1) + " s per path" +
               (o_.rate_pps != 0 ? ", " + std::to_string(o_.rate_pps) + " packets/s per guest" : ", full speed");
    }
    uint32_t summary_slot_bytes() const override { return slot_bytes_for(o_.packet_sizes); }
    std::string teardown_words() const override {
        return "teardown: guests told BYE, every block freed through its provider";
    }
    std::string unverified_words() const override { return "packets delivered but not verified"; }

    bool start(ndisshm::Hub& hub, Narration& n) override {
        wire_.emplace(hub);
        for (uint32_t i = 0; i < host_queues(); ++i) {
            const uint32_t id = o_.guests + 1 + i;
            const ndisshm_queue_params p{sizeof(ndisshm_queue_params), 0, 0};
            if (NDIS_STATUS st = hub.create_host_queue(id, &p); st != NDIS_STATUS_SUCCESS) {
                n.problem("host queue " + std::to_string(id) + ": " + ndisshm_status_name(st));
                return false;
            }
            n.say("  queue " + std::to_string(id) + ": host memory, the copy path");
        }
        return true;
    }

    uint64_t guest_memory_bytes() const override { return cli::guest_memory_bytes(o_); }
    Wire& wire() override { return *wire_; }

    bool add_guest(const ndisshm_hub_guest_info& g, pid_t pid, TrafficGenerator& gen, Narration& n) override {
        const uint32_t host_queue = o_.guests + 1 + (next_++ % host_queues());
        gen.add_stream(g.guest_id, g.queue_id, host_queue);
        n.say("  " + std::string(g.name) + " (process " + std::to_string(pid) + ", guest " +
              std::to_string(g.guest_id) + "): queue " + std::to_string(g.queue_id) + " in its own " +
              human_bytes(g.memory_bytes) + " memfd; copy path through queue " + std::to_string(host_queue));
        return true;
    }

    std::vector<Phase> phases() const override {
        Phase zero_copy;
        zero_copy.path = Path::ZeroCopy;
        zero_copy.intro = "zero copy: the NIC writes each packet into the guest's own memory";
        zero_copy.label = zero_copy.run = path_name(Path::ZeroCopy);
        Phase copy;
        copy.path = Path::Copy;
        copy.intro = "copy: the NIC writes host memory, the host copies each packet into the guest";
        copy.label = copy.run = path_name(Path::Copy);
        return {zero_copy, copy};
    }

    // Until every running guest's queue holds nothing (a guest that left
    // holds nothing).
    void drain(const ndisshm::Hub& hub, const TrafficGenerator&, const Phase& phase,
               const std::map<uint32_t, std::string>&, Narration& n) override {
        auto all_back = [&] {
            for (const auto& q : hub.queues())
                if (q.kind == NDISSHM_HUB_QUEUE_GUEST && q.outstanding != 0) return false;
            return true;
        };
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDrainTimeoutMs);
        while (!all_back() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (!all_back()) n.problem("guests did not give every packet back after the " + phase.run + " run");
    }

    void check(const LiveSummary& s, Narration& n) override {
        for (const QueueRow& q : s.queues)
            if (q.drops != 0 && q.kind == "host")
                n.problem("queue " + std::to_string(q.id) + ": " + std::to_string(q.drops) + " drops");
        if (s.problems.empty() && (s.zero_copy.packets == 0 || s.copy.packets == 0))
            n.problem("a path moved no packets");
    }

private:
    uint32_t host_queues() const { return queues_ - o_.guests; }

    const DemoOptions& o_;
    const uint32_t queues_;
    std::optional<HubWire> wire_;
    uint32_t next_ = 0;  // guests given a host queue so far
};

}  // namespace

std::unique_ptr<TrafficSource> make_emulated_source(const DemoOptions& options) {
    return std::make_unique<EmulatedSource>(options);
}

}  // namespace ndisshm::cli
