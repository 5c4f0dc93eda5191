// Linux implementations of netns.hpp.
#include "os/netns.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "os/fault.hpp"

extern char** environ;

namespace ndisshm::os {
namespace {

Error errno_error(std::string operation, int e = errno) {
    return Error{std::move(operation), e, std::strerror(e)};
}

std::string join(const std::vector<std::string>& args) {
    std::string s = "ip";
    for (const auto& a : args) s += " " + a;
    return s;
}

// The first of these that exists: posix_spawnp looks in PATH only, and a
// root shell's PATH does not always hold /usr/sbin.
std::string ip_binary() {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
        if (::access(p, X_OK) == 0) return p;
    return "ip";
}

Result<sockaddr_in> ipv4(const std::string& address, uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1)
        return Error{"inet_pton(" + address + ")", EINVAL, "not an IPv4 address"};
    return a;
}

// A socket made inside `netns` (a path, "" for here): it stays in that namespace.
Result<UniqueFd> socket_in(const std::string& netns, int domain, int type, int protocol, const char* what) {
    UniqueFd ns;
    if (!netns.empty()) {
        auto f = open_netns(netns);
        if (!f) return f.error();
        ns = std::move(*f);
    }
    auto scope = NetnsScope::enter(ns.get());
    if (!scope) return scope.error();
    const int fd = fault::call("socket", -1, [&] { return ::socket(domain, type | SOCK_CLOEXEC, protocol); });
    if (fd < 0)
        return errno_error(std::string("socket(") + what + ") in " +
                           (netns.empty() ? "this namespace" : netns));
    return UniqueFd(fd);
}

uint16_t internet_checksum(std::span<const std::byte> bytes) {
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < bytes.size(); i += 2)
        sum += (std::to_integer<uint32_t>(bytes[i]) << 8) | std::to_integer<uint32_t>(bytes[i + 1]);
    if (bytes.size() % 2 != 0) sum += std::to_integer<uint32_t>(bytes.back()) << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

std::atomic<uint32_t> next_links{0};

}  // namespace

