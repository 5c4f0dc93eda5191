// Channel: framing and validation of protocol.hpp's messages over a SEQPACKET
// socket. Nothing here trusts the peer: a datagram is checked whole before any
// field of its payload is handed to the caller.
#include "ipc/channel.hpp"

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "os/unix_socket.hpp"

namespace ndisshm::ipc {
namespace {

constexpr size_t kHeaderBytes = sizeof(MessageHeader);
constexpr size_t kMaxDatagram = kHeaderBytes + kMaxPayload;

const char* type_name(uint16_t type) { return message_type_name(static_cast<MessageType>(type)); }

bool has_nul(const char* chars, size_t n) { return std::memchr(chars, '\0', n) != nullptr; }

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "0x%08X", v);
    return buf;
}

// The checks of validate() once the header has been read: shared by receive
// (the peer's datagram) and send (our own, so a bug of ours is caught here and
// not blamed on the peer).
std::string check(const MessageHeader& h, const std::byte* payload, size_t payload_bytes, int fds) {
    if (h.magic != kMagic) return "bad magic " + hex(h.magic) + " (expected " + hex(kMagic) + ")";
    if (h.version != kVersion)
        return "unsupported protocol version " + std::to_string(h.version) + " (expected " +
               std::to_string(kVersion) + ")";
    const char* name = type_name(h.type);
    if (name == nullptr) return "unknown message type " + std::to_string(h.type);
    // Named only when wrong, as in check_chains.
    const auto what = [&] { return std::string(name) + " #" + std::to_string(h.sequence); };
    if (h.length > kMaxPayload)
        return what() + ": payload length " + std::to_string(h.length) + " over the maximum " +
               std::to_string(kMaxPayload);
    if (payload_bytes < h.length)
        return what() + ": truncated datagram: header says " + std::to_string(h.length) + " payload bytes, " +
               std::to_string(payload_bytes) + " arrived";
    if (payload_bytes > h.length)
        return what() + ": datagram has " + std::to_string(payload_bytes) + " payload bytes, header says " +
               std::to_string(h.length);
    const auto type = static_cast<MessageType>(h.type);
    const uint32_t fixed = fixed_payload_bytes(type), most = max_payload_bytes(type);
    if (fixed == most && h.length != fixed)
        return what() + ": payload is " + std::to_string(h.length) + " bytes, the type takes " + std::to_string(fixed);
    if (h.length < fixed || h.length > most)
        return what() + ": payload is " + std::to_string(h.length) + " bytes, the type takes " + std::to_string(fixed) +
               ".." + std::to_string(most);
    // Strings are read with C string calls by both ends: HELLO's name must
    // end inside its array; ERROR's reason, sized by the datagram, may hold
    // no NUL that would cut it short where it is printed.
    if (type == MessageType::Hello && !has_nul(reinterpret_cast<const char*>(payload) + offsetof(Hello, name), kNameBytes))
        return what() + ": name is not NUL-terminated";
    if (type == MessageType::Error && h.length > sizeof(ErrorMessage) &&
        has_nul(reinterpret_cast<const char*>(payload) + sizeof(ErrorMessage), h.length - sizeof(ErrorMessage)))
        return what() + ": reason holds a NUL byte";
    if (type == MessageType::SetMemory) {
        if (fds == 0) return what() + ": no file descriptor (SET_MEMORY carries its memfd)";
        if (fds != 1) return what() + ": " + std::to_string(fds) + " file descriptors (SET_MEMORY carries exactly 1)";
    } else if (type == MessageType::RingsAttached) {
        if (fds != kRingsAttachedFds)
            return what() + ": " + std::to_string(fds) + " file descriptor(s) (RINGS_ATTACHED carries exactly 2 eventfds)";
    } else if (fds != 0) {
        return what() + ": carries " + std::to_string(fds) + " file descriptor(s); the type takes none";
    }
    return {};
}

Error protocol_error(std::string reason) { return Error{"receive", EPROTO, std::move(reason)}; }

// One receive buffer per thread, made once and never cleared: a message is
// copied out of it at its exact length, so a large buffer costs nothing per
// message, and Channel stays a socket and a counter.
std::byte* scratch() {
    thread_local std::unique_ptr<std::byte[]> buffer(new std::byte[kMaxDatagram]);
    return buffer.get();
}

}  // namespace

std::string validate(const std::byte* data, size_t bytes, bool truncated, int fds) {
    if (truncated) return "oversized datagram: over " + std::to_string(kMaxDatagram) + " bytes";
    if (bytes < kHeaderBytes)
        return "truncated datagram: " + std::to_string(bytes) + " bytes, shorter than the " +
               std::to_string(kHeaderBytes) + "-byte header";
    MessageHeader h;
    std::memcpy(&h, data, sizeof(h));
    return check(h, data + kHeaderBytes, bytes - kHeaderBytes, fds);
}

