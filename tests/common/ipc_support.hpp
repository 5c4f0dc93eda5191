// Helpers for the host/guest channel and guest tests: raw datagrams (so tests
// can send what Channel::send refuses to), headers, fd counts, a private
// temporary directory for sockets.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ipc/channel.hpp"
#include "os/unix_socket.hpp"

namespace ndisshm::test {

using Bytes = std::vector<std::byte>;

// A header followed by `payload`, with `length` as given (to lie about it).
inline Bytes datagram(uint16_t type, const void* payload, size_t bytes, uint32_t length,
                      uint32_t magic = ipc::kMagic, uint16_t version = ipc::kVersion) {
    ipc::MessageHeader h{magic, version, type, length, 1};
    Bytes out(sizeof(h) + bytes);
    std::memcpy(out.data(), &h, sizeof(h));
    if (bytes > 0) std::memcpy(out.data() + sizeof(h), payload, bytes);
    return out;
}

template <class T>
Bytes datagram(ipc::MessageType type, const T& payload) {
    return datagram(static_cast<uint16_t>(type), &payload, sizeof(T), sizeof(T));
}

// Sends `bytes` as one datagram with any number of fds (Channel never sends
// more than one: tests need to).
inline void send_raw(int socket, const Bytes& bytes, const std::vector<int>& fds = {}) {
    iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(socket, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size())) << std::strerror(errno);
}

inline size_t fd_count() {
    auto n = os::open_fd_count();
    EXPECT_TRUE(n) << n.error().message();
    return n ? *n : 0;
}

// A fresh memfd of `bytes`, sealed against shrinking as a guest's would be.
inline os::UniqueFd sealed_memfd(uint64_t bytes) {
    auto fd = os::memfd_create("ndisshm-ipc-test", false);
    EXPECT_TRUE(fd) << fd.error().message();
    EXPECT_TRUE(os::resize_file(fd->get(), bytes));
    EXPECT_TRUE(os::memfd_seal_shrink(fd->get()));
    return std::move(*fd);
}

// A directory of our own under the system's temp dir, removed with its contents.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "ndisshm-ipc-XXXXXX").string();
        if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
        EXPECT_FALSE(path_.empty()) << "mkdtemp: " << std::strerror(errno);
    }
    ~TempDir() {
        std::error_code ignored;
        if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace ndisshm::test
