#include "hub/guest_hub.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "hub/guest_session.hpp"
#include "nic/provider_ops.hpp"
#include "os/unix_socket.hpp"

namespace ndisshm::ipc {

namespace {
constexpr int kMessagesPerTurn = 64;  // per session per poll round: one chatty guest cannot starve the rest
constexpr size_t kPendingHandshakes = 16;  // sessions beyond max_guests that may be mid-handshake
// Handshakes one process (SO_PEERCRED's pid) may have pending at once: a
// flood of idle connections from one peer fills its own share, not the slots
// an honest guest of another process needs.
constexpr size_t kPendingPerPeer = 4;
// Completions are reaped by each delivery; when traffic stops, the hub thread
// reaps what guests gave back after this long, so books and counters settle
// (and an idle host, with nothing outstanding, sleeps without a timer).
constexpr int kReapIdleMs = 5;

// A failed poll (ENOMEM, say) is the kernel short of something for a moment:
// the hub waits and polls again rather than abandon its guests. The wait
// doubles while failures persist, so a lasting one logs a few lines a second
// instead of spinning, and is cut into slices so stop() is never kept long.
constexpr int kPollRetryFirstMs = 10;
constexpr int kPollRetryMaxMs = 500;
constexpr int kPollRetrySliceMs = 10;
}  // namespace

Result<std::unique_ptr<GuestHub>> GuestHub::start(NDIS_HANDLE adapter, GuestHubConfig config) {
    if (!RingGeometry::valid_size(config.ring_size) || config.ring_size < kMinHubRingSize)
        return Error{"GuestHub::start", EINVAL,
                     "ring_size " + std::to_string(config.ring_size) + " is not a power of two in " +
                         std::to_string(kMinHubRingSize) + ".." + std::to_string(kMaxRingSize)};
    std::unique_ptr<GuestHub> hub(new GuestHub(adapter, std::move(config)));
    providers::GuestProviderConfig pc;
    pc.listener = hub.get();
    auto provider = providers::GuestProvider::create(pc);
    if (!provider) return provider.error();
    hub->provider_ = std::move(*provider);
    if (NDIS_STATUS s = ndisshm_binding_create(adapter, "guest-hub", &hub->binding_); s != NDIS_STATUS_SUCCESS)
        return Error{"ndisshm_binding_create(guest-hub)", 0, ndisshm_status_name(s)};
    const ndisshm_provider_ops ops = nic::provider_ops(*hub->provider_);
    if (NDIS_STATUS s = ndisshm_binding_register_provider(hub->binding_, &ops); s != NDIS_STATUS_SUCCESS)
        return Error{"ndisshm_binding_register_provider(guest-hub)", 0,
                     std::string(ndisshm_status_name(s)) + " (does the adapter have a provider already?)"};
    hub->miniport_ = std::make_unique<nic::VmqMiniport>(adapter, hub->config_.miniport);
    auto listen = listen_at(hub->socket_path_);
    if (!listen) return listen.error();
    hub->listen_fd_ = std::move(*listen);
    // A connection that goes between poll and accept must not block the hub.
    if (auto s = os::set_nonblocking(hub->listen_fd_.get()); !s) return s.error();
    auto wake = os::WakeFd::create();
    if (!wake) return wake.error();
    hub->wake_ = std::make_unique<os::WakeFd>(std::move(*wake));
    hub->thread_ = std::thread(&GuestHub::run, hub.get());
    hub->say("listening on " + hub->socket_path_);
    return hub;
}

GuestHub::GuestHub(NDIS_HANDLE adapter, GuestHubConfig config) : adapter_(adapter), config_(std::move(config)) {
    socket_path_ = config_.socket_path.empty() ? default_socket_dir() + "/host.sock" : config_.socket_path;
    // A guest whose memory cannot hold one queue's buffers is refused at
    // SET_MEMORY, with the reason, rather than later with a failed allocation.
    // (A guest given lookahead split by choose_queue_params needs more; one
    // whose memory runs short then is refused when its buffers are allocated.)
    const bool split = (config_.queue_params.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0;
    const uint64_t page = 4096;
    const uint64_t rings = (RingGeometry::for_size(config_.ring_size).bytes + page - 1) / page * page;
    const uint64_t need = nic::VmqMiniport(adapter_, config_.miniport)
                              .queue_bytes(split ? config_.queue_params.lookahead_size : 0) + rings;
    config_.memory_limits.min_bytes = std::max(config_.memory_limits.min_bytes, need);
}

GuestHub::~GuestHub() { stop(); }

void GuestHub::stop() {
    if (stopped_) return;
    stopped_ = true;
    if (thread_.joinable()) {
        stopping_ = true;
        wake_->signal();
        thread_.join();
    }
    // Every guest block went with its session; what is left belongs to other
    // drivers on the adapter, and NDIS reclaims it (with a report) here.
    if (binding_ != nullptr) ndisshm_binding_destroy(binding_);
    binding_ = nullptr;
    if (listen_fd_.valid()) {
        listen_fd_ = os::UniqueFd();
        std::error_code ec;
        std::filesystem::remove(socket_path_, ec);
    }
}

void GuestHub::say(const std::string& line) const {
    if (config_.log) {
        config_.log(line);
    } else {
        std::fprintf(stderr, "ndisshm hub: %s\n", line.c_str());
    }
}

void GuestHub::notify() {
    {
        std::lock_guard lock(mu_);
        ++events_;
    }
    changed_.notify_all();
}

void GuestHub::run() {
    std::vector<os::PollEntry> entries;
    std::vector<SessionPtr> polled;
    std::vector<std::pair<size_t, SessionPtr>> kicks;  // (entry, session) of each completion kick
    uint64_t poll_failures = 0;  // in a row
    while (!stopping_) {
        entries.assign({{wake_->fd()}, {listen_fd_.get()}});
        polled.clear();
        kicks.clear();
        auto deadline = Clock::time_point::max();
        bool unreaped = false;
        {
            std::lock_guard lock(mu_);
            for (auto& [id, s] : sessions_) {
                entries.push_back({s->channel.fd()});
                polled.push_back(s);
                if (s->state != Session::State::Running) deadline = std::min(deadline, s->deadline);
                unreaped = unreaped || s->unreaped.load(std::memory_order_relaxed);
            }
            // After the sockets: entry i + 2 stays session i's socket. The
            // fd is the hub thread's own (set and cleared by it alone).
            for (auto& s : polled)
                if (s->done_kick_fd >= 0) {
                    kicks.emplace_back(entries.size(), s);
                    entries.push_back({s->done_kick_fd});
                }
        }
        int timeout = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            timeout = static_cast<int>(std::clamp<long long>(left + 1, 0, 60'000));
        }
        if (unreaped) timeout = timeout < 0 ? kReapIdleMs : std::min(timeout, kReapIdleMs);
        auto n = os::poll_readable(entries, timeout);
        if (!n) {
            // EINTR never gets here (poll_readable asks again); anything else
            // is waited out, sessions untouched: their deadlines are checked
            // once poll works again.
            const int wait_ms = std::min(kPollRetryFirstMs << std::min<uint64_t>(poll_failures, 6), kPollRetryMaxMs);
            ++poll_failures;
            say("poll failed: " + n.error().message() + "; polling again in " + std::to_string(wait_ms) + " ms");
            for (int slept = 0; slept < wait_ms && !stopping_; slept += kPollRetrySliceMs)
                std::this_thread::sleep_for(std::chrono::milliseconds(kPollRetrySliceMs));
            continue;
        }
        if (poll_failures != 0) {
            say("poll works again after " + std::to_string(poll_failures) + " failure(s)");
            poll_failures = 0;
        }
        if (entries[0].readable) wake_->drain();
        if (entries[1].readable) accept_one();
        for (auto& [entry, s] : kicks)
            if (entries[entry].readable && s->state == Session::State::Running) reap_kicked(s);
        if (unreaped)
            for (auto& s : polled)
                if (s->state == Session::State::Running && s->unreaped.load(std::memory_order_relaxed)) reap_kicked(s);
        for (size_t i = 0; i < polled.size(); ++i) {
            const SessionPtr& s = polled[i];
            if (s->state == Session::State::Closed) continue;
            if (entries[i + 2].readable || entries[i + 2].hung_up) serve(s);
            if (s->state == Session::State::Closed) continue;
            if (s->broken.load() && !s->violation_reason().empty()) {
                close_session(s, s->violation_reason(), Ending::Refused,
                              static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER));
            } else if (s->broken.load()) {
                const bool refused = s->failure_refused();
                close_session(s, s->failure(), refused ? Ending::Refused : Ending::GuestLeft,
                              refused ? static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER) : 0u);
            } else if (s->state != Session::State::Running && Clock::now() >= s->deadline) {
                close_session(s, "handshake not finished within " + std::to_string(config_.handshake_timeout_ms) + " ms",
                              Ending::Refused, static_cast<uint32_t>(NDIS_STATUS_FAILURE));
            }
        }
    }
    // Host shutdown: each guest is told its blocks and queue go, then BYE.
    std::vector<SessionPtr> all;
    {
        std::lock_guard lock(mu_);
        for (auto& [id, s] : sessions_) all.push_back(s);
    }
    for (auto& s : all) close_session(s, "host shutting down", Ending::HostStops);
}

void GuestHub::accept_one() {
    auto fd = accept_from(listen_fd_.get());
    if (!fd) {
        if (fd.error().err != EAGAIN && fd.error().err != EWOULDBLOCK) say("accept: " + fd.error().message());
        return;
    }
    if (auto s = os::set_nonblocking(fd->get()); !s) {
        say("dropping a connection: " + s.error().message());
        return;
    }
    auto peer = os::peer_credentials(fd->get());
    const int pid = peer ? peer->pid : 0;
    std::string full;
    {
        std::lock_guard lock(mu_);
        size_t from_peer = 0;
        for (const auto& [id, s] : sessions_) {
            if (s->state == Session::State::Running) continue;  // the hub thread's: read here, on it
            if (pid != 0 && s->peer_pid == pid) ++from_peer;
        }
        // Connections that never finish their handshake cost a socket each
        // until their deadline: bound them, so a flood cannot exhaust our
        // fds, and bound each peer's share, so one process's flood cannot
        // keep another's guest out.
        if (sessions_.size() >= config_.max_guests + kPendingHandshakes) {
            full = "the host is full: " + std::to_string(sessions_.size()) + " sessions (at most " +
                   std::to_string(config_.max_guests) + " guests and " + std::to_string(kPendingHandshakes) +
                   " handshakes); try again later";
        } else if (from_peer >= kPendingPerPeer) {
            full = "too many handshakes pending from process " + std::to_string(pid) + " (at most " +
                   std::to_string(kPendingPerPeer) + " at a time); try again later";
        } else {
            const uint32_t id = next_guest_id_++;
            auto s = std::make_shared<Session>(std::move(*fd), id,
                                               Clock::now() + std::chrono::milliseconds(config_.handshake_timeout_ms));
            s->info.guest_id = id;
            s->peer_pid = pid;
            sessions_.emplace(id, std::move(s));
            ++stats_.accepted;
            return;
        }
    }
    // Said, not just closed: the guest reports why (NDIS_STATUS_RESOURCES)
    // instead of "host gone", and may try again later. Best effort: the
    // socket is new, so its buffer has room.
    say("refusing a connection: " + full);
    Channel refusal(std::move(*fd));
    (void)refusal.send_error(static_cast<uint32_t>(NDIS_STATUS_RESOURCES), full);
}

void GuestHub::serve(const SessionPtr& s) {
    for (int i = 0; i < kMessagesPerTurn && s->state != Session::State::Closed; ++i) {
        auto r = s->channel.receive(0);
        if (!r) {
            const int err = r.error().err;
            if (err == ETIMEDOUT) return;
            if (err == ECONNRESET)
                close_session(s, "guest closed the connection", Ending::GuestLeft);
            else if (err == EPROTO)
                close_session(s, "malformed message: " + r.error().message(), Ending::Refused,
                              static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER));
            else
                close_session(s, "receive failed: " + r.error().message(), Ending::GuestLeft);
            return;
        }
        Message& m = *r;
        const MessageType t = m.type();
        if (t == MessageType::Bye) {
            close_session(s, "guest said BYE", Ending::GuestLeft);
            return;
        }
        if (s->state == Session::State::AwaitHello && t == MessageType::Hello) {
            handle_hello(s, m);
        } else if (s->state == Session::State::AwaitMemory && t == MessageType::SetMemory) {
            handle_set_memory(s, m);
        } else {
            static constexpr const char* kStates[] = {"HELLO", "SET_MEMORY", "BYE", ""};
            close_session(s,
                          std::string("unexpected ") + printable_type_name(t) + " (expected " +
                              kStates[static_cast<int>(s->state)] + ")",
                          Ending::Refused, static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER));
            return;
        }
        if (s->state != Session::State::Closed && !s->healthy()) {
            close_session(s, s->failure(), s->failure_refused() ? Ending::Refused : Ending::GuestLeft);
            return;
        }
    }
}

