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
//   (slot index in the low 16 bits, the slot's generation in the high 16),
//   held now, of that generation. Each is accepted exactly once; a forged,
//   replayed or stale cookie is a violation. What is given back to the
//   driver is the host's own copy of the packet, never the guest's bytes;
// * a violation is reported (reap and room return the reason) and the
//   caller ends the session; nothing is freed or reused on a bad entry.
//
// Ring entries name a block by the index its BLOCK_ADDED gave it (BlockIndex,
// the session's): a queue driver's descriptors are translated entry by entry,
// the hub's miniport's through a table made once when the rings attach
// (map_blocks), indexed by the miniport's own block number.
//
// Who names a packet (Cookies): for a queue driver's packets, the host's
// table above; for the hub's own miniport, the miniport's cookie (its slot
// and the slot's generation) goes into the ring as it is, and the miniport
// checks each one that comes back the same way (held now, of that
// generation, exactly once): one record per packet on the data path instead
// of two, and no table entry to write and read back.
//
// Outstanding packets are bounded by the ring size (the table's, or a count
// of packets in flight): the completion ring can therefore never overflow
// with honest completions.
//
// Not thread-safe: the hub calls it under its session's lock.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/prefetch.hpp"
#include "ipc/ring.hpp"
#include "nic/vmq_miniport.hpp"
#include "os/fd_checks.hpp"

namespace ndisshm::ipc {

// The index each block the guest was told of has in its BLOCK_ADDED: what
// receive ring entries name the block by (16 bits, so that an entry is 16
// bytes). Indices go out in order and a freed one is reused last (a queue of
// them), so that an index names one block for as long as it can. The
// session's, under its lock.
class BlockIndex {
public:
    // The index for `handle`'s BLOCK_ADDED; nullopt when the handle has one
    // already or kMaxBlocks are in use.
    std::optional<uint16_t> add(uint64_t handle);
    // After its BLOCK_REMOVED: the index may name another block later.
    void remove(uint64_t handle);
    // nullopt when the guest was not told of the block.
    std::optional<uint16_t> find(uint64_t handle) const {
        const auto it = index_.find(handle);
        return it == index_.end() ? std::nullopt : std::optional<uint16_t>(it->second);
    }
    size_t size() const { return index_.size(); }

private:
    std::unordered_map<uint64_t, uint16_t> index_;
    std::deque<uint16_t> free_;
    uint32_t next_ = 0;
};

// One packet of a queue driver the guest holds (Cookies::Table): what the
// host gives back when it returns. The fields every push and reap touch
// come first, on the entry's first line.
struct alignas(64) Outstanding {
    uint16_t generation = 0;  // of the slot; the cookie's high half (never 0 once pushed)
    bool held = false;
    uint8_t segments = 0;     // descriptors of the packet in the receive ring
    // The segments as the guest sees them (the ring entries but for the
    // cookie, which push sets): the queue driver's descriptors as it
    // announced them, its own cookie included, for give_back.
    PacketDescriptor seg[kMaxSegmentsPerPacket]{};
};
static_assert(offsetof(Outstanding, seg) <= 64, "the data path's fields on one line");

struct GuestRingStats {
    uint64_t kicks = 0;           // receive-kick eventfd writes (the guest was asleep)
    uint64_t completion_waits = 0;  // times the host asked for a completion kick
    uint64_t ring_full = 0;       // packets dropped for want of ring or table room
};

enum class Cookies {
    Table,     // push / push_with, reap: the host's table names each packet
    Miniport,  // push_rx, reap_cookies: the miniport's own cookie, checked by it
};

class GuestRings {
public:
    // Over the ring block at `block` (the host's mapping of it), zeroed here:
    // both rings empty, no flag set. `cookies` says which of the two pairs of
    // calls below the caller uses; it never mixes them. `blocks` (the
    // session's, which outlives the rings) names blocks in the entries.
    GuestRings(std::byte* block, RingGeometry geometry, os::WakeFd rx_kick, os::WakeFd done_kick,
               const BlockIndex& blocks, Cookies cookies = Cookies::Table);
    Cookies cookies() const { return cookies_; }

