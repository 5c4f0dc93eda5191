// Unix domain sockets and the memfd checks the host/guest channel needs.
//
// Kept apart from os.hpp (which others grow) but in the same layer: the only
// place besides os.cpp that includes Linux headers. Sockets are
// SOCK_SEQPACKET: connection-oriented like a stream, but each send is one
// datagram received whole, so a message can never be split or merged with the
// next. Every failure names the call and carries errno and its text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "os/os.hpp"

namespace ndisshm::os {

// Creates `path` and any missing parents, each 0700. The last component may
// already exist only if it is a directory owned by this user; it is then set
// to 0700 (a directory someone else made could let them swap our socket).
Status make_private_directory(const std::string& path);

// A SEQPACKET socket listening at `path`: the directory is made private (see
// above), a stale socket file (nobody accepting on it) is replaced, a live
// one gives EADDRINUSE, anything else at that path is left alone (EEXIST).
// The socket file is 0600. A bare name (no '/') leaves the working directory
// as it is.
Result<UniqueFd> listen_unix(const std::string& path, int backlog);
// accept4 with SOCK_CLOEXEC; blocking.
Result<UniqueFd> accept_unix(int listen_fd);
Result<UniqueFd> connect_unix(const std::string& path);
// Who is at the other end of a connected Unix socket (SO_PEERCRED: the
// kernel's record of the process that connected, which it cannot forge).
struct PeerCredentials {
    int pid = 0;
    unsigned uid = 0;
    unsigned gid = 0;
};
Result<PeerCredentials> peer_credentials(int fd);
// A connected pair, for tests and for in-process peers.
Result<std::pair<UniqueFd, UniqueFd>> seqpacket_pair();

// Sends `parts` as one datagram (gathered, no copy), with `pass_fds` (at
// most 4) as SCM_RIGHTS. MSG_NOSIGNAL: a gone peer is EPIPE, never SIGPIPE.
Status send_datagram(int fd, std::span<const std::span<const std::byte>> parts, std::span<const int> pass_fds = {});

struct Datagram {
    size_t bytes = 0;                // bytes stored in the buffer
    bool truncated = false;          // MSG_TRUNC: the datagram was longer than the buffer
    bool control_truncated = false;  // MSG_CTRUNC: more fds than we take (the kernel dropped the rest)
    bool end_of_stream = false;      // the peer has closed and nothing is left to read
    std::vector<UniqueFd> fds;       // every SCM_RIGHTS fd received (close-on-exec)
};
// One datagram into `buffer` without waiting (MSG_DONTWAIT): EAGAIN when none
// is queued. A 0-byte read is end_of_stream only when the peer has hung up;
// otherwise it was an empty datagram (bytes = 0). ECONNRESET (the peer closed
// while our data sat unread in its queue) is returned as is: the datagrams it
// sent before closing are still readable by the next call.
Result<Datagram> receive_datagram(int fd, std::span<std::byte> buffer);

// Waits until `fd` is readable or hung up: true; false on timeout.
// timeout_ms < 0 waits forever. EINTR restarts with the time left.
Result<bool> wait_readable(int fd, int timeout_ms);

// fstat's st_size.
Result<uint64_t> file_size(int fd);
// The seals of a memfd (F_GET_SEALS). Any other kind of fd fails with EINVAL,
// which is how a memfd is told from a regular file, pipe or socket.
Result<unsigned> memfd_seals(int fd);
// F_SEAL_* values, so callers above os/ need no Linux header.
extern const unsigned kSealShrink;
extern const unsigned kSealGrow;
extern const unsigned kSealWrite;
extern const unsigned kSealSeal;
Status memfd_add_seals(int fd, unsigned seals);

// Number of open file descriptors of this process (/proc/self/fd), for leak
// checks in tests and stats.
Result<size_t> open_fd_count();
// This process's effective uid (socket directory names).
unsigned effective_uid();

}  // namespace ndisshm::os