GuestHub::SessionPtr GuestHub::session_of_queue(uint32_t queue) const {
    std::lock_guard lock(mu_);
    auto it = queue_owner_.find(queue);
    return it == queue_owner_.end() ? nullptr : it->second;
}

GuestHub::SessionPtr GuestHub::session_of_guest(uint32_t guest_id) const {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(guest_id);
    return it == sessions_.end() ? nullptr : it->second;
}

Delivery GuestHub::deliver(uint32_t queue, std::span<const std::byte> packet) {
    const std::span<const std::byte> one[] = {packet};
    if (deliver_batch(queue, one) == 1) return Delivery::Delivered;
    auto s = session_of_queue(queue);
    if (s == nullptr) return Delivery::NoGuest;
    std::lock_guard lock(s->mu);
    return s->accepting ? Delivery::Dropped : Delivery::NoGuest;
}

void GuestHub::violation_locked(const SessionPtr& s, const std::string& why) {
    s->accepting = false;  // not one more write into this guest's memory
    // The socket is fine: the ERROR with this reason still goes out.
    if (s->violation.empty()) s->violation = "ring violation: " + why;
    s->broken = true;
    wake_->signal();
}

void GuestHub::reap_locked(const SessionPtr& s) {
    const uint32_t queue = s->queue_id();
    QueueDriver* driver = config_.queue_driver;
    uint64_t back = 0;
    std::string why;
    if (s->rings->cookies() == Cookies::Table) {
        // Rings of a queue driver's queue (attach_rings chose by it).
        why = s->rings->reap([&](const Outstanding& o) {
            for (uint8_t i = 0; i < o.segments; ++i)
                if (!driver->give_back(queue, o.seg[i]))
                    say("queue " + std::to_string(queue) + ": the driver refused a packet the hub held for it");
            ++back;
        });
    } else {
        // The guest's cookies are the miniport's: it checks each one (held
        // now, of its generation) and takes each packet back exactly once.
        why = s->rings->reap_cookies(
            [&](std::span<const uint32_t> cookies) {
                back = miniport_->give_back_cookies(s->miniport_queue, cookies);
                return back;
            },
            [&](uint32_t cookie) { return miniport_->why_refused(queue, cookie); });
    }
    // Each of these counters is a locked add on a line every queue's thread
    // shares: none when there is nothing to add.
    if (back != 0) returned_.fetch_add(back, std::memory_order_relaxed);
    if (!why.empty()) violation_locked(s, why);
}