    const RingGeometry& geometry() const { return geometry_; }
    int done_kick_fd() const { return done_kick_.fd(); }
    void drain_done_kick() const { done_kick_.drain(); }

    // Reads the completions the guest has published, checks each, frees its
    // slot and calls `give_back(const Outstanding&)` with the host's copy.
    // Stops at the first bad one: its reason comes back (the caller ends the
    // session), the entries before it were taken. Empty string: all good.
    template <class F>
    std::string reap(F&& give_back);
    // Cookies::Miniport: reads the completions the guest has published (each
    // cookie copied out once) and hands them, in order, to
    // `give_back(std::span<const uint32_t>) -> size_t`, the miniport, which
    // checks each and returns how many it took; the rest of the batch was
    // not taken, and the first of them is the violation whose reason comes
    // back, in the words of `explain(uint32_t cookie) -> std::string`.
    // Empty string: all good.
    template <class F, class E>
    std::string reap_cookies(F&& give_back, E&& explain);

    // Room for a batch: descriptors free in the receive ring and packets free
    // in the table. A guest consumer index that is impossible is a violation
    // (the reason, both set to 0).
    std::string room(uint32_t& descriptors, uint32_t& packets);
    // Whether every block `ds` name is one the guest was told of: what push
    // and push_with need of a queue driver's descriptors.
    bool names_known_blocks(std::span<const PacketDescriptor> ds) const;
    // Adds one packet (its descriptors, all with the slot's cookie) at the
    // producer's shadow; the caller checked room() and names_known_blocks()
    // first. Not visible to the guest before publish().
    void push(const Outstanding& packet) {
        push_with([&](Outstanding& o) { o = packet; });
    }
    // As push, filling the table's entry in place (`fill(Outstanding&)` sets
    // rx, segments and seg[]): the data path copies nothing twice.
    template <class F>
    void push_with(F&& fill);
    // Cookies::Miniport: the BLOCK_ADDED index of each of the miniport
    // queue's blocks (`blocks`, as VmqMiniport::blocks gives them), for
    // push_rx; the reason when one was never announced (then push_rx must
    // not be called).
    std::string map_blocks(std::span<const nic::RxBlock> blocks);
    // Cookies::Miniport, the data path's push: a packet of the hub's
    // miniport, its segments into the ring with the miniport's cookie, each
    // word written once, from `d`. Nothing is recorded but the count in
    // flight; the caller checked room() first.
    void push_rx(const nic::RxDescriptor& d) { push_rx(std::span<const nic::RxDescriptor>(&d, 1)); }
    // As push_rx for each in turn; the indices are written once.
    void push_rx(std::span<const nic::RxDescriptor> ds);
    // Asks for the lines of the next `entries` receive entries in the state
    // a store needs (the guest's core read them last), before the packets
    // are written: by push_rx they are here.
    void prefetch_rx(uint32_t entries) const {
        constexpr uint32_t kPerLine = 64 / sizeof(RxEntry);
        for (uint32_t i = 0; i < entries; i += kPerLine) base::prefetch_for_write(rx_.entry_address(rx_prod_ + i));
    }
    // Makes the pushed entries visible (one release store), then wakes the
    // guest if it asked to be (a fence, its flag, an eventfd write): true
    // when it did.
    bool publish();

    // The host is short of buffers: ask the guest to kick done_kick when it
    // gives some back (kNeedWakeup in the completion ring), then look once
    // more (the fence makes the race with the guest's last completion safe).
    void want_completions();
    void stop_wanting_completions();

    uint32_t outstanding() const {
        return cookies_ == Cookies::Table ? geometry_.size - static_cast<uint32_t>(free_.size()) : in_flight_;
    }
    // The host's copies of the packets the guest holds now (for teardown
    // reports and tests); Cookies::Table only (the miniport keeps its own).
    std::vector<Outstanding> held() const;
    const GuestRingStats& stats() const { return stats_; }

private:
    std::string bad_completion(uint32_t index, uint32_t cookie) const;
    // The completions the guest has published past ours: its producer index
    // read once and bounded by the ring (the reason when it is impossible,
    // `ready` then 0).
    std::string completions_ready(uint32_t& ready) const;
    static std::string hex(uint64_t v);

