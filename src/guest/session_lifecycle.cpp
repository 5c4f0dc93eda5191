// The guest session's life cycle: connect and its handshake, the ends a host
// can give a session, close, and reconnection after a loss (guest.h,
// "Reconnection"). session.cpp has what a session does while it lasts.
//
// Reconnection is a small state machine driven by the caller's own calls
// (poll, wait): no thread of ours. Lost (end() with Retry::Yes) ->
// reconnecting: forget the old session, DISCONNECTED, attempts at backoff
// times -> RECONNECTED (a fresh session: the host sends queues, blocks and
// rings as to a new guest) or, past reconnect_ms, the loss returned as if
// there had been no reconnection, its reason saying what was tried.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <ndis/ndis_shm.h>

#include "guest/session.hpp"

namespace ndisshm::guest {
namespace {

using ipc::MessageType;

std::string seconds_text(std::chrono::steady_clock::duration d) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f s", std::chrono::duration<double>(d).count());
    return buf;
}

}  // namespace

NDIS_STATUS Session::end(NDIS_STATUS status, std::string why, Retry retry) {
    channel_.reset();
    // Nothing the host handed out is read after its session: the rings go,
    // and what we hold is void.
    while (!rings_.empty()) drop_rings(rings_.back()->queue_id);
    if (attempting_) {
        // The caller of handshake() decides what a failed attempt means.
        attempt_retry_ = retry;
        last_error_ = std::move(why);
        return status;
    }
    if (retry == Retry::Yes && reconnect_ms_ > 0) {
        start_reconnecting(status, why, true);
        return NDIS_STATUS_SUCCESS;
    }
    end_reason_ = why;
    last_error_ = std::move(why);
    return status;
}

void Session::close() {
    if (reconnecting_) {
        reconnecting_ = false;
        end_reason_ = "closed while reconnecting (" + lost_why_ + ")";
        if (retry_timer_.fd() >= 0) retry_timer_.disarm();
    }
    if (!channel_) return;
    // Best effort: a host that is already gone needs no goodbye.
    (void)channel_->send(MessageType::Bye, ipc::Bye{});
    channel_.reset();
    while (!rings_.empty()) drop_rings(rings_.back()->queue_id);
}

NDIS_STATUS Session::connect(const std::string& socket_path, int timeout_ms) {
    if (used_) return end(NDIS_STATUS_FAILURE, "ndisshm_guest_connect: this guest has had its session already");
    used_ = true;
    socket_path_ = socket_path;
    handshake_timeout_ms_ = timeout_ms;
    attempting_ = true;
    const NDIS_STATUS s = handshake();
    attempting_ = false;
    if (s == NDIS_STATUS_SUCCESS) return s;
    // A host that answered and will take us later (full) or went during the
    // handshake: reconnecting, if asked. Nobody listening is not retried:
    // a wrong path is likelier than a host restarting at that instant.
    const std::string why = last_error_;
    if (attempt_retry_ == Retry::Yes && s != NDIS_STATUS_FAILURE && reconnect_ms_ > 0)
        start_reconnecting(s, why, false);
    end_reason_ = why;
    last_error_ = why;
    return s;
}

