// Linux implementations of unix_socket.hpp.
#include "os/unix_socket.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>

#include "os/fault.hpp"

namespace ndisshm::os {
namespace {

Error errno_error(std::string operation, int e = errno) { return Error{std::move(operation), e, std::strerror(e)}; }

Error our_error(std::string operation, int e, std::string detail) {
    return Error{std::move(operation), e, std::move(detail)};
}

// sockaddr_un for `path`, or ENAMETOOLONG: sun_path is 108 bytes with the NUL,
// and a silently cut path would bind somewhere else.
Result<sockaddr_un> unix_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(a.sun_path))
        return our_error("socket path '" + path + "'", ENAMETOOLONG,
                         "must be 1.." + std::to_string(sizeof(a.sun_path) - 1) + " bytes");
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

Result<UniqueFd> new_socket() {
    int fd = fault::call("socket", -1, [] { return ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); });
    if (fd < 0) return errno_error("socket(AF_UNIX, SOCK_SEQPACKET)");
    return UniqueFd(fd);
}

bool connect_raw(int fd, const sockaddr_un& a) {
    return fault::call("connect", -1,
                       [&] { return ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)); }) == 0;
}

// After a failed bind: replaces a socket file nobody accepts on (a host that
// died leaves one behind). A live host keeps its socket; other files are never
// removed, so a typo in --socket cannot delete a user's file.
Status remove_if_stale(const std::string& path, const sockaddr_un& a) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) return errno_error("lstat(" + path + ")");
    if (!S_ISSOCK(st.st_mode)) return our_error("bind(" + path + ")", EEXIST, "exists and is not a socket; left alone");
    auto probe = new_socket();
    if (!probe) return probe.error();
    if (connect_raw(probe->get(), a))
        return our_error("bind(" + path + ")", EADDRINUSE, "another process is listening on this socket");
    if (errno != ECONNREFUSED) return errno_error("connect(" + path + ") to probe an existing socket");
    if (::unlink(path.c_str()) != 0) return errno_error("unlink(stale socket " + path + ")");
    return Ok{};
}

}  // namespace

const unsigned kSealShrink = F_SEAL_SHRINK;
const unsigned kSealGrow = F_SEAL_GROW;
const unsigned kSealWrite = F_SEAL_WRITE;
const unsigned kSealSeal = F_SEAL_SEAL;

Status make_private_directory(const std::string& path) {
    if (path.empty()) return our_error("mkdir", EINVAL, "empty directory path");
    // Parents first, each 0700 if we create it; existing parents are left as
    // they are (/run/user/UID, /tmp).
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
        const std::string parent = path.substr(0, slash);
        if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir(" + parent + ")");
    }
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir(" + path + ")");
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) return errno_error("lstat(" + path + ")");
    if (!S_ISDIR(st.st_mode)) return our_error("socket directory " + path, ENOTDIR, "exists and is not a directory");
    if (st.st_uid != ::geteuid())
        return our_error("socket directory " + path, EPERM,
                         "owned by uid " + std::to_string(st.st_uid) + ", not by us: refusing to use it");
    if ((st.st_mode & 07777) != 0700 && ::chmod(path.c_str(), 0700) != 0)
        return errno_error("chmod(" + path + ", 0700)");
    return Ok{};
}

Result<UniqueFd> listen_unix(const std::string& path, int backlog) {
    auto address = unix_address(path);
    if (!address) return address.error();
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        if (auto s = make_private_directory(path.substr(0, slash)); !s) return s.error();
    }
    auto sock = new_socket();
    if (!sock) return sock.error();
    const auto* sa = reinterpret_cast<const sockaddr*>(&*address);
    const auto bind = [&] {
        return fault::call("bind", -1, [&] { return ::bind(sock->get(), sa, sizeof(sockaddr_un)); });
    };
    if (bind() != 0) {
        if (errno != EADDRINUSE) return errno_error("bind(" + path + ")");
        if (auto s = remove_if_stale(path, *address); !s) return s.error();
        if (bind() != 0) return errno_error("bind(" + path + ")");
    }
    // bind made the file with the umask's mode; until this chmod only our
    // user can reach it anyway, since the directory is 0700.
    if (::chmod(path.c_str(), 0600) != 0) return errno_error("chmod(" + path + ", 0600)");
    if (fault::call("listen", -1, [&] { return ::listen(sock->get(), backlog); }) != 0)
        return errno_error("listen(" + path + ")");
    return std::move(*sock);
}

Result<UniqueFd> accept_unix(int listen_fd) {
    for (;;) {
        int fd =
            fault::call("accept4", -1, [&] { return ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC); });
        if (fd >= 0) return UniqueFd(fd);
        if (errno != EINTR) return errno_error("accept4");
    }
}

Result<PeerCredentials> peer_credentials(int fd) {
    ucred c{};
    socklen_t n = sizeof(c);
    if (fault::call("getsockopt", -1, [&] { return ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &n); }) != 0)
        return errno_error("getsockopt(SO_PEERCRED)");
    return PeerCredentials{c.pid, c.uid, c.gid};
}