void GuestHub::reap_kicked(const SessionPtr& s) {
    std::lock_guard lock(s->mu);
    if (s->rings == nullptr) return;
    s->rings->drain_done_kick();
    if (s->accepting) reap_locked(s);
    // Only here, at most every kReapIdleMs: cleared by the data path, the
    // flag would cost a wake-up of this thread per batch.
    s->unreaped.store(s->accepting && s->rings->outstanding() != 0, std::memory_order_relaxed);
}

size_t GuestHub::deliver_batch(uint32_t queue, std::span<const std::span<const std::byte>> packets) {
    auto s = session_of_queue(queue);
    if (s == nullptr || packets.empty()) return 0;
    // Held across the writes and the publication: teardown takes it first,
    // so no write can land in memory the queue no longer owns.
    std::lock_guard lock(s->mu);
    if (!s->accepting) return 0;
    if (s->rings == nullptr) {
        // Its buffers may exist already, its rings not yet (they come last in
        // the handshake, after every BLOCK_ADDED): dropped, and counted.
        dropped_.fetch_add(packets.size(), std::memory_order_relaxed);
        return 0;
    }
    GuestRings& rings = *s->rings;
    // A queue driver's queue takes its packets through announce.
    if (rings.cookies() != Cookies::Miniport) [[unlikely]]
        return 0;
    // What the guest gave back since the last batch: its buffers are free again.
    reap_locked(s);
    uint32_t descriptors = 0, room = 0;
    if (std::string why = rings.room(descriptors, room); !why.empty()) violation_locked(s, why);
    if (!s->accepting) return 0;
    // The zero-copy writes, into the guest's memory, as many as the ring and
    // the table take (a split packet's chain is never cut).
    const size_t offered = std::min<size_t>(packets.size(), room);
    // The session's, only ever grown: a batch constructs and allocates nothing.
    std::vector<nic::RxDescriptor>& held = s->held;
    if (held.size() < offered) held.resize(offered);
    rings.prefetch_rx(static_cast<uint32_t>(std::min<size_t>(offered, descriptors)));
    const size_t got = miniport_->receive_batch(s->miniport_queue, packets.first(offered), descriptors, held.data());
    rings.push_rx(std::span<const nic::RxDescriptor>(held.data(), got));
    if (rings.publish()) kicks_.fetch_add(1, std::memory_order_relaxed);
    if (got != 0 && !s->unreaped.load(std::memory_order_relaxed)) {
        s->unreaped.store(true, std::memory_order_relaxed);
        wake_->signal();  // the hub thread starts its reap timer (once per idle-to-busy turn)
    }
    if (got != packets.size()) dropped_.fetch_add(packets.size() - got, std::memory_order_relaxed);
    if (got != 0) delivered_.fetch_add(got, std::memory_order_relaxed);
    return got;
}

