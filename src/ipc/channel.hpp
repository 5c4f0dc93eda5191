// Channel: one host/guest conversation over a Unix SOCK_SEQPACKET socket.
//
// SEQPACKET keeps message boundaries, so one message is one datagram: a
// truncated or oversized datagram is seen as such (MSG_TRUNC) and never
// confused with the start of the next. Every received message is checked
// against protocol.hpp (magic, version, known type, exact payload length,
// NUL-terminated strings, file descriptors only where SET_MEMORY wants exactly
// one and RINGS_ATTACHED exactly two)
// before the caller sees it; a message that fails comes back as an Error with
// err = EPROTO and a reason fit for the log, and any fd it carried is closed.
// Not thread-safe: one thread sends and receives on a channel at a time (two
// threads may share it if one only sends and the other only receives).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/result.hpp"
#include "ipc/protocol.hpp"
#include "os/os.hpp"

namespace ndisshm::ipc {

struct Message {
    MessageHeader header{};
    std::vector<std::byte> payload;  // exactly header.length bytes, already validated
    os::UniqueFd fd;                 // SET_MEMORY's memfd, RINGS_ATTACHED's first eventfd; invalid otherwise
    os::UniqueFd fd2;                // RINGS_ATTACHED's second eventfd

    MessageType type() const { return static_cast<MessageType>(header.type); }
    // ERROR's reason, whole (the bytes after its ErrorMessage, which receive
    // checked: at most kMaxReasonBytes, no NUL); "" for any other type.
    std::string error_reason() const;
    // The payload as its fixed-size struct (the type was checked on receipt;
    // ERROR's struct is its fixed part, the status).
    template <class T>
    T as() const {
        T value;
        static_assert(std::is_trivially_copyable_v<T>);
        std::memcpy(&value, payload.data(), sizeof(T));
        return value;
    }
};

class Channel {
public:
    explicit Channel(os::UniqueFd socket) : socket_(std::move(socket)) {}

    // Sends one message; `fds` (none by default) travel with it by
    // SCM_RIGHTS. EPIPE when the peer is gone (never SIGPIPE).
    Status send(MessageType type, const void* payload, uint32_t length, std::span<const int> fds = {});
    template <class T>
    Status send(MessageType type, const T& payload, std::span<const int> fds = {}) {
        return send(type, &payload, sizeof(T), fds);
    }
    template <class T>
    Status send(MessageType type, const T& payload, int fd) {
        const int one[] = {fd};
        return send(type, &payload, sizeof(T), one);
    }
    // Sends ERROR with status `code` and `reason` as error_payload() cuts it.
    Status send_error(uint32_t code, std::string_view reason);

    // The next whole, valid message. timeout_ms < 0 waits forever; on timeout
    // err = ETIMEDOUT. The peer closing gives err = ECONNRESET ("peer closed").
    Result<Message> receive(int timeout_ms = -1);

    int fd() const { return socket_.get(); }

private:
    os::UniqueFd socket_;
    uint32_t sent_ = 0;
};

// An ERROR's payload: the status, then `reason` up to its first NUL and at
// most kMaxReasonBytes of it (a longer one is cut: the session ends anyway,
// and a reader must be able to bound what it holds).
struct ErrorPayload {
    std::byte bytes[sizeof(ErrorMessage) + kMaxReasonBytes];
    uint32_t length = 0;  // of `bytes`, in use
};
ErrorPayload error_payload(uint32_t code, std::string_view reason);

// Validates one received datagram (exposed for tests and fuzzing): header
// fields, payload length for its type, fd count. `fds` is how many file
// descriptors arrived with it. Empty string: valid; else the reason.
std::string validate(const std::byte* data, size_t bytes, bool truncated, int fds);

// A listening socket at `path` (the directory is created 0700 if missing,
// the socket is 0600, a stale socket file is replaced).
Result<os::UniqueFd> listen_at(const std::string& path);
Result<os::UniqueFd> accept_from(int listen_fd);
Result<os::UniqueFd> connect_to(const std::string& path);

// Where hosts put their sockets: $XDG_RUNTIME_DIR/ndisshm, else /run/ndisshm
// for root, else /tmp/ndisshm-<uid>.
std::string default_socket_dir();

}  // namespace ndisshm::ipc