    RingGeometry geometry_;
    ReceiveRing rx_;
    CompletionRing done_;
    os::WakeFd rx_kick_, done_kick_;
    uint32_t rx_prod_ = 0;     // ours
    uint32_t rx_published_ = 0;
    uint32_t done_cons_ = 0;   // ours
    const BlockIndex& blocks_;
    std::vector<uint16_t> wire_block_;  // map_blocks': by the miniport's block number
    std::vector<Outstanding> table_;
    std::vector<uint32_t> free_;  // a stack of free slots
    bool wanting_ = false;
    Cookies cookies_;
    uint32_t in_flight_ = 0;  // Cookies::Miniport: packets pushed, not yet given back
    std::vector<uint32_t> back_;  // reap_cookies' batch, kept to allocate nothing once grown
    GuestRingStats stats_;
};

inline void GuestRings::push_rx(std::span<const nic::RxDescriptor> ds) {
    // In locals: each store on this path queues behind the packets' writes
    // into the guest's memory, so the members are written once a batch.
    uint32_t prod = rx_prod_;
    for (const nic::RxDescriptor& d : ds) {
        const bool split = d.segments > 1;
        rx_.store_words(prod++, entry_words(wire_block_[d.block], d.offset, d.length, d.cookie,
                                            split ? static_cast<uint16_t>(kSegmentFollows) : uint16_t{0}));
        if (split) rx_.store_words(prod++, entry_words(wire_block_[d.next.block], d.next.offset, d.next.length, d.cookie, 0));
    }
    rx_prod_ = prod;
    in_flight_ += static_cast<uint32_t>(ds.size());
}

template <class F>
void GuestRings::push_with(F&& fill) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    Outstanding& o = table_[slot];
    const auto next = static_cast<uint16_t>(o.generation + 1);
    const uint16_t generation = next == 0 ? 1 : next;  // cookie 0 is never valid
    fill(o);
    o.generation = generation;
    o.held = true;
    const uint32_t cookie = uint32_t{generation} << kCookieSlotBits | slot;
    for (uint8_t i = 0; i < o.segments; ++i) {
        const PacketDescriptor& d = o.seg[i];
        // The caller checked names_known_blocks(): each is found. (A caller
        // that did not would name index 0xffff, which a guest holds only
        // with all 65536 indices in use, and refuses otherwise.)
        const uint16_t block = blocks_.find(d.handle).value_or(0xffff);
        rx_.store_words(rx_prod_++, entry_words(block, d.offset, d.length, cookie,
                                                static_cast<uint16_t>(d.flags & kSegmentFollows)));
    }
}

template <class F>
std::string GuestRings::reap(F&& give_back) {
    uint32_t ready = 0;
    if (std::string why = completions_ready(ready); !why.empty() || ready == 0) return why;
    std::string why;
    uint32_t taken = 0;
    for (; taken < ready; ++taken) {
        const uint32_t cookie = done_.load(done_cons_ + taken).cookie;  // copied once, then checked
        const uint32_t slot = cookie & kCookieSlotMask;
        const uint32_t generation = cookie >> kCookieSlotBits;
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

template <class F, class E>
std::string GuestRings::reap_cookies(F&& give_back, E&& explain) {
    uint32_t ready = 0;
    if (std::string why = completions_ready(ready); !why.empty() || ready == 0) return why;
    back_.resize(ready);
    for (uint32_t i = 0; i < ready; ++i) back_[i] = done_.load(done_cons_ + i).cookie;  // copied once
    // Never more than were handed out: a guest that completes more than it
    // holds is caught here even before the miniport looks.
    const uint32_t offered = std::min(ready, in_flight_);
    const auto taken = static_cast<uint32_t>(give_back(std::span<const uint32_t>(back_.data(), offered)));
    std::string why;
    if (taken < ready)
        why = "completion ring entry " + std::to_string(done_cons_ + taken) + ": cookie " + hex(back_[taken]) +
              " " + explain(back_[taken]) +
              (taken < offered ? ""
                               : "; more completions than the " + std::to_string(in_flight_) +
                                     " packets the guest held");
    in_flight_ -= taken;
    done_cons_ += taken;
    done_.store_consumer(done_cons_);
    return why;
}

}  // namespace ndisshm::ipc
