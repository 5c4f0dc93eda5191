// Network namespaces, veth pairs and plain senders: a private wire for the
// AF_XDP NIC path (nic/afxdp_*), its tests and its demo.
//
// Why namespaces: the traffic must be real kernel packets, yet never touch
// the machine's own interfaces, routes or addresses. Each VethLink lives in
// two namespaces of its own (the receive end, where an AF_XDP socket binds,
// and the transmit end, where senders run), so its addresses can be anything
// and two links, or two test processes, never see each other's packets.
//
// Namespaces and veth pairs are made with iproute2's `ip` (what `ip netns
// add` does is a bind mount under /run/netns that other tools then find; a
// veth needs netlink messages we would otherwise write by hand). Everything
// else (entering a namespace, sockets) is direct system calls.
//
// Threads: entering a namespace (NetnsScope) changes the calling thread only;
// a socket keeps the namespace it was created in for its whole life, so
// senders made here may be used from any thread afterwards.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "os/os.hpp"

namespace ndisshm::os {

// Runs `ip ARGS...` (found in PATH, or /usr/sbin, /sbin); fails with its exit
// status and what it wrote to stderr.
Status run_ip(const std::vector<std::string>& args);

// An open network namespace: "/run/netns/NAME" as `ip netns add` makes it,
// or any nsfs path (/proc/PID/ns/net).
Result<UniqueFd> open_netns(const std::string& path);

// While alive, the calling thread is in `netns`; the destructor puts it back
// into the namespace it was in. Must be destroyed on the thread that made it.
class NetnsScope {
public:
    // netns < 0: stays where it is (a no-op scope).
    static Result<NetnsScope> enter(int netns);
    NetnsScope(NetnsScope&& o) noexcept = default;
    NetnsScope& operator=(NetnsScope&&) = delete;
    NetnsScope(const NetnsScope&) = delete;
    ~NetnsScope();

private:
    explicit NetnsScope(UniqueFd previous) : previous_(std::move(previous)) {}
    UniqueFd previous_;  // invalid: nothing to restore
};

// Why this process cannot make network namespaces (not root, no CAP_SYS_ADMIN,
// no `ip`), or "" when it can: for tests to skip with the precise reason.
std::string netns_unavailable_reason();

// One veth pair between two fresh namespaces. Link i of a tag:
//   receive end  "<tag>r<i>" in namespace "ndisshm-<tag>-rx", 198.18.<i>.1/24, MAC 02:00:00:00:<i>:01
//   transmit end "<tag>t<i>" in namespace "ndisshm-<tag>-tx", 198.18.<i>.2/24, MAC 02:00:00:00:<i>:02
// 198.18.0.0/15 is the benchmarking range (RFC 2544): never routed, and here
// never outside the pair anyway. The transmit end knows the receive end's MAC
// statically: once an AF_XDP program takes every frame on the receive end,
// nothing there answers ARP. IPv6 addresses are not generated (addrgenmode
// none), so the wire carries only what senders send.
struct VethEnd {
    std::string ifname;
    std::string netns;    // /run/netns/... path
    std::string address;  // IPv4, dotted
    uint8_t mac[6] = {};
};

class VethLinks {
public:
    // `tag`: 1..8 characters [a-z0-9]; the process id is added, so two processes never clash.
    // Makes both namespaces and `count` links (1..200). On failure removes what it made.
    static Result<std::unique_ptr<VethLinks>> create(const std::string& tag, uint32_t count);
    ~VethLinks();  // deletes both namespaces, and with them every veth in them
    VethLinks(const VethLinks&) = delete;
    VethLinks& operator=(const VethLinks&) = delete;

    uint32_t count() const { return static_cast<uint32_t>(rx_.size()); }
    const VethEnd& rx(uint32_t i) const { return rx_.at(i); }
    const VethEnd& tx(uint32_t i) const { return tx_.at(i); }
    const std::string& rx_netns() const { return rx_ns_; }
    const std::string& tx_netns() const { return tx_ns_; }

    // Deletes namespaces "ndisshm-*" whose process id is no longer alive: what
    // a killed test left behind. Returns how many it removed.
    static size_t sweep_stale();

private:
    VethLinks() = default;
    Status add_link(uint32_t i, const std::string& tag);
    std::string rx_ns_, tx_ns_;
    std::string rx_name_, tx_name_;  // as `ip netns` names them
    std::vector<VethEnd> rx_, tx_;
};

// A UDP socket made in namespace `netns` (a path; "" for the caller's) and
// connected to (address, port): send() is one datagram, one system call.
class UdpSender {
public:
    static Result<std::unique_ptr<UdpSender>> open(const std::string& netns, const std::string& address,
                                                   uint16_t port);
    // ENOBUFS (the transmit queue is full) is returned as it is: callers pace.
    Status send(std::span<const std::byte> payload);
    // Up to 1024 datagrams in one sendmmsg; returns how many went.
    Result<size_t> send_batch(std::span<const std::span<const std::byte>> payloads);

private:
    explicit UdpSender(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

// ICMP echo requests (what ping sends) from a raw socket made in `netns`:
// kernel-built IPv4 header, ours the ICMP header and its checksum.
class IcmpEchoSender {
public:
    static Result<std::unique_ptr<IcmpEchoSender>> open(const std::string& netns, const std::string& address);
    Status send(uint16_t id, uint16_t sequence, std::span<const std::byte> payload);

private:
    IcmpEchoSender(UniqueFd fd, std::string address) : fd_(std::move(fd)), address_(std::move(address)) {}
    UniqueFd fd_;
    std::string address_;
};

}  // namespace ndisshm::os
