// Fuzz target: the host/guest message parser, two ways.
//  1. ipc::validate() on the raw bytes, with the truncation flag and fd count
//     from the input: it must answer (valid, or a reason) for anything.
//  2. A Channel over a socketpair receiving the datagrams the input describes
//     (each with 0, 1 or 2 fds, empty ones, oversized ones, and the peer
//     closing at the end or not). Every message it hands out must re-validate,
//     carry one fd exactly when it is SET_MEMORY and two when it is
//     RINGS_ATTACHED, and have its payload readable at its full length (an
//     ERROR's reason at most kMaxReasonBytes, NUL-free, the payload's tail); every
//     refusal is EPROTO with a reason; the end of the stream is ECONNRESET;
//     nothing else. No fd may leak: refused
//     messages' fds are closed by the channel, and the count of open fds is
//     the same after each input as before.
// Then whatever the input's type/payload, Channel::send either refuses it as
// malformed or sends something the other end receives as the same message;
// and Channel::send_error, given any reason of any length, sends an ERROR
// whose reason arrives as the input cut at its first NUL and at
// kMaxReasonBytes.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "ipc/channel.hpp"
#include "os/unix_socket.hpp"

namespace {
using namespace ndisshm_fuzz;
namespace ipc = ndisshm::ipc;

constexpr size_t kMaxDatagram = sizeof(ipc::MessageHeader) + ipc::kMaxPayload;

size_t open_fds() {
    auto n = ndisshm::os::open_fd_count();
    FUZZ_CHECK(n.ok(), "cannot count fds");
    return *n;
}

// Sends one raw datagram with `nfds` copies of an fd; false if the socket is full.
bool send_raw(int sock, const void* data, size_t bytes, int nfds, int fd) {
    iovec iov{const_cast<void*>(data), bytes};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * 2)];
    } control{};
    if (nfds > 0) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        for (int i = 0; i < nfds; ++i) std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    }
    return ::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

void check_message(const ipc::Message& m) {
    std::vector<std::byte> whole(sizeof(m.header) + m.payload.size());
    std::memcpy(whole.data(), &m.header, sizeof(m.header));
    if (!m.payload.empty()) std::memcpy(whole.data() + sizeof(m.header), m.payload.data(), m.payload.size());
    const int fds = (m.fd.valid() ? 1 : 0) + (m.fd2.valid() ? 1 : 0);
    const std::string again = ipc::validate(whole.data(), whole.size(), false, fds);
    FUZZ_CHECK(again.empty(), "a delivered message does not validate: %s", again.c_str());
    FUZZ_CHECK(m.payload.size() == m.header.length, "payload %zu bytes, header %u", m.payload.size(), m.header.length);
    const bool takes_fd = m.type() == ipc::MessageType::SetMemory || m.type() == ipc::MessageType::RingsAttached;
    FUZZ_CHECK(m.fd.valid() == takes_fd, "fd on type %u", m.header.type);
    FUZZ_CHECK(m.fd2.valid() == (m.type() == ipc::MessageType::RingsAttached), "second fd on type %u", m.header.type);
    if (m.type() == ipc::MessageType::Error) {
        const std::string reason = m.error_reason();
        FUZZ_CHECK(reason.size() <= ipc::kMaxReasonBytes, "a reason of %zu bytes", reason.size());
        FUZZ_CHECK(reason.find('\0') == std::string::npos, "a reason with a NUL");
        FUZZ_CHECK(sizeof(ipc::ErrorMessage) + reason.size() == m.payload.size() &&
                       (reason.empty() ||
                        std::memcmp(reason.data(), m.payload.data() + sizeof(ipc::ErrorMessage), reason.size()) == 0),
                   "the reason is not the payload's tail");
    }
}

void receive_all(ipc::Channel& ch, bool peer_closed) {
    for (int i = 0; i < 64; ++i) {
        auto r = ch.receive(0);
        if (r.ok()) {
            check_message(*r);
            continue;
        }
        const int e = r.error().err;
        if (e == ETIMEDOUT) {
            FUZZ_CHECK(!peer_closed, "timed out although the peer closed");
            return;
        }
        if (e == ECONNRESET) return;  // the peer's close, after every datagram it sent
        FUZZ_CHECK(e == EPROTO && !r.error().detail.empty(), "receive failed with %d: %s", e,
                   r.error().message().c_str());
    }
}

