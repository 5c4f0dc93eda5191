// The guest's session: handshake, block book-keeping, in-place packet reads.
#include "guest/session.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include <ndis/ndis_shm.h>

namespace ndisshm::guest {
namespace {

using ipc::MessageType;

// Packets poll() hands to on_packet per call: a bound, so a host that never
// pauses cannot keep poll() from returning (and control messages unread).
constexpr uint32_t kPacketsPerPoll = 256;
// Under load poll() finds packets every time and would never look at the
// socket: it does once every this many calls (a system call amortised).
constexpr uint32_t kPollsPerControlCheck = 64;

}  // namespace

Result<std::unique_ptr<Session>> Session::create(const ndisshm_guest_config& c) {
    const size_t name_bytes = c.name == nullptr ? 0 : std::strlen(c.name);
    if (name_bytes == 0 || name_bytes >= ipc::kNameBytes)
        return Error{"ndisshm_guest_create", EINVAL, "name must be 1.." + std::to_string(ipc::kNameBytes - 1) + " bytes"};
    if (c.memory_bytes == 0) return Error{"ndisshm_guest_create", EINVAL, "memory_bytes must be > 0"};
    auto fd = os::memfd_create(std::string("ndisshm-guest-") + c.name, false);
    if (!fd) return fd.error();
    if (auto s = os::resize_file(fd->get(), c.memory_bytes); !s) return s.error();
    // Sealed before the host ever sees it: the host maps the whole size, and a
    // guest that could shrink the file afterwards would make the host's next
    // write to a vanished page a SIGBUS.
    if (auto s = os::memfd_seal_shrink(fd->get()); !s) return s.error();
    auto mapped = os::map_shared(fd->get(), c.memory_bytes);
    if (!mapped) return mapped.error();
    return std::unique_ptr<Session>(new Session(c, std::move(*fd), static_cast<std::byte*>(*mapped)));
}

Session::Session(const ndisshm_guest_config& c, os::UniqueFd memfd, std::byte* memory)
    : name_(c.name),
      guest_physical_base_(c.guest_physical_base),
      on_packet_(c.on_packet),
      on_event_(c.on_event),
      context_(c.context),
      memfd_(std::move(memfd)),
      memory_(memory),
      bytes_(c.memory_bytes),
      busy_poll_((c.flags & NDISSHM_GUEST_BUSY_POLL) != 0),
      reconnect_ms_(c.reconnect_ms),
      // Guests that lost one host together should not retry in step.
      backoff_(reinterpret_cast<uintptr_t>(this) ^ static_cast<uint64_t>(Clock::now().time_since_epoch().count())) {}

Session::~Session() {
    close();
    os::unmap(memory_, bytes_);
}

ndisshm_guest_stats Session::stats() const {
    ndisshm_guest_stats s = stats_;
    s.blocks = static_cast<uint32_t>(blocks_.size());
    s.queues = static_cast<uint32_t>(queues_.size());
    s.connected = channel_.has_value() ? 1 : 0;
    s.reconnecting = reconnecting_ ? 1 : 0;
    return s;
}

NDIS_STATUS Session::handle(ipc::Message& m) {
    switch (m.type()) {
        case MessageType::QueueAttached: {
            const auto q = m.as<ipc::QueueAttached>();
            queues_[q.queue_id] = Queue{q.flags, q.lookahead_size};
            ndisshm_guest_event e{};
            e.kind = NDISSHM_GUEST_QUEUE_ATTACHED;
            e.queue_id = q.queue_id;
            e.flags = q.flags;
            e.lookahead_size = q.lookahead_size;
            emit(e);
            return NDIS_STATUS_SUCCESS;
        }
        case MessageType::QueueDetached: on_queue_detached(m.as<ipc::QueueDetached>().queue_id); return NDIS_STATUS_SUCCESS;
        case MessageType::BlockAdded: on_block_added(m.as<ipc::BlockAdded>()); return NDIS_STATUS_SUCCESS;
        case MessageType::BlockRemoved: on_block_removed(m.as<ipc::BlockRemoved>().handle); return NDIS_STATUS_SUCCESS;
        case MessageType::RingsAttached: return on_rings_attached(m);
        default: return ended_by_host(m);  // BYE, ERROR, or a type the host never sends
    }
}

NDIS_STATUS Session::on_rings_attached(ipc::Message& m) {
    const auto ra = m.as<ipc::RingsAttached>();
    const ipc::RingGeometry g = ipc::RingGeometry::for_size(ra.size);
    const auto it = blocks_.find(ra.handle);
    // The rings are read and written only if they lie inside a block of
    // their queue, as the geometry the host named says they must: a host
    // that lies gets no rings (its packets are never read), not our memory.
    const bool good = ipc::RingGeometry::valid_size(ra.size) && ra.done_offset == g.done_offset && ra.flags == 0 &&
                      it != blocks_.end() && it->second.queue_id == ra.queue_id &&
                      it->second.usage == NdisSharedMemoryUsageOther && g.bytes <= it->second.length &&
                      it->second.guest_offset % ipc::kRingLine == 0 && rings_of(ra.queue_id) == nullptr;
    if (!good) {
        ++stats_.bad_blocks;
        return NDIS_STATUS_SUCCESS;  // the fds close with the message
    }
    auto rx_kick = os::WakeFd::adopt(std::move(m.fd));
    if (!rx_kick) return end(NDIS_STATUS_FAILURE, "the rings' receive kick: " + rx_kick.error().message());
    auto done_kick = os::WakeFd::adopt(std::move(m.fd2));
    if (!done_kick) return end(NDIS_STATUS_FAILURE, "the rings' completion kick: " + done_kick.error().message());
    auto r = std::make_unique<Rings>();
    r->queue_id = ra.queue_id;
    r->handle = ra.handle;
    std::byte* base = memory_ + it->second.guest_offset;
    r->rx = ipc::ReceiveRing(base, ra.size);
    r->done = ipc::CompletionRing(base + g.done_offset, ra.size);
    // The host zeroed them; we start where it says it is, checked as any index.
    r->rx_cons = 0;
    r->done_prod = r->done_published = 0;
    r->rx_kick = std::move(*rx_kick);
    r->done_kick = std::move(*done_kick);
    if (epoll_.valid()) (void)os::epoll_watch(epoll_.get(), r->rx_kick.fd());
    rings_.push_back(std::move(r));
    // One table entry per packet the hosts may have out at once: grown to
    // the rings attached now, never past, however often queues come and go
    // or the guest reconnects (slots of dropped rings are free again).
    held_needed_ += ra.size;
    if (held_.size() < held_needed_) {
        const size_t old = held_.size();
        held_.resize(held_needed_);
        for (size_t i = held_.size(); i-- > old;) free_held_.push_back(static_cast<uint32_t>(i));
    }
    return NDIS_STATUS_SUCCESS;
}

Session::Rings* Session::rings_of(uint32_t queue_id) {
    for (auto& r : rings_)
        if (r->queue_id == queue_id) return r.get();
    return nullptr;
}

void Session::drop_rings(uint32_t queue_id) {
    for (auto it = rings_.begin(); it != rings_.end(); ++it) {
        if ((*it)->queue_id != queue_id) continue;
        for (uint32_t i = 0; i < held_.size(); ++i)
            if (held_[i].held && held_[i].queue_id == queue_id) release(i);
        held_needed_ -= (*it)->rx.size();
        rings_.erase(it);
        return;
    }
}

void Session::release(uint32_t slot) {
    Held& h = held_[slot];
    h.held = false;
    ++h.generation;  // its token goes stale
    free_held_.push_back(slot);
}

bool Session::rings_ready() const {
    for (const auto& r : rings_)
        if (r->rx.load_producer() != r->rx_cons) return true;
    return false;
}

uint32_t Session::take(ndisshm_guest_packet* out, uint32_t max) {
    disarm();  // awake: the host need not kick us
    uint32_t got = 0;
    for (auto& rp : rings_) {
        Rings& r = *rp;
        const uint32_t prod = r.rx.load_producer();  // the host's: read once
        uint32_t ready = prod - r.rx_cons;
        if (ready == 0) continue;
        if (ready > r.rx.size()) {
            protocol_broken_ = true;
            protocol_why_ = "the host's receive ring of queue " + std::to_string(r.queue_id) + " claims " +
                            std::to_string(ready) + " entries ready (it holds " + std::to_string(r.rx.size()) + ")";
            return got;
        }
        ++stats_.batches;
        while (ready > 0 && got < max && !free_held_.empty()) {
            ipc::RxEntry chain[ipc::kMaxSegmentsPerPacket];
            uint32_t n = 0;
            bool follows = true;
            while (follows && n < ready && n < ipc::kMaxSegmentsPerPacket) {
                r.rx.load_into(r.rx_cons + n, chain[n]);  // copied once, then checked
                follows = (chain[n].flags & ipc::kSegmentFollows) != 0;
                ++n;
            }
            if (follows) {
                // The host publishes whole chains of at most four segments.
                protocol_broken_ = true;
                protocol_why_ = "the host's receive ring of queue " + std::to_string(r.queue_id) + " has a chain " +
                                (n == ready ? "cut off at its producer index" : "of more than 4 segments");
                return got;
            }
            r.rx_cons += n;
            ready -= n;
            uint64_t packet_length = 0;
            bool good = true;
            // The segments go straight into the slot that will hold the
            // packet (taken off the free list only if the packet is good), so
            // they stay valid until it is returned.
            const uint32_t slot = free_held_.back();
            Held& h = held_[slot];
            ndisshm_guest_segment* segs = h.segments;
            for (uint32_t k = 0; k < n && good; ++k) {
                const ipc::RxEntry& d = chain[k];
                const Block* b = block_at(d.block);
                // A segment is read only if it names a block of this queue and
                // lies inside it: the block itself was checked against our
                // memory when it was added, so the read stays in our mapping.
                good = b != nullptr && b->queue_id == r.queue_id && d.length != 0 &&
                       uint64_t{d.offset} + d.length <= b->length && d.cookie == chain[0].cookie &&
                       (d.flags & ~ipc::kSegmentFollows) == 0;
                if (good) segs[k] = {b->handle, d.offset, d.length, memory_ + b->guest_offset + d.offset};
                packet_length += d.length;
            }
            good = good && packet_length <= UINT32_MAX;  // four near-4 GiB segments from a lying host
            if (!good) {
                // Half a packet is no packet: one bad segment spoils the
                // chain. It goes back at once: the host owns the buffers.
                stats_.bad_descriptors += n;
                complete(r, chain[0].cookie);
                continue;
            }
            // Its first line is what every reader reads first, and it is
            // the host's (it wrote it last): asked for now, the burst's
            // lines arrive together instead of one miss at a time.
            __builtin_prefetch(segs[0].data, 0, 3);
            free_held_.pop_back();
            h.held = true;
            h.cookie = chain[0].cookie;
            h.queue_id = r.queue_id;
            ++stats_.packets;
            stats_.bytes += packet_length;
            // Each field written once (no zeroing first). Slot and
            // generation in the token: a return is checked against both.
            out[got++] = ndisshm_guest_packet{r.queue_id,
                                              chain[0].length,
                                              segs[0].handle,
                                              chain[0].offset,
                                              n,
                                              segs[0].data,
                                              static_cast<uint32_t>(packet_length),
                                              0,
                                              segs,
                                              (uint64_t{h.generation} << 32) | slot};
        }
        r.rx.store_consumer(r.rx_cons);
    }
    return got;
}

void Session::complete(Rings& r, uint32_t cookie) {
    // Never more out than the ring holds with an honest host (its table is
    // the ring's size); a host that lies about its consumer index loses the
    // completion, not our memory.
    // The host's index is read only when the room we knew of is used up
    // (once a ring's worth, not once a packet: its line is the host's).
    if (r.done_room == 0) {
        const uint32_t used = r.done_prod - r.done.load_consumer();
        r.done_room = used >= r.done.size() ? 0 : r.done.size() - used;
        if (r.done_room == 0) return;
    }
    --r.done_room;
    r.done.store(r.done_prod++, ipc::Completion{cookie});
}

void Session::publish_completions() {
    for (auto& rp : rings_) {
        Rings& r = *rp;
        if (r.done_published == r.done_prod) continue;
        r.done_published = r.done_prod;
        r.done.publish_producer(r.done_prod);  // seq_cst, then the flag: ring.hpp's wake-up protocol
        if (r.done.take_wakeup()) r.done_kick.signal();  // once until the host sleeps again
    }
}

uint32_t Session::rx_burst(ndisshm_guest_packet* packets, uint32_t max) {
    if (!channel_ || max == 0) return 0;
    const uint32_t n = take(packets, max);  // segments live with the held slot until returned
    publish_completions();  // the bad ones
    return n;
}

NDIS_STATUS Session::rx_return(const ndisshm_guest_packet* packets, uint32_t count) {
    NDIS_STATUS status = NDIS_STATUS_SUCCESS;
    for (uint32_t i = 0; i < count; ++i) {
        const uint32_t slot = static_cast<uint32_t>(packets[i].token);
        const uint32_t generation = static_cast<uint32_t>(packets[i].token >> 32);
        if (slot >= held_.size() || generation == 0 || generation > held_[slot].generation) {
            last_error_ = "ndisshm_guest_rx_return: packet " + std::to_string(i) +
                          " was not received by ndisshm_guest_rx_burst (its token is not one we gave)";
            status = NDIS_STATUS_INVALID_PARAMETER;
            continue;
        }
        const Held& h = held_[slot];
        // Returned already, or its session or queue has ended: nothing to do.
        if (!h.held || h.generation != generation) continue;
        release(slot);
        if (Rings* r = rings_of(h.queue_id); r != nullptr) complete(*r, h.cookie);
    }
    publish_completions();
    return status;
}

NDIS_STATUS Session::control_now() {
    auto r = channel_->receive(0);
    if (!r) return r.error().err == ETIMEDOUT ? NDISSHM_STATUS_TIMEOUT : receive_failed(r.error());
    return handle(*r);
}

NDIS_STATUS Session::sleep_until(int timeout_ms) {
    if (busy_poll_) return NDISSHM_STATUS_TIMEOUT;  // the caller spins
    NDIS_STATUS status = NDISSHM_STATUS_TIMEOUT;
    if (!arm()) {
        std::vector<os::PollEntry> entries{{channel_->fd()}};
        for (auto& r : rings_) entries.push_back({r->rx_kick.fd()});
        auto n = os::poll_readable(entries, timeout_ms);
        if (!n) status = end(NDIS_STATUS_FAILURE, n.error().message());
        for (size_t i = 1; i < entries.size(); ++i)
            if (entries[i].readable) rings_[i - 1]->rx_kick.drain();
        if (n && *n > 0) status = NDIS_STATUS_SUCCESS;
    }
    disarm();
    return status;
}

bool Session::arm() {
    // Need-wakeup: the flag (seq_cst), then one more look (ring.hpp).
    for (auto& r : rings_) r->rx.store_flags(ipc::kNeedWakeup);
    armed_ = !rings_.empty();
    return rings_ready();
}

void Session::disarm() {
    if (!armed_) return;
    armed_ = false;
    for (auto& r : rings_) r->rx.store_flags(0);
}

NDIS_STATUS Session::wait(int timeout_ms) {
    if (!channel_ && reconnecting_) return reconnect_step(timeout_ms);
    if (!channel_) {
        last_error_ = used_ ? "no session: it has ended (" + end_reason_ + ")" : "no session: connect first";
        return NDIS_STATUS_FAILURE;
    }
    if (protocol_broken_) return end(NDISSHM_STATUS_PROTOCOL, protocol_why_);
    using Clock = std::chrono::steady_clock;
    // The clock is read only once the rings are found empty: a guest that
    // keeps up finds them ready at once, and a clock read (a vDSO call, slow
    // in some VMs: 11% of a busy-polling guest's samples in perf) is not free.
    Clock::time_point deadline{};
    bool timing = false;
    for (;;) {
        if (rings_ready()) {
            if (++polls_since_control_ < kPollsPerControlCheck) return NDIS_STATUS_SUCCESS;
            polls_since_control_ = 0;
            const NDIS_STATUS c = control_now();
            return c == NDISSHM_STATUS_TIMEOUT ? NDIS_STATUS_SUCCESS : c;
        }
        // Empty. A message may be what the caller waits for; a busy-polling
        // caller spins here, and asks the socket (a system call, longer than
        // a batch takes to arrive) once every kPollsPerControlCheck turns,
        // not at each: its turns watch the ring, as a polling driver's do.
        if (!busy_poll_ || ++polls_since_control_ >= kPollsPerControlCheck) {
            polls_since_control_ = 0;
            if (const NDIS_STATUS c = control_now(); c != NDISSHM_STATUS_TIMEOUT) return c;
        }
        // A busy poller looks at the clock again only on the turns it asks
        // the socket: its deadline is kept to within those 64 turns.
        if (busy_poll_ && timing && polls_since_control_ != 0) continue;
        int left = -1;
        if (timeout_ms >= 0) {
            const auto now = Clock::now();
            if (!timing) {
                timing = true;
                deadline = now + std::chrono::milliseconds(timeout_ms);
            }
            left = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
            // Interrupt mode leaves need-wakeup set: a caller that sleeps in
            // its own epoll on fd() is woken by the next packet.
            if (left <= 0) return !busy_poll_ && arm() ? NDIS_STATUS_SUCCESS : NDISSHM_STATUS_TIMEOUT;
        }
        if (busy_poll_) continue;
        if (const NDIS_STATUS s = sleep_until(left); s < 0) return s;
    }
}

NDIS_STATUS Session::poll(int timeout_ms) {
    NDIS_STATUS status = wait(timeout_ms);
    if (status != NDIS_STATUS_SUCCESS || !channel_) return status;
    static thread_local std::vector<ndisshm_guest_packet> packets(kPacketsPerPoll);
    const uint32_t n = take(packets.data(), kPacketsPerPoll);
    for (uint32_t i = 0; i < n; ++i) {
        if (on_packet_ != nullptr) on_packet_(context_, &packets[i]);
        // Given back as soon as the callback returns: the packet is valid
        // only during it.
        const auto slot = static_cast<uint32_t>(packets[i].token);
        release(slot);
        const Held& h = held_[slot];
        if (Rings* r = rings_of(h.queue_id); r != nullptr) complete(*r, h.cookie);
    }
    publish_completions();
    if (protocol_broken_) return end(NDISSHM_STATUS_PROTOCOL, protocol_why_);
    return NDIS_STATUS_SUCCESS;
}

int Session::fd() {
    if (!epoll_.valid()) {
        auto ep = os::epoll_create();
        if (!ep) {
            last_error_ = ep.error().message();
            return -1;
        }
        epoll_ = std::move(*ep);
        if (channel_) (void)os::epoll_watch(epoll_.get(), channel_->fd());
        // Between sessions the fd wakes its sleeper when an attempt is due.
        if (auto t = os::TimerFd::create(); t && os::epoll_watch(epoll_.get(), t->fd())) {
            retry_timer_ = std::move(*t);
            if (reconnecting_) schedule_attempt(next_attempt_at_);
        }
        for (auto& r : rings_) (void)os::epoll_watch(epoll_.get(), r->rx_kick.fd());
    }
    return epoll_.get();
}

void Session::on_block_added(const ipc::BlockAdded& b) {
    const bool inside = b.length > 0 && b.guest_offset <= bytes_ && b.length <= bytes_ - b.guest_offset;
    // An index another block holds would make the rings name two blocks at once.
    const bool index_free = b.index < ipc::kMaxBlocks && block_at(static_cast<uint16_t>(b.index)) == nullptr;
    if (!inside || !index_free || blocks_.count(b.handle) != 0) {
        ++stats_.bad_blocks;  // never recorded, so no packet can be read from it
        return;
    }
    const Block block{b.guest_offset, b.length, b.queue_id, b.usage, static_cast<uint16_t>(b.index), b.handle};
    const Block& kept = blocks_.emplace(b.handle, block).first->second;
    if (by_index_.size() <= kept.index) by_index_.resize(size_t{kept.index} + 1, nullptr);
    by_index_[kept.index] = &kept;
    emit(block_event(NDISSHM_GUEST_BLOCK_ADDED, b.handle, block));
}

void Session::on_block_removed(uint64_t handle) {
    const auto it = blocks_.find(handle);
    if (it == blocks_.end()) {
        ++stats_.bad_blocks;
        return;
    }
    const Block block = it->second;
    if (Rings* r = rings_of(block.queue_id); r != nullptr && r->handle == handle) drop_rings(block.queue_id);
    forget_block(it->second);
    blocks_.erase(it);
    emit(block_event(NDISSHM_GUEST_BLOCK_REMOVED, handle, block));
}

void Session::on_queue_detached(uint32_t queue_id) {
    // The host removes a queue's blocks before the queue; any it did not are
    // forgotten here, so a later descriptor naming them is bad, not read.
    drop_rings(queue_id);
    for (auto it = blocks_.begin(); it != blocks_.end();) {
        if (it->second.queue_id != queue_id) {
            ++it;
            continue;
        }
        const auto handle = it->first;
        const Block block = it->second;
        forget_block(it->second);
        it = blocks_.erase(it);
        emit(block_event(NDISSHM_GUEST_BLOCK_REMOVED, handle, block));
    }
    queues_.erase(queue_id);
    ndisshm_guest_event e{};
    e.kind = NDISSHM_GUEST_QUEUE_DETACHED;
    e.queue_id = queue_id;
    emit(e);
}

ndisshm_guest_event Session::block_event(ndisshm_guest_event_kind kind, uint64_t handle, const Block& b) const {
    ndisshm_guest_event e{};
    e.kind = kind;
    e.queue_id = b.queue_id;
    e.handle = handle;
    e.guest_offset = b.guest_offset;
    e.length = b.length;
    e.usage = b.usage;
    return e;
}

void Session::emit(const ndisshm_guest_event& e) const {
    if (on_event_ != nullptr) on_event_(context_, &e);
}

}  // namespace ndisshm::guest