Delivery GuestHub::announce(uint32_t queue, std::span<const PacketDescriptor> packets) {
    auto s = session_of_queue(queue);
    if (s == nullptr || packets.empty() || packets.size() > kMaxAnnounce) return Delivery::NoGuest;
    // Under the session's lock, as deliver's writes are: close_session takes
    // it before it stops the driver's queue, so nothing is announced after.
    std::lock_guard lock(s->mu);
    if (!s->accepting) return Delivery::NoGuest;
    // The driver's queue starts before the rings are attached (they come
    // last in the handshake): not yet room, so the driver tries again.
    if (s->rings == nullptr) return Delivery::Dropped;
    GuestRings& rings = *s->rings;
    if (rings.cookies() != Cookies::Table) [[unlikely]]
        return Delivery::NoGuest;  // rings made before the driver came: the hub's miniport names their packets
    reap_locked(s);
    uint32_t descriptors = 0, room = 0;
    if (std::string why = rings.room(descriptors, room); !why.empty()) violation_locked(s, why);
    if (!s->accepting) return Delivery::NoGuest;
    size_t chains = 0;
    for (size_t i = 0; i < packets.size(); i += chain_length(packets, i)) ++chains;
    if (packets.size() > descriptors || chains > room) return Delivery::Dropped;
    // A block the guest was never told of has no index to name it by.
    if (!rings.names_known_blocks(packets)) [[unlikely]] {
        say("queue " + std::to_string(queue) + ": the driver announced a packet in a block the guest does not know");
        return Delivery::Dropped;
    }
    for (size_t i = 0; i < packets.size();) {
        const size_t n = std::min<size_t>(chain_length(packets, i), kMaxSegmentsPerPacket);
        rings.push_with([&](Outstanding& o) {
            o.segments = static_cast<uint8_t>(n);
            for (size_t k = 0; k < n; ++k) {
                o.seg[k] = packets[i + k];
                o.seg[k].flags = k + 1 < n ? kSegmentFollows : 0u;
                o.seg[k].reserved = 0;
            }
        });
        i += chain_length(packets, i);
    }
    if (rings.publish()) kicks_.fetch_add(1, std::memory_order_relaxed);
    // The driver's buffers come back only through the completion ring: ask
    // the guest to kick the hub thread when it gives some, so they return
    // even when no more traffic comes to trigger a reap here.
    rings.want_completions();
    reap_locked(s);
    delivered_.fetch_add(chains, std::memory_order_relaxed);
    return Delivery::Delivered;
}

