// What feeds the guests' queues in `ndisshm demo`: the one thing that
// differs between `--nic emulated` (emulated_source.hpp: the hub's VMQ
// miniport, zero copy against copy through host queues) and `--nic afxdp`
// (afxdp_source.hpp: real kernel packets, UDP over veth pairs, written by
// the kernel through AF_XDP). The demo itself (demo.cpp) is the same for
// both: one host, the same guest processes, the traffic generator
// (common/traffic.hpp) over the source's wire, the same checks and summary.
//
// The demo calls a source in this order: configure, attach (between the
// hub's creation and its start), start, guest_memory_bytes/guest_flags,
// add_guest for each running guest, phases (run and drain each), slots for
// the summary, check, then detach (after the hub stopped, before it goes).
#pragma once

#include <ndisshm/hub.hpp>

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/traffic.hpp"
#include "demo/summary.hpp"

namespace ndisshm::cli {

// How a source speaks through the demo: narration, and problems (each one
// fails the demo).
class Narration {
public:
    virtual void say(const std::string& line) = 0;
    virtual void problem(const std::string& what) = 0;

protected:
    ~Narration() = default;
};

// One path a source runs, and the words the demo narrates it with.
struct Phase {
    Path path = Path::ZeroCopy;
    std::string intro;             // "zero copy: the NIC writes each packet into the guest's own memory"
    std::string label;             // in the progress and result lines: "zero-copy"
    std::string run;               // "during the <run> run": "zero-copy"
    std::string unit = "packets";  // what is counted
    std::string payload;           // after the bytes: "" or " of payload"
    std::string cpu_owner = "host";      // whose CPU the figure is: "host", "sender"
    std::string per_unit = "packet";     // "ns CPU per <per_unit>"
    bool progress_retries = true;        // the progress line shows retries
};

class TrafficSource {
public:
    virtual ~TrafficSource() = default;

    // The demo's first line.
    virtual std::string headline() const = 0;
    // Between "host: adapter nic0 with the guest provider" and "; guests connect at".
    virtual std::string host_words() const { return ""; }
    // The summary's slot size (receive slot or frame bytes).
    virtual uint32_t summary_slot_bytes() const = 0;
    // The teardown's narration.
    virtual std::string teardown_words() const = 0;
    // "N <unverified>": what a guest was sent and did not verify.
    virtual std::string unverified_words() const = 0;

    // Hub options the source needs (the demo sets the common ones first).
    virtual void configure(ndisshm::HubOptions&) {}
    // After the hub's creation, before its start (a queue driver attaches
    // here; throw to refuse, with the reason); detach after its stop.
    virtual void attach(ndisshm::Hub&) {}
    virtual void detach() {}
    // After the hub started: whatever the source sets up, narrated. False
    // when it could not (the problem reported).
    virtual bool start(ndisshm::Hub& hub, Narration& n) = 0;

    // The guest processes: their memory, and flags beyond the demo's own.
    virtual uint64_t guest_memory_bytes() const = 0;
    virtual std::vector<std::string> guest_flags() const { return {}; }

    // The wire the generator sends over (valid from start on).
    virtual Wire& wire() = 0;
    // A running guest joins: its stream on the generator, narrated. False
    // when it cannot be fed (the problem reported).
    virtual bool add_guest(const ndisshm_hub_guest_info& guest, pid_t pid, TrafficGenerator& gen,
                           Narration& n) = 0;
    // The paths to run, in order.
    virtual std::vector<Phase> phases() const = 0;
    // After a phase: until the guests gave back every packet they were sent
    // (their counts are then final), reporting any that did not.
    virtual void drain(const ndisshm::Hub& hub, const TrafficGenerator& gen, const Phase& phase,
                       const std::map<uint32_t, std::string>& guest_names, Narration& n) = 0;
    // A queue's receive slots, for the summary.
    virtual uint64_t slots(const ndisshm_hub_queue_info& q) const { return q.slots; }
    // Checks of its own on the finished summary.
    virtual void check(const LiveSummary&, Narration&) {}
};

}  // namespace ndisshm::cli
