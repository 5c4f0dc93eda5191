// Linux implementation of packet_socket.hpp.
#include "os/packet_socket.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "os/fault.hpp"
#include "os/netns.hpp"

namespace ndisshm::os {
namespace {

Error errno_error(std::string operation, int e = errno) {
    return Error{std::move(operation), e, std::strerror(e)};
}

}  // namespace

Result<std::unique_ptr<PacketSocket>> PacketSocket::open(const PacketSocketConfig& c) {
    const std::string what = "AF_PACKET socket on " + c.ifname + (c.netns.empty() ? "" : " in " + c.netns);
    if (c.ifname.empty() || c.ifname.size() >= IFNAMSIZ)
        return Error{what, EINVAL, "no valid interface name"};
    UniqueFd ns;
    if (!c.netns.empty()) {
        auto f = open_netns(c.netns);
        if (!f) return f.error();
        ns = std::move(*f);
    }
    // The interface is looked up, and the socket made, in its namespace.
    auto scope = NetnsScope::enter(ns.get());
    if (!scope) return scope.error();
    const unsigned index = ::if_nametoindex(c.ifname.c_str());
    if (index == 0) return errno_error("if_nametoindex(" + c.ifname + ") for the " + what);
    const int raw = fault::call("socket", -1, [] {
        return ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
    });
    if (raw < 0) return errno_error("socket(AF_PACKET, SOCK_RAW, ETH_P_ALL) for the " + what);
    UniqueFd fd(raw);
    // FORCE: past net.core.rmem_max, as root may; without it the queue stays
    // at rmem_max and a burst drops, which would measure the sysctl.
    const int bytes = static_cast<int>(std::min<uint32_t>(c.receive_buffer, 1u << 30));
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0 &&
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) != 0)
        return errno_error("setsockopt(SO_RCVBUF, " + std::to_string(bytes) + ") on the " + what);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(index);
    if (fault::call("bind", -1,
                    [&] { return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sll), sizeof(sll)); }) != 0)
        return errno_error("bind(" + c.ifname + ") for the " + what);
    // Frames that arrived between socket() and bind() came from every
    // interface of the namespace: not this one's. Drained, and the counters
    // zeroed, so the first receive sees only this interface's traffic.
    std::byte scratch[64];
    while (::recv(fd.get(), scratch, sizeof(scratch), MSG_DONTWAIT | MSG_TRUNC) >= 0) {
    }
    std::unique_ptr<PacketSocket> s(new PacketSocket(std::move(fd), c));
    if (auto st = s->stats(); !st) return st.error();
    return s;
}

Result<size_t> PacketSocket::receive(std::span<const std::span<std::byte>> buffers,
                                     std::span<uint32_t> lengths, int timeout_ms) {
    const size_t count = std::min({buffers.size(), lengths.size(), size_t{1024}});
    if (count == 0) return size_t{0};
    std::vector<iovec> iov(count);
    std::vector<mmsghdr> msgs(count);
    for (size_t i = 0; i < count; ++i) {
        iov[i] = {buffers[i].data(), buffers[i].size()};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (;;) {
        const int n = fault::call("recvmsg", -1, [&] {
            return ::recvmmsg(fd_.get(), msgs.data(), static_cast<unsigned>(count), MSG_DONTWAIT, nullptr);
        });
        if (n > 0) {
            for (int i = 0; i < n; ++i)
                lengths[static_cast<size_t>(i)] = msgs[static_cast<size_t>(i)].msg_len;
            return static_cast<size_t>(n);
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno_error("recvmmsg on the AF_PACKET socket on " + config_.ifname);
        if (timeout_ms == 0) return size_t{0};
        pollfd p{fd_.get(), POLLIN, 0};
        const int r = fault::call("poll", -1, [&] { return ::poll(&p, 1, timeout_ms); });
        if (r < 0 && errno != EINTR) return errno_error("poll on the AF_PACKET socket on " + config_.ifname);
        if (r == 0) return size_t{0};
        timeout_ms = 0;  // one wait; what comes after it is taken or not
    }
}

Result<PacketSocketStats> PacketSocket::stats() {
    tpacket_stats t{};
    socklen_t len = sizeof(t);
    if (::getsockopt(fd_.get(), SOL_PACKET, PACKET_STATISTICS, &t, &len) != 0)
        return errno_error("getsockopt(PACKET_STATISTICS) on the AF_PACKET socket on " + config_.ifname);
    return PacketSocketStats{t.tp_packets, t.tp_drops};
}

}  // namespace ndisshm::os