void GuestHub::block_added(uint32_t guest_id, const providers::GuestBlock& b) {
    auto s = session_of_guest(guest_id);
    if (s == nullptr) return;
    std::lock_guard lock(s->mu);
    if (!s->tell_blocks) return;
    const std::optional<uint16_t> index = s->blocks.add(b.handle);
    if (!index) {
        // Not one the rings can name: the guest would be given packets it cannot read.
        s->fail_locked("block " + to_hex(b.handle) + ": more than " + std::to_string(kMaxBlocks) +
                           " blocks at once, or announced twice",
                       true);
        wake_->signal();
        return;
    }
    const BlockAdded m{b.handle, b.guest_offset, static_cast<uint32_t>(b.length), b.queue_id, b.usage, *index};
    if (!s->send_locked(MessageType::BlockAdded, &m, sizeof(m))) wake_->signal();
}

void GuestHub::block_removed(uint32_t guest_id, const providers::GuestBlock& b) {
    auto s = session_of_guest(guest_id);
    if (s == nullptr) return;
    const BlockRemoved m{b.handle};
    std::lock_guard lock(s->mu);
    s->blocks.remove(b.handle);
    if (s->tell_blocks) s->send_locked(MessageType::BlockRemoved, &m, sizeof(m));
}

std::vector<GuestInfo> GuestHub::guests() const {
    std::lock_guard lock(mu_);
    std::vector<GuestInfo> out;
    for (const auto& [q, s] : queue_owner_) out.push_back(s->info);
    return out;
}