void datagrams(ByteReader& in, int pass_fd) {
    auto pair = ndisshm::os::seqpacket_pair();
    FUZZ_CHECK(pair.ok(), "socketpair");
    ipc::Channel receiver(std::move(pair->first));
    ndisshm::os::UniqueFd sender = std::move(pair->second);
    std::vector<unsigned char> big;
    const unsigned count = 1 + in.below(8);
    for (unsigned i = 0; i < count && !in.empty(); ++i) {
        const uint8_t shape = in.byte();
        const int nfds = shape % 3;
        size_t n = 0;
        // Up to 2 KiB: past ERROR's longest (8 + kMaxReasonBytes), short of
        // the oversized datagrams below.
        const uint8_t* bytes = in.bytes(in.take<uint16_t>() % 2048, &n);
        if ((shape & 0x30) == 0x30) {
            // Past the channel's largest datagram: it must see MSG_TRUNC and refuse it.
            big.assign(kMaxDatagram + 1 + (shape >> 6), 0);
            std::memcpy(big.data(), bytes, n);
            if (!send_raw(sender.get(), big.data(), big.size(), nfds, pass_fd)) break;
        } else if (!send_raw(sender.get(), bytes, n, nfds, pass_fd)) {
            break;
        }
    }
    const bool close_peer = in.flag();
    if (close_peer) sender = ndisshm::os::UniqueFd();
    receive_all(receiver, close_peer);
}

// Channel::send refuses what is malformed; what it sends arrives as sent.
void round_trip(ByteReader& in, int pass_fd) {
    auto pair = ndisshm::os::seqpacket_pair();
    FUZZ_CHECK(pair.ok(), "socketpair");
    ipc::Channel a(std::move(pair->first)), b(std::move(pair->second));
    const auto type = static_cast<ipc::MessageType>(in.below(14));
    size_t n = 0;
    const uint8_t* payload = in.bytes(in.below(200), &n);
    const int fds[] = {pass_fd, pass_fd};
    const auto pass = std::span<const int>(fds, in.below(3));
    auto sent = a.send(type, payload, static_cast<uint32_t>(n), pass);
    if (!sent.ok()) {
        FUZZ_CHECK(sent.error().err == EINVAL, "send failed with %s", sent.error().message().c_str());
        return;
    }
    auto got = b.receive(0);
    FUZZ_CHECK(got.ok(), "a message send accepted was refused: %s", got.error().message().c_str());
    FUZZ_CHECK(got->type() == type && got->payload.size() == n &&
                   (n == 0 || std::memcmp(got->payload.data(), payload, n) == 0),
               "a message changed on the way");
    check_message(*got);
}

// send_error takes any reason: what arrives is the input up to its first NUL
// and at most kMaxReasonBytes, with the status.
void error_round_trip(ByteReader& in) {
    auto pair = ndisshm::os::seqpacket_pair();
    FUZZ_CHECK(pair.ok(), "socketpair");
    ipc::Channel a(std::move(pair->first)), b(std::move(pair->second));
    const auto code = in.take<uint32_t>();
    const uint32_t length = in.size(2 * ipc::kMaxReasonBytes);
    size_t n = 0;
    const uint8_t* pattern = in.bytes(in.below(64), &n);
    std::string reason(length, 'x');
    for (size_t i = 0; n != 0 && i < reason.size(); ++i) reason[i] = static_cast<char>(pattern[i % n]);
    auto sent = a.send_error(code, reason);
    FUZZ_CHECK(sent.ok(), "send_error failed: %s", sent.error().message().c_str());
    auto got = b.receive(0);
    FUZZ_CHECK(got.ok(), "an ERROR send_error made was refused: %s", got.error().message().c_str());
    check_message(*got);
    const std::string want = reason.substr(0, std::min<size_t>(reason.find('\0'), ipc::kMaxReasonBytes));
    FUZZ_CHECK(got->type() == ipc::MessageType::Error && got->as<ipc::ErrorMessage>().code == code &&
                   got->error_reason() == want,
               "an ERROR changed on the way: %zu bytes sent, %zu wanted, %zu arrived", reason.size(), want.size(),
               got->error_reason().size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const int pass_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // what travels as SCM_RIGHTS
    ByteReader in(data, size);
    const size_t fds_before = open_fds();
    {
        const uint8_t mode = in.byte();
        const std::string why =
            ipc::validate(reinterpret_cast<const std::byte*>(data), size, (mode & 1) != 0, (mode >> 1) % 4);
        if ((mode & 1) != 0) FUZZ_CHECK(!why.empty(), "a truncated datagram validated");
        if (size < sizeof(ipc::MessageHeader)) FUZZ_CHECK(!why.empty(), "%zu bytes validated", size);
        if ((mode & 0xC0) == 0xC0) error_round_trip(in);
        else if (mode & 0x80) round_trip(in, pass_fd);
        else datagrams(in, pass_fd);
    }
    const size_t fds_after = open_fds();
    FUZZ_CHECK(fds_after == fds_before, "fds leaked: %zu before, %zu after", fds_before, fds_after);
    return 0;
}