NDIS_STATUS Session::handshake() {
    auto sock = ipc::connect_to(socket_path_);
    // During a reconnection nobody listening is expected: the host is
    // restarting. connect() does not retry it (see there).
    if (!sock) return end(NDIS_STATUS_FAILURE, sock.error().message(), Retry::Yes);
    channel_.emplace(std::move(*sock));

    ipc::Hello hello{};
    std::memcpy(hello.name, name_.c_str(), name_.size() + 1);
    if (auto s = channel_->send(MessageType::Hello, hello); !s) return send_failed(s.error());
    ipc::Message m;
    if (auto st = await(MessageType::HelloAck, handshake_timeout_ms_, m); st != NDIS_STATUS_SUCCESS) return st;
    stats_.guest_id = m.as<ipc::HelloAck>().guest_id;

    const ipc::SetMemory set{bytes_, guest_physical_base_};
    if (auto s = channel_->send(MessageType::SetMemory, set, memfd_.get()); !s) return send_failed(s.error());
    if (auto st = await(MessageType::MemoryAck, handshake_timeout_ms_, m); st != NDIS_STATUS_SUCCESS) return st;
    if (const uint64_t acked = m.as<ipc::MemoryAck>().size; acked != bytes_)
        return end(NDISSHM_STATUS_PROTOCOL, "host acknowledged " + std::to_string(acked) + " bytes of memory, we gave " +
                                               std::to_string(bytes_));
    if (epoll_.valid()) (void)os::epoll_watch(epoll_.get(), channel_->fd());
    connected_at_ = Clock::now();
    last_error_.clear();
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Session::await(MessageType want, int timeout_ms, ipc::Message& out) {
    auto r = channel_->receive(timeout_ms);
    if (!r) {
        if (r.error().err == ETIMEDOUT)
            return end(NDIS_STATUS_FAILURE,
                       "handshake: the host did not answer within " + std::to_string(timeout_ms) + " ms", Retry::Yes);
        return receive_failed(r.error());
    }
    if (r->type() != want) return ended_by_host(*r);
    out = std::move(*r);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Session::receive_failed(const Error& e) {
    switch (e.err) {
        case ETIMEDOUT: return NDISSHM_STATUS_TIMEOUT;
        case ECONNRESET:
            return end(NDISSHM_STATUS_HOST_GONE, "host closed the connection without BYE (host gone)", Retry::Yes);
        case EPROTO: return end(NDISSHM_STATUS_PROTOCOL, "host sent a malformed message: " + e.detail);
        default: return end(NDIS_STATUS_FAILURE, e.message());
    }
}

NDIS_STATUS Session::send_failed(const Error& e) {
    if (e.err != EPIPE && e.err != ECONNRESET) return end(NDIS_STATUS_FAILURE, e.message());
    // The host closed first. Read what it left queued: a BYE or an ERROR
    // explains the close; end of stream means it just went away.
    for (;;) {
        auto r = channel_->receive(0);
        if (!r) {
            if (r.error().err == ETIMEDOUT)  // hung up, nothing left, yet no end seen: treat as gone
                return end(NDISSHM_STATUS_HOST_GONE, "host closed the connection without BYE (host gone)", Retry::Yes);
            return receive_failed(r.error());
        }
        const auto t = r->type();
        if (t == MessageType::Bye || t == MessageType::Error) return ended_by_host(*r);
    }
}

NDIS_STATUS Session::ended_by_host(const ipc::Message& m) {
    switch (m.type()) {
        case MessageType::Bye: return end(NDISSHM_STATUS_HOST_BYE, "host closed the connection (BYE)", Retry::Yes);
        case MessageType::Error: {
            const auto e = m.as<ipc::ErrorMessage>();  // the status; the reason follows, checked on receipt
            char code[16];
            std::snprintf(code, sizeof(code), "0x%08X", e.code);
            // Full now is not full forever: that one is worth another try.
            const Retry retry = e.code == static_cast<uint32_t>(NDIS_STATUS_RESOURCES) ? Retry::Yes : Retry::No;
            return end(NDISSHM_STATUS_REFUSED, "host refused: " + m.error_reason() + " (status " + code + ")",
                       retry);
        }
        default:
            return end(NDISSHM_STATUS_PROTOCOL, "unexpected message type " + std::to_string(m.header.type) +
                                                   " from the host (#" + std::to_string(m.header.sequence) + ")");
    }
}

void Session::forget_session() {
    // As if the host had detached each queue: the caller's view (events)
    // and ours go together. Blocks of no queue we know go after.
    while (!queues_.empty()) on_queue_detached(queues_.begin()->first);
    while (!blocks_.empty()) on_block_removed(blocks_.begin()->first);
}

void Session::start_reconnecting(NDIS_STATUS status, const std::string& why, bool session_lost) {
    forget_session();
    reconnecting_ = true;
    lost_status_ = status;
    lost_why_ = why;
    lost_at_ = Clock::now();
    give_up_at_ = lost_at_ + std::chrono::milliseconds(reconnect_ms_);
    attempts_this_loss_ = 0;
    // A session that died young (a host that takes us and drops us at once,
    // or a race for its last queue) keeps the delays growing; one that
    // lasted starts again from the shortest.
    if (!session_lost || lost_at_ - connected_at_ >= std::chrono::milliseconds(Backoff::kCapMs)) backoff_.reset();
    schedule_attempt(lost_at_ + std::chrono::milliseconds(backoff_.next_ms()));
    if (!session_lost) return;  // connect's caller has the news as its answer
    ++stats_.sessions_lost;
    ndisshm_guest_event e{};
    e.kind = NDISSHM_GUEST_DISCONNECTED;
    e.reason = lost_why_.c_str();
    emit(e);
}

void Session::schedule_attempt(Clock::time_point at) {
    // The last attempt is made at the deadline, not skipped for lying past it.
    next_attempt_at_ = at < give_up_at_ ? at : give_up_at_;
    if (retry_timer_.fd() < 0) return;
    const auto now = Clock::now();
    const auto ms = next_attempt_at_ <= now
                        ? 0
                        : std::chrono::ceil<std::chrono::milliseconds>(next_attempt_at_ - now).count();
    retry_timer_.arm(static_cast<uint32_t>(ms));
}

bool Session::attempt() {
    if (retry_timer_.fd() >= 0) retry_timer_.disarm();
    ++attempts_this_loss_;
    ++stats_.reconnect_attempts;
    attempting_ = true;
    attempt_retry_ = Retry::No;
    const NDIS_STATUS s = handshake();
    attempting_ = false;
    if (s == NDIS_STATUS_SUCCESS) {
        reconnecting_ = false;
        ++stats_.reconnects;
        ndisshm_guest_event e{};
        e.kind = NDISSHM_GUEST_RECONNECTED;
        e.guest_id = stats_.guest_id;
        e.attempts = attempts_this_loss_;
        emit(e);
        return true;
    }
    const auto now = Clock::now();
    if (attempt_retry_ == Retry::No || now >= give_up_at_) {
        reconnecting_ = false;
        const bool broken = attempt_retry_ == Retry::No;
        // A host that broke the protocol or refused us for good is the
        // answer; running out of time answers with the loss itself.
        final_status_ = broken ? s : lost_status_;
        end_reason_ = lost_why_ + "; " + (broken ? "reconnecting stopped" : "gave up reconnecting") + " after " +
                      std::to_string(attempts_this_loss_) + " attempt" + (attempts_this_loss_ == 1 ? "" : "s") +
                      " in " + seconds_text(now - lost_at_) + " (last: " + last_error_ + ")";
        last_error_ = end_reason_;
        return false;
    }
    schedule_attempt(now + std::chrono::milliseconds(backoff_.next_ms()));
    return false;
}

NDIS_STATUS Session::reconnect_step(int timeout_ms) {
    const auto deadline =
        timeout_ms < 0 ? Clock::time_point::max() : Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        const auto now = Clock::now();
        if (now >= next_attempt_at_) {
            if (attempt()) return NDIS_STATUS_SUCCESS;
            if (!reconnecting_) return final_status_;
            continue;
        }
        if (now >= deadline) return NDISSHM_STATUS_TIMEOUT;
        const auto until = next_attempt_at_ < deadline ? next_attempt_at_ : deadline;
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
        std::vector<os::PollEntry> none;
        if (auto n = os::poll_readable(none, static_cast<int>(ms)); !n) {
            reconnecting_ = false;
            return end(NDIS_STATUS_FAILURE, n.error().message());
        }
    }
}

}  // namespace ndisshm::guest
