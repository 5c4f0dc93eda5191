// The host's control socket and the state snapshot it serves (`ndisshm stat`).
//
// A host's books live in its process: the runtime's (per adapter, queue,
// usage, node), the memory layer's, the verifier's counts, the hub's
// sessions and queues. The control socket lets another process read them
// while the host runs, the way a debugger's extension reads NDIS's: a client
// connects, sends one request ("stat"), reads the reply (a JSON object) and
// the connection closes. One request per connection keeps the server
// stateless, and a client that misbehaves costs at most one bounded wait.
//
// Wire: SOCK_SEQPACKET, like the guest socket (ipc/channel.hpp says why). The
// request is one datagram of at most kMaxRequestBytes. The reply is one or
// more datagrams of at most kReplyChunkBytes, then one datagram of a single
// NUL byte that ends it (text never holds one; an empty datagram would not
// do: once the server has closed, reading one looks like the end of the
// stream): a reply larger than the socket buffer still goes through, and a
// truncated reply is told from a complete one. An unknown request gets
// {"error": "..."} and the same ending.
//
// The socket is made as the guest socket is (os::listen_unix): 0600 in a
// directory of ours that is 0700; anyone who can connect may read the books,
// and only the owner can connect.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <ndisshm/hub.h>

#include "base/result.hpp"
#include "os/fd_checks.hpp"
#include "providers/guest_provider.hpp"

namespace ndisshm::ipc {

inline constexpr size_t kMaxRequestBytes = 256;
inline constexpr size_t kReplyChunkBytes = 32 * 1024;
inline constexpr size_t kMaxReplyBytes = size_t{64} << 20;  // a client gives up beyond this
inline constexpr int kControlClientTimeoutMs = 1000;         // the server's wait for one client's request
inline constexpr std::string_view kReplyEnd{"\0", 1};

// "x.sock" -> "x.ctl"; anything else gets ".ctl" appended.
std::string control_path_for(const std::string& socket_path);

// Answers one request; `ok` false makes the reply an error to the client.
using ControlHandler = std::function<std::string(std::string_view request, bool& ok)>;

class ControlServer {
public:
    // Listens at `path` and serves on a thread of its own until stop().
    static Result<std::unique_ptr<ControlServer>> start(const std::string& path, ControlHandler handler,
                                                        std::function<void(const std::string&)> log);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Joins the thread, closes the socket and removes its file. Idempotent.
    void stop();
    const std::string& path() const { return path_; }
    uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

private:
    ControlServer(std::string path, ControlHandler handler, std::function<void(const std::string&)> log);
    void run();
    void serve_one();

    std::string path_;
    ControlHandler handler_;
    std::function<void(const std::string&)> log_;
    os::UniqueFd listen_fd_;
    std::unique_ptr<os::WakeFd> wake_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    std::atomic<uint64_t> requests_{0};
};

// The client: connects to `path` (a control socket, or a guest socket whose
// control socket is control_path_for(path) when it does not end in ".ctl"),
// sends `request`, returns the whole reply. The error names the step.
Result<std::string> control_query(const std::string& path, const std::string& request, int timeout_ms);

// Everything the snapshot shows that the public C API cannot read from the
// runtime by itself: what the hub knows (its queues, guests, provider,
// sessions) and the verifier messages it was given.
struct SnapshotSource {
    ndisshm_runtime* runtime = nullptr;
    NDIS_HANDLE adapter = nullptr;
    std::string adapter_name;
    std::string socket_path;
    std::string control_path;
    double uptime_s = 0;
    bool running = false;  // started and not stopped
    ndisshm_hub_stats stats{};
    std::vector<ndisshm_hub_queue_info> queues;
    std::vector<ndisshm_hub_guest_info> guests;
    std::string binding_name;          // the provider's binding on the adapter
    std::string provider_description;  // its describe()
    providers::GuestProviderStats provider_stats;
    std::vector<std::string> recent_violations;
    std::vector<std::string> closed_sessions;
};

// The snapshot as one JSON object (the format: tools/ndisshm/README.md).
std::string snapshot_json(const SnapshotSource& source);

}  // namespace ndisshm::ipc
