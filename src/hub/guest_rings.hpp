// GuestRings: the host's side of one guest queue's shared rings (ipc/ring.hpp
// has the layout, design/rings.md the invariants).
//
// The host produces into the receive ring and consumes the completion ring.
// The guest can write anything into both at any moment, so:
// * the host keeps its own producer and consumer indices (shadows) and only
//   ever reads the guest's two: the receive ring's consumer index and the
//   completion ring's producer index. One that claims more than `size`
//   entries, or runs backwards, is a violation;
// * each completion is copied out of shared memory once, then checked: its
//   cookie must name a slot of the host's own table of outstanding packets
//   (slot index in the low 32 bits, the slot's generation in the high 32),
//   held now, of that generation. Each is accepted exactly once; a forged,
//   replayed or stale cookie is a violation. What is given back to the
//   driver is the host's own copy of the packet, never the guest's bytes;
// * a violation is reported (reap and room return the reason) and the
//   caller ends the session; nothing is freed or reused on a bad entry.
//
// Outstanding packets are bounded by the table, whose size is the rings':
// the completion ring can therefore never overflow with honest completions.
//
// Not thread-safe: the hub calls it under its session's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ipc/ring.hpp"
#include "nic/vmq_miniport.hpp"
#include "os/fd_checks.hpp"

namespace ndisshm::ipc {

// One packet the guest holds: what the host gives back when it returns.
// A line per entry, the fields the data path writes and reaps (all but seg[],
// a queue driver's) within the first: one line per packet, not two.
struct alignas(64) Outstanding {
    uint32_t generation = 0;  // of the slot; the cookie's high half
    bool held = false;
    uint8_t segments = 0;     // descriptors of the packet in the receive ring
    nic::RxDescriptor rx;     // the hub's miniport's packet (its own cookie)
    // The segments as the guest sees them (the ring entries but for the
    // cookie, which push sets): for a queue driver, its descriptors as it
    // announced them, its own cookie included, for give_back.
    PacketDescriptor seg[kMaxSegmentsPerPacket]{};
};
static_assert(offsetof(Outstanding, seg) <= 64, "the data path's fields on one line");

struct GuestRingStats {
    uint64_t kicks = 0;           // receive-kick eventfd writes (the guest was asleep)
    uint64_t completion_waits = 0;  // times the host asked for a completion kick
    uint64_t ring_full = 0;       // packets dropped for want of ring or table room
};

class GuestRings {
public:
    // Over the ring block at `block` (the host's mapping of it), zeroed here:
    // both rings empty, no flag set.
    GuestRings(std::byte* block, RingGeometry geometry, os::WakeFd rx_kick, os::WakeFd done_kick);

    const RingGeometry& geometry() const { return geometry_; }
    int done_kick_fd() const { return done_kick_.fd(); }
    void drain_done_kick() const { done_kick_.drain(); }

    // Reads the completions the guest has published, checks each, frees its
    // slot and calls `give_back(const Outstanding&)` with the host's copy.
    // Stops at the first bad one: its reason comes back (the caller ends the
    // session), the entries before it were taken. Empty string: all good.
    template <class F>
    std::string reap(F&& give_back);

    // Room for a batch: descriptors free in the receive ring and packets free
    // in the table. A guest consumer index that is impossible is a violation
    // (the reason, both set to 0).
    std::string room(uint32_t& descriptors, uint32_t& packets);
    // Adds one packet (its descriptors, all with the slot's cookie) at the
    // producer's shadow; the caller checked room() first. Not visible to the
    // guest before publish().
    void push(const Outstanding& packet) {
        push_with([&](Outstanding& o) { o = packet; });
    }
    // As push, filling the table's entry in place (`fill(Outstanding&)` sets
    // rx, segments and seg[]): the data path copies nothing twice.
    template <class F>
    void push_with(F&& fill);
    // As push, for a packet of the hub's miniport: the table keeps `d` (rx
    // and segments; seg[] is left as it was), the ring gets its segments.
    // Each word is written once, from `d`: the data path's push.
    void push_rx(const nic::RxDescriptor& d);
    // Makes the pushed entries visible (one release store), then wakes the
    // guest if it asked to be (a fence, its flag, an eventfd write): true
    // when it did.
    bool publish();

