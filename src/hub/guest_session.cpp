// The hub's work on one session: the handshake (HELLO, SET_MEMORY, the queue,
// its buffers and its rings) and the session's teardown.
#include "hub/guest_session.hpp"

#include <algorithm>
#include <cerrno>
#include <set>
#include <span>

#include <ndis/ndis_shm.h>

namespace ndisshm::ipc {

const char* printable_type_name(MessageType t) {
    const char* name = message_type_name(t);
    return name != nullptr ? name : "unknown";
}

std::string to_hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

namespace {
constexpr size_t kReasonsKept = 256;
constexpr uint32_t kRefused = static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER);

// The guest's name as it may appear in a log line: up to the first NUL,
// printable ASCII only (a guest chooses these bytes).
std::string clean_name(const char (&raw)[kNameBytes]) {
    std::string n;
    for (char c : raw) {
        if (c == '\0') break;
        n += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return n.empty() ? "unnamed" : n;
}
}  // namespace

void GuestHub::handle_hello(const SessionPtr& s, const Message& m) {
    const Hello h = m.as<Hello>();
    {
        std::lock_guard lock(mu_);
        s->info.name = clean_name(h.name);
    }
    // Full already: say so before the guest hands over its memory, so a
    // guest that will try again later never had a session to lose. (Two
    // racing for the last queue can still pass here: attach_queue decides.)
    bool full = false;
    {
        std::lock_guard lock(mu_);
        full = queue_owner_.size() >= config_.max_guests;
    }
    if (full) {
        close_session(s, "the host runs its maximum of " + std::to_string(config_.max_guests) + " guests",
                      Ending::Refused, static_cast<uint32_t>(NDIS_STATUS_RESOURCES));
        return;
    }
    s->state = Session::State::AwaitMemory;
    say("guest " + std::to_string(s->guest_id) + " '" + s->info.name + "' connected");
    s->send(MessageType::HelloAck, HelloAck{s->guest_id, 0});
}

void GuestHub::handle_set_memory(const SessionPtr& s, Message& m) {
    const SetMemory sm = m.as<SetMemory>();
    auto memory = providers::GuestMemory::adopt(std::move(m.fd), sm.size, sm.guest_physical_base, config_.memory_limits,
                                                s->info.name);
    if (!memory) {
        close_session(s, "SET_MEMORY refused: " + memory.error().detail, Ending::Refused, kRefused);
        return;
    }
    s->memory = std::move(*memory);
    if (auto added = provider_->add_guest(s->guest_id, s->memory); !added) {
        close_session(s, added.error().message(), Ending::Refused, static_cast<uint32_t>(NDIS_STATUS_FAILURE));
        return;
    }
    s->guest_added = true;
    {
        std::lock_guard lock(mu_);
        s->info.memory_bytes = sm.size;
        s->info.guest_physical_base = sm.guest_physical_base;
    }
    if (!s->send(MessageType::MemoryAck, MemoryAck{sm.size})) return;  // serve() closes it
    if (attach_queue(s)) say("guest " + std::to_string(s->guest_id) + " '" + s->info.name + "' running on queue " +
                             std::to_string(s->queue_id()));
}

bool GuestHub::attach_queue(const SessionPtr& s) {
    uint32_t id = config_.first_queue_id;
    {
        std::lock_guard lock(mu_);
        if (queue_owner_.size() >= config_.max_guests) {
            id = 0;
        } else {
            std::set<uint32_t> used;
            for (const auto& [gid, other] : sessions_)
                if (other->queue_allocated) used.insert(other->info.queue_id);
            while (used.count(id) != 0) ++id;
        }
    }
    if (id == 0) {
        close_session(s, "the host runs its maximum of " + std::to_string(config_.max_guests) + " guests",
                      Ending::Refused, static_cast<uint32_t>(NDIS_STATUS_RESOURCES));
        return false;
    }
    ndisshm_queue_params params = config_.queue_params;
    if (config_.choose_queue_params) {
        GuestInfo who;
        {
            std::lock_guard lock(mu_);
            who = s->info;
        }
        who.queue_id = id;
        config_.choose_queue_params(who, params);
    }
    // The VMQ life cycle (spec section 4): allocate with parameters, assign
    // it to the guest before it completes, so that no allocation for it can
    // ever be served from anything but this guest's memory.
    if (NDIS_STATUS st = ndisshm_queue_allocate(binding_, id, &params); st != NDIS_STATUS_SUCCESS) {
        close_session(s, "cannot allocate VMQ " + std::to_string(id) + ": " + ndisshm_status_name(st), Ending::Refused,
                      static_cast<uint32_t>(st));
        return false;
    }
    {
        std::lock_guard lock(mu_);
        s->queue_allocated = true;
        s->info.queue_id = id;
    }
    if (auto a = provider_->assign_queue(id, s->guest_id); !a) {
        close_session(s, a.error().message(), Ending::Refused, static_cast<uint32_t>(NDIS_STATUS_FAILURE));
        return false;
    }
    if (NDIS_STATUS st = ndisshm_queue_allocation_complete(adapter_, id); st != NDIS_STATUS_SUCCESS) {
        close_session(s, "cannot complete VMQ " + std::to_string(id) + ": " + ndisshm_status_name(st), Ending::Refused,
                      static_cast<uint32_t>(st));
        return false;
    }
    const bool split = (params.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0;
    const QueueAttached qa{id, split ? kQueueLookaheadSplit : 0u, split ? params.lookahead_size : 0u, 0};
    if (!s->send(MessageType::QueueAttached, qa)) return false;
    // Owned before its buffers exist: the guest may see its last BLOCK_ADDED
    // and be told of packets before start_queue returns here; until then
    // deliver finds the ring empty (Dropped), never "no such guest".
    {
        std::lock_guard lock(mu_);
        queue_owner_[id] = s;
    }
    {
        std::lock_guard lock(s->mu);
        s->accepting = true;
    }
    std::string why;
    QueueDriver* driver = config_.queue_driver;
    const NDIS_STATUS started =
        driver != nullptr ? driver->start_queue(*this, id, &why) : miniport_->start_queue(id, &why);
    if (NDIS_STATUS st = started; st != NDIS_STATUS_SUCCESS) {
        // start_queue freed whatever part it got.
        close_session(s, "receive buffers: " + why + ": " + ndisshm_status_name(st) + " (" + provider_->last_error() + ")",
                      Ending::Refused, static_cast<uint32_t>(st));
        return false;
    }
    s->queue_started = true;
    if (!s->healthy()) return false;  // a BLOCK_ADDED did not go out: serve() closes it
    if (!attach_rings(s)) return false;
    s->state = Session::State::Running;
    notify();
    return true;
}

bool GuestHub::attach_rings(const SessionPtr& s) {
    const uint32_t queue = s->queue_id();
    const RingGeometry g = RingGeometry::for_size(config_.ring_size);
    // As a NIC driver allocates its descriptor rings: shared memory of the
    // queue, Usage Other, so the guest provider carves it out of this
    // guest's memory and the books show it. Whole pages, as the guest
    // provider carves them anyway: the books, the guest's BLOCK_ADDED and the
    // provider then all say the same length.
    const ULONG length = (g.bytes + 4095) / 4096 * 4096;
    NDIS_HANDLE block = nullptr;
    void* address = nullptr;
    if (NDIS_STATUS st = nic::allocate_queue_block(adapter_, queue, NdisSharedMemoryUsageOther, length, &block, &address);
        st != NDIS_STATUS_SUCCESS) {
        close_session(s, "the rings of queue " + std::to_string(queue) + " (" + std::to_string(g.bytes) +
                             " bytes): " + ndisshm_status_name(st) + " (" + provider_->last_error() + ")",
                      Ending::Refused, static_cast<uint32_t>(st));
        return false;
    }
    s->ring_block = block;
    auto rx_kick = os::WakeFd::create();
    auto done_kick = rx_kick ? os::WakeFd::create() : Result<os::WakeFd>(rx_kick.error());
    if (!done_kick) {
        close_session(s, "the rings' eventfds: " + done_kick.error().message(), Ending::Refused,
                      static_cast<uint32_t>(NDIS_STATUS_RESOURCES));
        return false;
    }
    const int fds[] = {rx_kick->fd(), done_kick->fd()};
    const RingsAttached ra{queue, g.size, reinterpret_cast<uintptr_t>(block), g.done_offset, 0};
    // The hub's own miniport names its packets itself; a queue driver's
    // cookies are its own business, so the host's table names those.
    auto rings = std::make_unique<GuestRings>(static_cast<std::byte*>(address), g, std::move(*rx_kick),
                                              std::move(*done_kick), s->blocks,
                                              config_.queue_driver != nullptr ? Cookies::Table : Cookies::Miniport);
    s->done_kick_fd = rings->done_kick_fd();
    std::unique_lock lock(s->mu);
    if (config_.queue_driver == nullptr) {
        // Every buffer of the queue was announced before the rings (the
        // handshake's order): each has its index by now.
        if (std::string why = rings->map_blocks(miniport_->blocks(queue)); !why.empty()) {
            lock.unlock();
            s->done_kick_fd = -1;
            close_session(s, "the rings of queue " + std::to_string(queue) + ": " + why, Ending::Refused,
                          static_cast<uint32_t>(NDIS_STATUS_FAILURE));
            return false;
        }
        s->miniport_queue = miniport_->queue_ref(queue);
    }
    // Set before the guest can know of them, so that its first kick finds them.
    s->rings = std::move(rings);
    return s->send_locked(MessageType::RingsAttached, &ra, sizeof(ra), fds);
}

void GuestHub::close_session(const SessionPtr& s, const std::string& reason, Ending ending, uint32_t error_code) {
    if (s->state == Session::State::Closed) return;
    const bool graceful = ending == Ending::HostStops;
    const bool refused = ending == Ending::Refused;
    std::unique_ptr<GuestRings> rings;
    {
        // From here deliver() writes nothing more into this guest's memory,
        // and nobody reads its rings: every cookie it holds is void.
        std::lock_guard lock(s->mu);
        s->accepting = false;
        s->tell_blocks = graceful;
        rings = std::move(s->rings);
        s->miniport_queue.reset();
    }
    s->done_kick_fd = -1;
    rings.reset();  // the eventfds close; the guest's copies are its own
    const uint32_t queue = s->queue_id();
    {
        std::lock_guard lock(mu_);
        auto it = queue_owner_.find(queue);
        if (it != queue_owner_.end() && it->second == s) queue_owner_.erase(it);
    }
    // Children first: the rings, the queue's buffers (BLOCK_REMOVED goes out
    // only when the host stops: a guest that left or was refused is told
    // nothing more), then the queue (no blocks left: no violation), then the
    // guest's memory.
    if (s->ring_block != nullptr) NdisFreeSharedMemory(adapter_, s->ring_block);
    s->ring_block = nullptr;
    if (s->queue_started) {
        if (config_.queue_driver != nullptr)
            config_.queue_driver->stop_queue(queue);  // its writes stop, then its blocks go
        else
            miniport_->stop_queue(queue);
    }
    if (s->queue_allocated) {
        if (NDIS_STATUS st = ndisshm_queue_free(adapter_, queue); st != NDIS_STATUS_SUCCESS)
            say("ndisshm_queue_free(" + std::to_string(queue) + "): " + ndisshm_status_name(st));
    }
    if (s->guest_added) provider_->remove_guest(s->guest_id);
    if (graceful && s->queue_allocated) s->send(MessageType::QueueDetached, QueueDetached{queue, 0});
    if (graceful) s->send(MessageType::Bye, Bye{0, 0});
    if (refused && error_code != 0) {
        const ErrorPayload e = error_payload(error_code, reason);
        std::lock_guard lock(s->mu);
        s->send_locked(MessageType::Error, e.bytes, e.length);
    }
    s->state = Session::State::Closed;
    s->memory.reset();  // the mapping goes with the last block's reference
    const std::string line = "guest " + std::to_string(s->guest_id) + " '" + s->info.name + "': " + reason;
    say((refused ? "session refused: " : "session closed: ") + line);
    {
        std::lock_guard lock(mu_);
        sessions_.erase(s->guest_id);
        ++stats_.closed;
        if (refused) ++stats_.refused;
        if (closed_reasons_.size() == kReasonsKept) closed_reasons_.erase(closed_reasons_.begin());
        closed_reasons_.push_back(line);
    }
    notify();
}

}  // namespace ndisshm::ipc
