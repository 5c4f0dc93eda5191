// The control socket's server and client (control.hpp has the wire).
#include "hub/control.hpp"

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

#include "os/unix_socket.hpp"

namespace ndisshm::ipc {

namespace {

using Clock = std::chrono::steady_clock;

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

// One datagram, retried while the socket is full (the client is reading
// more slowly than we write) until `deadline`: a client that stops reading
// costs the server at most that long.
Status send_until(int fd, std::string_view chunk, Clock::time_point deadline) {
    const std::span<const std::byte> parts[] = {bytes_of(chunk)};
    for (;;) {
        auto s = os::send_datagram(fd, parts);
        if (s || (s.error().err != EAGAIN && s.error().err != EWOULDBLOCK)) return s;
        if (Clock::now() >= deadline) return Error{"send", ETIMEDOUT, "the client does not read its reply"};
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

int ms_left(Clock::time_point deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

std::string control_path_for(const std::string& socket_path) {
    if (ends_with(socket_path, ".sock")) return socket_path.substr(0, socket_path.size() - 5) + ".ctl";
    return socket_path + ".ctl";
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, ControlHandler handler,
                                                            std::function<void(const std::string&)> log) {
    std::unique_ptr<ControlServer> server(new ControlServer(path, std::move(handler), std::move(log)));
    auto listen = os::listen_unix(path, 16);
    if (!listen) return listen.error();
    server->listen_fd_ = std::move(*listen);
    // A client that connects and goes before accept must not block us.
    if (auto s = os::set_nonblocking(server->listen_fd_.get()); !s) return s.error();
    auto wake = os::WakeFd::create();
    if (!wake) return wake.error();
    server->wake_ = std::make_unique<os::WakeFd>(std::move(*wake));
    server->thread_ = std::thread(&ControlServer::run, server.get());
    return server;
}

ControlServer::ControlServer(std::string path, ControlHandler handler, std::function<void(const std::string&)> log)
    : path_(std::move(path)), handler_(std::move(handler)), log_(std::move(log)) {}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
    if (thread_.joinable()) {
        stopping_ = true;
        wake_->signal();
        thread_.join();
    }
    if (listen_fd_.valid()) {
        listen_fd_ = os::UniqueFd();
        std::error_code ec;
        std::filesystem::remove(path_, ec);
    }
}

void ControlServer::run() {
    while (!stopping_) {
        os::PollEntry entries[] = {{wake_->fd()}, {listen_fd_.get()}};
        auto n = os::poll_readable(entries, -1);
        if (!n) {
            if (log_) log_("control socket: poll failed: " + n.error().message() + "; it stops serving");
            return;
        }
        if (entries[0].readable) wake_->drain();
        if (entries[1].readable && !stopping_) serve_one();
    }
}

// One client, start to end: its request within kControlClientTimeoutMs, our
// reply, the ending. The thread serves nobody else meanwhile; requests are
// rare (a person or a script polling) and each is bounded in time.
void ControlServer::serve_one() {
    auto fd = os::accept_unix(listen_fd_.get());
    if (!fd) return;  // EAGAIN: the client went between poll and accept
    if (auto s = os::set_nonblocking(fd->get()); !s) return;
    const auto deadline = Clock::now() + std::chrono::milliseconds(kControlClientTimeoutMs);
    auto ready = os::wait_readable(fd->get(), ms_left(deadline));
    if (!ready || !*ready) return;  // no request in time: hang up
    std::byte buffer[kMaxRequestBytes + 1];
    auto d = os::receive_datagram(fd->get(), buffer);
    if (!d || d->end_of_stream) return;
    requests_.fetch_add(1, std::memory_order_relaxed);
    std::string reply;
    if (d->truncated || !d->fds.empty()) {
        reply = R"({"error": "a request is one datagram of at most 256 bytes and carries no file descriptor"})";
    } else {
        std::string_view request(reinterpret_cast<const char*>(buffer), d->bytes);
        while (!request.empty() && (request.back() == '\n' || request.back() == '\0')) request.remove_suffix(1);
        bool ok = true;
        reply = handler_(request, ok);
    }
    const auto send_deadline = Clock::now() + std::chrono::milliseconds(kControlClientTimeoutMs);
    for (size_t at = 0; at < reply.size(); at += kReplyChunkBytes) {
        const std::string_view chunk = std::string_view(reply).substr(at, kReplyChunkBytes);
        if (auto s = send_until(fd->get(), chunk, send_deadline); !s) {
            if (log_) log_("control socket: reply abandoned: " + s.error().message());
            return;
        }
    }
    (void)send_until(fd->get(), kReplyEnd, send_deadline);
}

Result<std::string> control_query(const std::string& path, const std::string& request, int timeout_ms) {
    if (request.empty() || request.size() > kMaxRequestBytes)
        return Error{"control request", EINVAL, "a request is 1.." + std::to_string(kMaxRequestBytes) + " bytes"};
    const std::string where = ends_with(path, ".ctl") ? path : control_path_for(path);
    auto fd = os::connect_unix(where);
    if (!fd) {
        Error e = fd.error();
        e.detail = "no host serves " + where + " (" + e.detail + ")";
        return e;
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    const std::span<const std::byte> parts[] = {bytes_of(request)};
    if (auto s = os::send_datagram(fd->get(), parts); !s) return s.error();
    std::string reply;
    std::vector<std::byte> buffer(kReplyChunkBytes + 1);
    for (;;) {
        auto ready = os::wait_readable(fd->get(), timeout_ms < 0 ? -1 : ms_left(deadline));
        if (!ready) return ready.error();
        if (!*ready)
            return Error{"control reply", ETIMEDOUT,
                         "no complete reply from " + where + " within " + std::to_string(timeout_ms) + " ms"};
        auto d = os::receive_datagram(fd->get(), buffer);
        if (!d) {
            if (d.error().err == EAGAIN || d.error().err == EWOULDBLOCK) continue;
            return d.error();
        }
        if (d->end_of_stream)
            return Error{"control reply", ECONNRESET, "the host closed the connection before the reply ended"};
        if (d->truncated || d->bytes > kReplyChunkBytes)
            return Error{"control reply", EPROTO, "a reply datagram longer than the protocol allows"};
        if (std::string_view(reinterpret_cast<const char*>(buffer.data()), d->bytes) == kReplyEnd) return reply;
        if (reply.size() + d->bytes > kMaxReplyBytes)
            return Error{"control reply", EPROTO, "the reply exceeds " + std::to_string(kMaxReplyBytes) + " bytes"};
        reply.append(reinterpret_cast<const char*>(buffer.data()), d->bytes);
    }
}

}  // namespace ndisshm::ipc
