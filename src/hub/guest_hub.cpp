#include "hub/guest_hub.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "hub/guest_session.hpp"
#include "nic/provider_ops.hpp"

namespace ndisshm::ipc {

namespace {
constexpr int kMessagesPerTurn = 64;  // per session per poll round: one chatty guest cannot starve the rest
constexpr size_t kPendingHandshakes = 16;  // sessions beyond max_guests that may be mid-handshake

// A failed poll (ENOMEM, say) is the kernel short of something for a moment:
// the hub waits and polls again rather than abandon its guests. The wait
// doubles while failures persist, so a lasting one logs a few lines a second
// instead of spinning, and is cut into slices so stop() is never kept long.
constexpr int kPollRetryFirstMs = 10;
constexpr int kPollRetryMaxMs = 500;
constexpr int kPollRetrySliceMs = 10;
}  // namespace

Result<std::unique_ptr<GuestHub>> GuestHub::start(NDIS_HANDLE adapter, GuestHubConfig config) {
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
    const uint64_t need = nic::VmqMiniport(adapter_, config_.miniport)
                              .queue_bytes(split ? config_.queue_params.lookahead_size : 0);
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
    uint64_t poll_failures = 0;  // in a row
    while (!stopping_) {
        entries.assign({{wake_->fd()}, {listen_fd_.get()}});
        polled.clear();
        auto deadline = Clock::time_point::max();
        {
            std::lock_guard lock(mu_);
            for (auto& [id, s] : sessions_) {
                entries.push_back({s->channel.fd()});
                polled.push_back(s);
                if (s->state != Session::State::Running) deadline = std::min(deadline, s->deadline);
            }
        }
        int timeout = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            timeout = static_cast<int>(std::clamp<long long>(left + 1, 0, 60'000));
        }
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
        for (size_t i = 0; i < polled.size(); ++i) {
            const SessionPtr& s = polled[i];
            if (s->state == Session::State::Closed) continue;
            if (entries[i + 2].readable || entries[i + 2].hung_up) serve(s);
            if (s->state == Session::State::Closed) continue;
            if (s->broken.load()) {
                close_session(s, s->failure(), s->failure_refused() ? Ending::Refused : Ending::GuestLeft);
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
    std::lock_guard lock(mu_);
    // Connections that never finish their handshake cost a socket each until
    // their deadline: bound them, so a flood cannot exhaust our fds.
    if (sessions_.size() >= config_.max_guests + kPendingHandshakes) {
        say("refusing a connection: " + std::to_string(sessions_.size()) + " sessions already");
        return;
    }
    const uint32_t id = next_guest_id_++;
    sessions_.emplace(id, std::make_shared<Session>(std::move(*fd), id,
                                                    Clock::now() + std::chrono::milliseconds(config_.handshake_timeout_ms)));
    sessions_.at(id)->info.guest_id = id;
    ++stats_.accepted;
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
        } else if (s->state == Session::State::Running && t == MessageType::PacketsDone) {
            handle_packets_done(s, m);
        } else {
            static constexpr const char* kStates[] = {"HELLO", "SET_MEMORY", "PACKETS_DONE or BYE", ""};
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

size_t GuestHub::deliver_batch(uint32_t queue, std::span<const std::span<const std::byte>> packets) {
    auto s = session_of_queue(queue);
    if (s == nullptr || packets.empty()) return 0;
    // Per thread, so a batch allocates nothing once they have grown.
    static thread_local std::vector<nic::RxDescriptor> held;
    static thread_local std::vector<PacketDescriptor> batch;
    held.clear();
    batch.clear();
    // Held across the writes and the send: teardown takes it first, so no
    // write can land in memory the queue no longer owns.
    std::lock_guard lock(s->mu);
    if (!s->accepting || !s->channel_ok) return 0;
    // The zero-copy writes, into the guest's memory; no more segments than a
    // message holds, so a split packet's chain is never cut.
    miniport_->receive_batch(queue, packets, kMaxPacketsPerMessage, held);
    for (const auto& d : held) {
        // One descriptor per segment, chained; every segment carries the
        // packet's cookie, so the guest may return them as it got them.
        batch.push_back({d.handle, d.offset, d.length, d.cookie, d.segments > 1 ? kSegmentFollows : 0u, 0});
        if (d.segments > 1) batch.push_back({d.next.handle, d.next.offset, d.next.length, d.cookie, 0, 0});
    }
    dropped_.fetch_add(packets.size() - held.size(), std::memory_order_relaxed);
    if (batch.empty()) return 0;
    auto sent = s->channel.send_packets(MessageType::Packets, queue, batch);
    if (!sent) {
        miniport_->give_back_batch(queue, held);
        dropped_.fetch_add(held.size(), std::memory_order_relaxed);
        // A full socket is a slow guest: drop, as a NIC does with a full ring.
        // Anything else means the guest is gone: the hub thread closes it.
        if (sent.error().err != EAGAIN && sent.error().err != EWOULDBLOCK) {
            s->fail_locked("sending PACKETS: " + sent.error().message(), false);
            wake_->signal();
        }
        return 0;
    }
    delivered_.fetch_add(held.size(), std::memory_order_relaxed);
    return held.size();
}

Delivery GuestHub::announce(uint32_t queue, std::span<const PacketDescriptor> packets) {
    auto s = session_of_queue(queue);
    if (s == nullptr || packets.empty() || packets.size() > kMaxPacketsPerMessage) return Delivery::NoGuest;
    // Under the session's lock, as deliver's writes are: close_session takes
    // it before it stops the driver's queue, so nothing is announced after.
    std::lock_guard lock(s->mu);
    if (!s->accepting || !s->channel_ok) return Delivery::NoGuest;
    auto sent = s->channel.send_packets(MessageType::Packets, queue, packets);
    if (!sent) {
        // A full socket is a slow guest: the driver's to retry or drop (and
        // count: `dropped` here counts only what the hub itself gave up).
        if (sent.error().err == EAGAIN || sent.error().err == EWOULDBLOCK) return Delivery::Dropped;
        dropped_.fetch_add(packets.size(), std::memory_order_relaxed);
        s->fail_locked("sending PACKETS: " + sent.error().message(), false);
        wake_->signal();
        return Delivery::NoGuest;
    }
    delivered_.fetch_add(packets.size(), std::memory_order_relaxed);
    return Delivery::Delivered;
}

void GuestHub::block_added(uint32_t guest_id, const providers::GuestBlock& b) {
    auto s = session_of_guest(guest_id);
    if (s == nullptr) return;
    const BlockAdded m{b.handle, b.guest_offset, static_cast<uint32_t>(b.length), b.queue_id, b.usage, 0};
    std::lock_guard lock(s->mu);
    if (s->tell_blocks && !s->send_locked(MessageType::BlockAdded, &m, sizeof(m))) wake_->signal();
}

void GuestHub::block_removed(uint32_t guest_id, const providers::GuestBlock& b) {
    auto s = session_of_guest(guest_id);
    if (s == nullptr) return;
    const BlockRemoved m{b.handle};
    std::lock_guard lock(s->mu);
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
    return s;
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