GuestHubStats GuestHub::stats() const {
    std::lock_guard lock(mu_);
    GuestHubStats s = stats_;
    s.running = queue_owner_.size();
    s.delivered = delivered_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.returned = returned_.load(std::memory_order_relaxed);
    s.kicks = kicks_.load(std::memory_order_relaxed);
    return s;
}

size_t GuestHub::ready_guests() const {
    std::vector<SessionPtr> owners;
    {
        std::lock_guard lock(mu_);
        for (const auto& [q, s] : queue_owner_) owners.push_back(s);
    }
    // Each session's lock on its own, never under the hub's (deliver takes
    // them in that order too: the hub's, released, then the session's).
    size_t ready = 0;
    for (const SessionPtr& s : owners) {
        std::lock_guard lock(s->mu);
        if (s->accepting && s->rings != nullptr) ++ready;
    }
    return ready;
}

std::vector<std::string> GuestHub::closed_reasons() const {
    std::lock_guard lock(mu_);
    return closed_reasons_;
}

bool GuestHub::wait_until(const std::function<bool()>& done, int timeout_ms) const {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::unique_lock lock(mu_);
    for (;;) {
        const uint64_t seen = events_;
        lock.unlock();
        if (done()) return true;
        lock.lock();
        // done() may read state that changes without an event (stats of the
        // data path): look again at least every 10 ms.
        const auto until = std::min(deadline, Clock::now() + std::chrono::milliseconds(10));
        changed_.wait_until(lock, until, [&] { return events_ != seen; });
        if (Clock::now() >= deadline) {
            lock.unlock();
            return done();
        }
    }
}

}  // namespace ndisshm::ipc