Result<UniqueFd> connect_unix(const std::string& path) {
    auto address = unix_address(path);
    if (!address) return address.error();
    auto sock = new_socket();
    if (!sock) return sock.error();
    if (!connect_raw(sock->get(), *address)) return errno_error("connect(" + path + ")");
    return std::move(*sock);
}

Result<std::pair<UniqueFd, UniqueFd>> seqpacket_pair() {
    int fds[2];
    if (fault::call("socketpair", -1,
                    [&] { return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }) != 0)
        return errno_error("socketpair(AF_UNIX, SOCK_SEQPACKET)");
    return std::pair<UniqueFd, UniqueFd>(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

Status send_datagram(int fd, std::span<const std::span<const std::byte>> parts, std::span<const int> pass_fds) {
    constexpr size_t kMaxParts = 4;
    constexpr size_t kMaxPassFds = 4;
    if (parts.size() > kMaxParts) return our_error("sendmsg", EINVAL, "more than 4 parts");
    if (pass_fds.size() > kMaxPassFds) return our_error("sendmsg", EINVAL, "more than 4 file descriptors");
    std::array<iovec, kMaxParts> iov{};
    size_t total = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
        iov[i].iov_base = const_cast<std::byte*>(parts[i].data());  // sendmsg only reads
        iov[i].iov_len = parts[i].size();
        total += parts[i].size();
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = parts.size();
    union {
        cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * kMaxPassFds)];
    } control{};
    if (!pass_fds.empty()) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE(pass_fds.size_bytes());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(pass_fds.size_bytes());
        std::memcpy(CMSG_DATA(c), pass_fds.data(), pass_fds.size_bytes());
    }
    for (;;) {
        ssize_t n = fault::call("sendmsg", ssize_t{-1}, [&] { return ::sendmsg(fd, &msg, MSG_NOSIGNAL); });
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("sendmsg(" + std::to_string(total) + " bytes)");
        // SEQPACKET sends a datagram whole or not at all; a short count would
        // mean the kernel broke that promise, and the peer would see a
        // truncated message, so say so.
        if (static_cast<size_t>(n) != total)
            return our_error("sendmsg", EIO, "sent " + std::to_string(n) + " of " + std::to_string(total) + " bytes");
        return Ok{};
    }
}

Result<Datagram> receive_datagram(int fd, std::span<std::byte> buffer) {
    // Room for a few fds: a message takes at most one, more than that is an
    // attack or a bug; MSG_CTRUNC says so and the kernel closes the surplus.
    constexpr size_t kMaxFds = 4;
    union {
        cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * kMaxFds)];
    } control{};
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof(control.bytes);
    ssize_t n;
    do {
        n = fault::call("recvmsg", ssize_t{-1},
                        [&] { return ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); });
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("recvmsg");
    Datagram d;
    d.bytes = static_cast<size_t>(n);
    d.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
    d.control_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int received;
            std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            d.fds.emplace_back(received);
        }
    }
    if (n == 0 && d.fds.empty()) {
        // SEQPACKET reads 0 both at the end and for an empty datagram; only a
        // hung-up peer makes it the end.
        pollfd p{fd, POLLRDHUP, 0};
        d.end_of_stream = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
    }
    return d;
}

Result<bool> wait_readable(int fd, int timeout_ms) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int wait = -1;
        if (timeout_ms >= 0) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            wait = left > 0 ? static_cast<int>(left) : 0;
        }
        pollfd p{fd, POLLIN, 0};
        int r = fault::call("poll", -1, [&] { return ::poll(&p, 1, wait); });
        if (r > 0) return true;  // POLLIN, POLLHUP or POLLERR: the next read tells which
        if (r == 0) return false;
        if (errno != EINTR) return errno_error("poll");
    }
}

Result<uint64_t> file_size(int fd) {
    struct stat st{};
    if (fault::call("fstat", -1, [&] { return ::fstat(fd, &st); }) != 0) return errno_error("fstat");
    return static_cast<uint64_t>(st.st_size);
}

Result<unsigned> memfd_seals(int fd) {
    int seals = fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_GET_SEALS); });
    if (seals < 0) {
        const int e = errno;
        if (e == EINVAL) return our_error("fcntl(F_GET_SEALS)", e, "not a memfd (the fd takes no seals)");
        return errno_error("fcntl(F_GET_SEALS)", e);
    }
    return static_cast<unsigned>(seals);
}

Status memfd_add_seals(int fd, unsigned seals) {
    if (fault::call("fcntl", -1, [&] { return ::fcntl(fd, F_ADD_SEALS, static_cast<int>(seals)); }) != 0)
        return errno_error("fcntl(F_ADD_SEALS, " + std::to_string(seals) + ")");
    return Ok{};
}

Result<size_t> open_fd_count() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return errno_error("opendir(/proc/self/fd)");
    size_t count = 0;
    while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] != '.') ++count;
    }
    ::closedir(dir);
    return count - 1;  // the directory stream's own fd
}

unsigned effective_uid() { return static_cast<unsigned>(::geteuid()); }

}  // namespace ndisshm::os