    // The host is short of buffers: ask the guest to kick done_kick when it
    // gives some back (kNeedWakeup in the completion ring), then look once
    // more (the fence makes the race with the guest's last completion safe).
    void want_completions();
    void stop_wanting_completions();

    uint32_t outstanding() const { return geometry_.size - static_cast<uint32_t>(free_.size()); }
    // The host's copies of the packets the guest holds now (for teardown
    // reports and tests).
    std::vector<Outstanding> held() const;
    const GuestRingStats& stats() const { return stats_; }

private:
    std::string bad_completion(uint32_t index, uint64_t cookie) const;

    RingGeometry geometry_;
    ReceiveRing rx_;
    CompletionRing done_;
    os::WakeFd rx_kick_, done_kick_;
    uint32_t rx_prod_ = 0;     // ours
    uint32_t rx_published_ = 0;
    uint32_t done_cons_ = 0;   // ours
    std::vector<Outstanding> table_;
    std::vector<uint32_t> free_;  // a stack of free slots
    bool wanting_ = false;
    GuestRingStats stats_;
};

inline void GuestRings::push_rx(const nic::RxDescriptor& d) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    Outstanding& o = table_[slot];
    const uint32_t generation = o.generation + 1 == 0 ? 1 : o.generation + 1;  // cookie 0 is never valid
    o.generation = generation;
    o.held = true;
    o.segments = static_cast<uint8_t>(d.segments);
    o.rx = d;
    const uint64_t cookie = (uint64_t{generation} << 32) | slot;
    const bool split = d.segments > 1;
    rx_.store_words(rx_prod_++, descriptor_words(d.handle, d.offset, d.length, cookie, split ? kSegmentFollows : 0u));
    if (split) rx_.store_words(rx_prod_++, descriptor_words(d.next.handle, d.next.offset, d.next.length, cookie, 0));
}

template <class F>
void GuestRings::push_with(F&& fill) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    Outstanding& o = table_[slot];
    const uint32_t generation = o.generation + 1 == 0 ? 1 : o.generation + 1;  // cookie 0 is never valid
    fill(o);
    o.generation = generation;
    o.held = true;
    const uint64_t cookie = (uint64_t{generation} << 32) | slot;
    for (uint8_t i = 0; i < o.segments; ++i) {
        PacketDescriptor d = o.seg[i];
        d.cookie = cookie;
        rx_.store(rx_prod_++, d);
    }
}

template <class F>
std::string GuestRings::reap(F&& give_back) {
    const uint32_t prod = done_.load_producer();  // the guest's: read once
    const uint32_t ready = prod - done_cons_;
    if (ready == 0) return {};
    if (ready > geometry_.size)
        return "completion ring: producer index " + std::to_string(prod) + " claims " + std::to_string(ready) +
               " entries ready past consumer " + std::to_string(done_cons_) + " (the ring holds " +
               std::to_string(geometry_.size) + ")";
    std::string why;
    uint32_t taken = 0;
    for (; taken < ready; ++taken) {
        const uint64_t cookie = done_.load(done_cons_ + taken).cookie;  // copied once, then checked
        const uint32_t slot = static_cast<uint32_t>(cookie);
        const uint32_t generation = static_cast<uint32_t>(cookie >> 32);
        if (slot >= table_.size() || !table_[slot].held || table_[slot].generation != generation) {
            why = bad_completion(done_cons_ + taken, cookie);
            break;
        }
        Outstanding& o = table_[slot];
        o.held = false;
        free_.push_back(slot);
        give_back(static_cast<const Outstanding&>(o));
    }
    done_cons_ += taken;
    done_.store_consumer(done_cons_);
    return why;
}

}  // namespace ndisshm::ipc