Status run_ip(const std::vector<std::string>& args) {
    int err[2];
    if (::pipe2(err, O_CLOEXEC) != 0) return errno_error("pipe2 for '" + join(args) + "'");
    UniqueFd read_end(err[0]), write_end(err[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, write_end.get(), 2);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    const std::string bin = ip_binary();
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    write_end = UniqueFd();
    if (rc != 0)
        return Error{"posix_spawn(" + join(args) + ")", rc,
                     std::strerror(rc) + std::string(" (is iproute2 installed?)")};
    std::string text;
    char buf[512];
    for (ssize_t n; (n = ::read(read_end.get(), buf, sizeof(buf))) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        text.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Ok{};
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                              : "killed by signal " + std::to_string(WTERMSIG(status));
    return Error{join(args), 0, how + (text.empty() ? "" : ": " + text)};
}

Result<UniqueFd> open_netns(const std::string& path) {
    const int fd = fault::call("open", -1, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
    if (fd < 0) return errno_error("open(" + path + ")");
    return UniqueFd(fd);
}

Result<NetnsScope> NetnsScope::enter(int netns) {
    if (netns < 0) return NetnsScope(UniqueFd());
    auto here = open_netns("/proc/thread-self/ns/net");
    if (!here) return here.error();
    if (::setns(netns, CLONE_NEWNET) != 0) return errno_error("setns(CLONE_NEWNET)");
    return NetnsScope(std::move(*here));
}

NetnsScope::~NetnsScope() {
    // Going back cannot fail for a namespace we were in a moment ago, short of
    // the kernel running out of memory; a thread left in the wrong namespace
    // would make every later socket of it wrong, so that is fatal.
    if (previous_.valid() && ::setns(previous_.get(), CLONE_NEWNET) != 0) {
        std::perror("ndisshm: setns back to the thread's own network namespace");
        std::abort();
    }
}

std::string netns_unavailable_reason() {
    if (::geteuid() != 0)
        return "not running as root: network namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN";
    if (ip_binary() == "ip") return "iproute2's 'ip' is not installed (scripts/deps.sh installs it)";
    // On a thread of its own: unshare moves only the calling thread, which
    // then ends and takes the new namespace with it.
    int err = 0;
    std::thread([&] { err = ::unshare(CLONE_NEWNET) == 0 ? 0 : errno; }).join();
    if (err != 0) return std::string("unshare(CLONE_NEWNET) is not permitted here: ") + std::strerror(err);
    return "";
}

Result<std::unique_ptr<VethLinks>> VethLinks::create(const std::string& tag, uint32_t count) {
    if (tag.empty() || tag.size() > 8 ||
        tag.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos)
        return Error{"VethLinks tag '" + tag + "'", EINVAL, "must be 1..8 characters a-z0-9"};
    if (count == 0 || count > 200) return Error{"VethLinks", EINVAL, "count must be 1..200"};
    std::unique_ptr<VethLinks> v(new VethLinks());
    const std::string base =
        "ndisshm-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(next_links++);
    for (auto* ns : {&v->rx_name_, &v->tx_name_}) {
        const std::string name = base + (ns == &v->rx_name_ ? "-rx" : "-tx");
        if (auto s = run_ip({"netns", "add", name}); !s)
            return s.error();  // ~VethLinks deletes what was made
        *ns = name;
    }
    v->rx_ns_ = "/run/netns/" + v->rx_name_;
    v->tx_ns_ = "/run/netns/" + v->tx_name_;
    for (uint32_t i = 0; i < count; ++i)
        if (auto s = v->add_link(i, tag); !s) return s.error();
    return v;
}

Status VethLinks::add_link(uint32_t i, const std::string& tag) {
    VethEnd r, t;
    r.ifname = tag + "r" + std::to_string(i);
    t.ifname = tag + "t" + std::to_string(i);
    r.netns = rx_ns_;
    t.netns = tx_ns_;
    r.address = "198.18." + std::to_string(i) + ".1";
    t.address = "198.18." + std::to_string(i) + ".2";
    char rmac[18], tmac[18];
    std::snprintf(rmac, sizeof(rmac), "02:00:00:00:%02x:01", i);
    std::snprintf(tmac, sizeof(tmac), "02:00:00:00:%02x:02", i);
    const uint8_t rb[6] = {2, 0, 0, 0, static_cast<uint8_t>(i), 1},
                  tb[6] = {2, 0, 0, 0, static_cast<uint8_t>(i), 2};
    std::memcpy(r.mac, rb, 6);
    std::memcpy(t.mac, tb, 6);
    const std::vector<std::vector<std::string>> steps = {
        {"link", "add", r.ifname, "address", rmac, "netns", rx_name_, "type", "veth", "peer", "name",
         t.ifname, "address", tmac, "netns", tx_name_},
        {"-n", rx_name_, "link", "set", r.ifname, "addrgenmode", "none"},
        {"-n", tx_name_, "link", "set", t.ifname, "addrgenmode", "none"},
        {"-n", rx_name_, "addr", "add", r.address + "/24", "dev", r.ifname},
        {"-n", tx_name_, "addr", "add", t.address + "/24", "dev", t.ifname},
        {"-n", rx_name_, "link", "set", r.ifname, "up"},
        {"-n", tx_name_, "link", "set", t.ifname, "up"},
        {"-n", tx_name_, "neigh", "replace", r.address, "lladdr", rmac, "dev", t.ifname, "nud", "permanent"},
    };
    for (const auto& s : steps)
        if (auto done = run_ip(s); !done) return done.error();
    rx_.push_back(std::move(r));
    tx_.push_back(std::move(t));
    return Ok{};
}

VethLinks::~VethLinks() {
    // A veth pair goes with either of its namespaces; each namespace goes once
    // nothing (no socket, no process) holds it any more.
    for (const auto* ns : {&rx_name_, &tx_name_})
        if (!ns->empty())
            if (auto s = run_ip({"netns", "del", *ns}); !s)
                std::fprintf(stderr, "ndisshm: %s\n", s.error().message().c_str());
}

size_t VethLinks::sweep_stale() {
    DIR* d = ::opendir("/run/netns");
    if (d == nullptr) return 0;
    std::vector<std::string> stale;
    while (const dirent* e = ::readdir(d)) {
        // ndisshm-<tag>-<pid>-<n>-<rx|tx>
        const std::string name = e->d_name;
        if (name.rfind("ndisshm-", 0) != 0) continue;
        const size_t a = name.find('-', 8), b = a == std::string::npos ? a : name.find('-', a + 1);
        if (b == std::string::npos) continue;
        const long pid = std::strtol(name.substr(a + 1, b - a - 1).c_str(), nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back(name);
    }
    ::closedir(d);
    size_t removed = 0;
    for (const auto& n : stale) removed += run_ip({"netns", "del", n}).ok() ? 1 : 0;
    return removed;
}

Result<std::unique_ptr<UdpSender>> UdpSender::open(const std::string& netns, const std::string& address,
                                                   uint16_t port) {
    auto to = ipv4(address, port);
    if (!to) return to.error();
    auto fd = socket_in(netns, AF_INET, SOCK_DGRAM, 0, "AF_INET, SOCK_DGRAM");
    if (!fd) return fd.error();
    if (::connect(fd->get(), reinterpret_cast<const sockaddr*>(&*to), sizeof(*to)) != 0)
        return errno_error("connect(udp " + address + ":" + std::to_string(port) + ")");
    return std::unique_ptr<UdpSender>(new UdpSender(std::move(*fd)));
}

Status UdpSender::send(std::span<const std::byte> payload) {
    const std::span<const std::byte> one[] = {payload};
    auto n = send_batch(one);
    if (!n) return n.error();
    return Ok{};
}

Result<size_t> UdpSender::send_batch(std::span<const std::span<const std::byte>> payloads) {
    constexpr size_t kMax = 1024;
    const size_t count = std::min(payloads.size(), kMax);
    std::vector<iovec> iov(count);
    std::vector<mmsghdr> msgs(count);
    for (size_t i = 0; i < count; ++i) {
        iov[i] = {const_cast<std::byte*>(payloads[i].data()), payloads[i].size()};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n;
    do {
        n = fault::call("sendmsg", -1,
                        [&] { return ::sendmmsg(fd_.get(), msgs.data(), static_cast<unsigned>(count), 0); });
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("sendmmsg(udp, " + std::to_string(count) + " datagrams)");
    return static_cast<size_t>(n);
}

Result<std::unique_ptr<IcmpEchoSender>> IcmpEchoSender::open(const std::string& netns,
                                                             const std::string& address) {
    if (auto a = ipv4(address, 0); !a) return a.error();
    auto fd = socket_in(netns, AF_INET, SOCK_RAW, IPPROTO_ICMP, "AF_INET, SOCK_RAW, IPPROTO_ICMP");
    if (!fd) return fd.error();
    return std::unique_ptr<IcmpEchoSender>(new IcmpEchoSender(std::move(*fd), address));
}

Status IcmpEchoSender::send(uint16_t id, uint16_t sequence, std::span<const std::byte> payload) {
    std::vector<std::byte> packet(sizeof(icmphdr) + payload.size());
    icmphdr h{};
    h.type = ICMP_ECHO;
    h.un.echo.id = htons(id);
    h.un.echo.sequence = htons(sequence);
    std::memcpy(packet.data(), &h, sizeof(h));
    if (!payload.empty()) std::memcpy(packet.data() + sizeof(h), payload.data(), payload.size());
    const uint16_t sum = htons(internet_checksum(packet));
    std::memcpy(packet.data() + offsetof(icmphdr, checksum), &sum, sizeof(sum));
    auto to = ipv4(address_, 0);
    ssize_t n;
    do {
        n = fault::call("sendmsg", static_cast<ssize_t>(-1), [&] {
            return ::sendto(fd_.get(), packet.data(), packet.size(), 0,
                            reinterpret_cast<const sockaddr*>(&*to), sizeof(*to));
        });
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("sendto(icmp echo to " + address_ + ")");
    return Ok{};
}

}  // namespace ndisshm::os