Status Channel::send(MessageType type, const void* payload, uint32_t length, std::span<const int> fds) {
    MessageHeader h{kMagic, kVersion, static_cast<uint16_t>(type), length, sent_ + 1};
    const auto* bytes = static_cast<const std::byte*>(payload);
    if (std::string why = check(h, bytes, length, static_cast<int>(fds.size())); !why.empty())
        return Error{"send", EINVAL, "refusing to send a malformed message: " + why};
    const std::span<const std::byte> parts[] = {{reinterpret_cast<const std::byte*>(&h), sizeof(h)}, {bytes, length}};
    if (auto s = os::send_datagram(socket_.get(), parts, fds); !s) return s;
    ++sent_;
    return Ok{};
}

Result<Message> Channel::receive(int timeout_ms) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    std::byte* buffer = scratch();
    const auto timed_out = [&] {
        return Error{"receive", ETIMEDOUT, "nothing arrived within " + std::to_string(timeout_ms) + " ms"};
    };
    for (;;) {
        // Read first, wait only when nothing is there: on a busy channel the
        // next message has usually arrived, and a poll() would be a system
        // call spent learning so (one per message on the data path).
        auto d = os::receive_datagram(socket_.get(), {buffer, kMaxDatagram});
        if (!d) {
            const int e = d.error().err;
            // The peer closed with our messages unread. What it sent before
            // closing (a BYE, an ERROR with its reason) is still queued: read
            // on, the end of the stream comes after it.
            if (e == ECONNRESET) continue;
            if (e != EAGAIN && e != EWOULDBLOCK) return d.error();
            // Nothing yet (or someone else read it first, on a shared socket).
            int wait = -1;
            if (timeout_ms >= 0) {
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
                if (left <= 0) return timed_out();
                wait = static_cast<int>(left);
            }
            auto ready = os::wait_readable(socket_.get(), wait);
            if (!ready) return ready.error();
            if (!*ready) return timed_out();
            continue;
        }
        if (d->end_of_stream) return Error{"receive", ECONNRESET, "peer closed"};
        if (d->control_truncated)
            return protocol_error("more file descriptors than any message carries (the surplus was closed)");
        const int fds = static_cast<int>(d->fds.size());
        if (std::string why = validate(buffer, d->bytes, d->truncated, fds); !why.empty())
            return protocol_error(std::move(why));  // d->fds close here
        Message m;
        std::memcpy(&m.header, buffer, sizeof(m.header));
        m.payload.assign(buffer + kHeaderBytes, buffer + kHeaderBytes + m.header.length);
        if (fds >= 1) m.fd = std::move(d->fds[0]);
        if (fds >= 2) m.fd2 = std::move(d->fds[1]);
        return m;
    }
}

ErrorPayload error_payload(uint32_t code, std::string_view reason) {
    reason = reason.substr(0, std::min<size_t>(reason.find('\0'), kMaxReasonBytes));
    ErrorPayload p;
    const ErrorMessage e{code, 0};
    std::memcpy(p.bytes, &e, sizeof(e));
    std::memcpy(p.bytes + sizeof(e), reason.data(), reason.size());
    p.length = static_cast<uint32_t>(sizeof(e) + reason.size());
    return p;
}

std::string Message::error_reason() const {
    if (type() != MessageType::Error || payload.size() <= sizeof(ErrorMessage)) return {};
    return {reinterpret_cast<const char*>(payload.data()) + sizeof(ErrorMessage), payload.size() - sizeof(ErrorMessage)};
}

Status Channel::send_error(uint32_t code, std::string_view reason) {
    const ErrorPayload p = error_payload(code, reason);
    return send(MessageType::Error, static_cast<const void*>(p.bytes), p.length, {});
}

Result<os::UniqueFd> listen_at(const std::string& path) { return os::listen_unix(path, 64); }

Result<os::UniqueFd> accept_from(int listen_fd) { return os::accept_unix(listen_fd); }

Result<os::UniqueFd> connect_to(const std::string& path) { return os::connect_unix(path); }

std::string default_socket_dir() {
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && xdg[0] == '/')
        return std::string(xdg) + "/ndisshm";
    const unsigned uid = os::effective_uid();
    if (uid == 0) return "/run/ndisshm";
    return "/tmp/ndisshm-" + std::to_string(uid);
}

}  // namespace ndisshm::ipc
