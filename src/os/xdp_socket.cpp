// Linux implementation of xdp_socket.hpp over libxdp's xsk API.
#include "os/xdp_socket.hpp"

#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "os/netns.hpp"
#include "os/xdp_program.hpp"

namespace ndisshm::os {
namespace {

Error errno_error(std::string operation, int e) {
    return Error{std::move(operation), e, std::strerror(e)};
}

// libbpf and libxdp report through process-wide print callbacks. While one of
// our calls runs, what they say is kept for its error message (the bare errno
// of a failed XDP program load says little); otherwise warnings go to stderr
// and their chatter (section names, "no bpffs, loading without dispatcher")
// is dropped. open/close are serialised by kLibxdpMutex, which also guards
// `captured`.
std::mutex kLibxdpMutex;
std::string* captured = nullptr;

void keep(bool warning, const char* format, va_list args) {
    char line[512];
    std::vsnprintf(line, sizeof(line), format, args);
    if (captured != nullptr) {
        *captured += line;
    } else if (warning) {
        std::fprintf(stderr, "ndisshm: %s", line);
    }
}

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
    if (level != LIBBPF_DEBUG) keep(level == LIBBPF_WARN, format, args);
    return 0;
}

int libxdp_print(enum libxdp_print_level level, const char* format, va_list args) {
    if (level != LIBXDP_DEBUG) keep(level == LIBXDP_WARN, format, args);
    return 0;
}

// Holds kLibxdpMutex and collects libbpf's and libxdp's messages meanwhile.
class LibxdpCall {
public:
    LibxdpCall() : lock_(kLibxdpMutex) {
        static std::once_flag once;
        std::call_once(once, [] {
            libbpf_set_print(&libbpf_print);
            libxdp_set_print(&libxdp_print);
        });
        captured = &text_;
    }
    ~LibxdpCall() { captured = nullptr; }
    // The messages, on one line, for an error's detail.
    std::string said() const {
        std::string s = text_;
        for (char& c : s)
            if (c == '\n') c = ';';
        while (!s.empty() && (s.back() == ';' || s.back() == ' ')) s.pop_back();
        return s.empty() ? "" : " (libxdp: " + s + ")";
    }

private:
    std::lock_guard<std::mutex> lock_;
    std::string text_;
};

bool power_of_two(uint32_t v) {
    return v != 0 && (v & (v - 1)) == 0;
}

}  // namespace

struct XdpSocket::Rings {
    xsk_ring_prod fill{};
    xsk_ring_cons completion{};
    xsk_ring_cons rx{};
};

XdpSocket::XdpSocket(const XdpSocketConfig& config, uint64_t bytes)
    : config_(config), bytes_(bytes), rings_(std::make_unique<Rings>()) {}

Result<std::unique_ptr<XdpSocket>> XdpSocket::open(void* area, uint64_t bytes, const XdpSocketConfig& c) {
    const std::string what = "AF_XDP socket on " + c.ifname + " queue " + std::to_string(c.queue);
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    if (area == nullptr || reinterpret_cast<uintptr_t>(area) % page != 0)
        return Error{what, EINVAL, "the UMEM range must start on a page boundary"};
    if (c.frame_bytes != 2048 && c.frame_bytes != 4096)
        return Error{what, EINVAL, "frame_bytes must be 2048 or 4096 (aligned UMEM chunks)"};
    if (bytes == 0 || bytes % c.frame_bytes != 0)
        return Error{what, EINVAL,
                     "the UMEM length " + std::to_string(bytes) + " is not a non-zero multiple of " +
                         std::to_string(c.frame_bytes) + "-byte frames"};
    if (!power_of_two(c.ring_size) || c.ring_size < 64 || c.ring_size > 16384)
        return Error{what, EINVAL, "ring_size must be a power of two, 64..16384"};
    if (c.ifname.empty()) return Error{what, EINVAL, "no interface named"};

    std::unique_ptr<XdpSocket> s(new XdpSocket(c, bytes));
    if (!c.netns.empty()) {
        auto ns = open_netns(c.netns);
        if (!ns) return ns.error();
        s->netns_ = std::move(*ns);
    }
    auto scope = NetnsScope::enter(s->netns_.get());
    if (!scope) return scope.error();
    LibxdpCall call;

    xsk_umem_config uc{};
    uc.fill_size = c.ring_size;
    uc.comp_size = 64;  // transmit completions: we never transmit, but the ring must exist
    uc.frame_size = c.frame_bytes;
    uc.frame_headroom = 0;
    uc.flags = 0;
    if (int rc = xsk_umem__create(&s->umem_, area, bytes, &s->rings_->fill, &s->rings_->completion, &uc);
        rc != 0) {
        s->umem_ = nullptr;
        Error e = errno_error("xsk_umem__create(" + std::to_string(bytes) + " bytes, " +
                                  std::to_string(c.frame_bytes) + "-byte frames) for " + what,
                              -rc);
        e.detail += call.said();
        return e;
    }
    xsk_socket_config sc{};
    sc.rx_size = c.ring_size;
    sc.tx_size = 0;
    // The redirecting XDP program is ours to load (xdp_program.hpp says why).
    sc.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
    sc.xdp_flags = 0;
    sc.bind_flags = c.copy_mode ? XDP_COPY : 0;
    // A socket just closed on this queue leaves it busy for a moment: the
    // kernel unbinds its buffer pool from the queue in deferred work, after
    // close() has returned (the socket itself stopped receiving before). A
    // queue restarted at once (a guest that reconnects) waits that out; a
    // queue another socket really holds stays EBUSY and fails after kBusyWait.
    constexpr auto kBusyWait = std::chrono::seconds(2);
    const auto give_up = std::chrono::steady_clock::now() + kBusyWait;
    int rc;
    while ((rc = xsk_socket__create(&s->xsk_, c.ifname.c_str(), c.queue, s->umem_, &s->rings_->rx, nullptr,
                                    &sc)) == -EBUSY &&
           std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (rc != 0) {
        s->xsk_ = nullptr;
        Error e =
            errno_error("xsk_socket__create(" + c.ifname + ", queue " + std::to_string(c.queue) +
                            (c.copy_mode ? ", XDP_COPY)" : ")") + (c.netns.empty() ? "" : " in " + c.netns),
                        -rc);
        if (rc == -EBUSY) e.detail += " (another AF_XDP socket holds this queue)";
        e.detail += call.said();
        xsk_umem__delete(s->umem_);
        s->umem_ = nullptr;
        return e;
    }
    // Bound: now the program that sends this queue's frames to the socket.
    auto program = xsk_program_acquire(c.ifname, c.queue);
    if (program) {
        if (auto set = xsk_program_set(*program, c.queue, xsk_socket__fd(s->xsk_)); set) {
            s->program_ = *program;
            return s;
        } else {
            xsk_program_release(*program);
            program = set.error();
        }
    }
    Error e = program.error();
    e.detail += call.said();
    xsk_socket__delete(s->xsk_);
    xsk_umem__delete(s->umem_);
    s->xsk_ = nullptr;
    s->umem_ = nullptr;
    return e;
}

XdpSocket::~XdpSocket() {
    close();
}

void XdpSocket::close() {
    if (xsk_ == nullptr && umem_ == nullptr) return;
    // Detaching the XDP program looks the interface up by index in the
    // calling thread's namespace: it must be the interface's own.
    auto scope = NetnsScope::enter(netns_.get());
    if (!scope)
        std::fprintf(stderr, "ndisshm: closing an AF_XDP socket outside its namespace: %s\n",
                     scope.error().message().c_str());
    LibxdpCall call;
    // The program stops redirecting to the socket; then the socket goes: it
    // unmaps its rings and, with the UMEM's fd (the first socket of a UMEM
    // shares it), releases the kernel's socket, which unbinds from the device
    // and waits out receives in flight. The program goes with the
    // interface's last socket.
    if (program_) xsk_program_clear(*program_, config_.queue);
    if (xsk_ != nullptr) xsk_socket__delete(xsk_);
    xsk_ = nullptr;
    if (umem_ != nullptr) {
        if (int rc = xsk_umem__delete(umem_); rc != 0)
            std::fprintf(stderr, "ndisshm: xsk_umem__delete: %s\n", std::strerror(-rc));
    }
    umem_ = nullptr;
    if (program_) xsk_program_release(*program_);
    program_.reset();
}

size_t XdpSocket::fill(std::span<const uint64_t> frame_addrs) {
    if (xsk_ == nullptr || frame_addrs.empty()) return 0;
    const auto want = static_cast<uint32_t>(frame_addrs.size());
    const uint32_t n = std::min(want, static_cast<uint32_t>(xsk_prod_nb_free(&rings_->fill, want)));
    if (n == 0) return 0;
    uint32_t index = 0;
    if (xsk_ring_prod__reserve(&rings_->fill, n, &index) != n) return 0;
    for (uint32_t i = 0; i < n; ++i) *xsk_ring_prod__fill_addr(&rings_->fill, index + i) = frame_addrs[i];
    xsk_ring_prod__submit(&rings_->fill, n);
    return n;
}

size_t XdpSocket::receive(std::span<XdpPacket> out) {
    if (xsk_ == nullptr || out.empty()) return 0;
    uint32_t index = 0;
    const uint32_t n = xsk_ring_cons__peek(&rings_->rx, static_cast<uint32_t>(out.size()), &index);
    for (uint32_t i = 0; i < n; ++i) {
        const xdp_desc* d = xsk_ring_cons__rx_desc(&rings_->rx, index + i);
        out[i] = {d->addr, d->len};
    }
    if (n != 0) xsk_ring_cons__release(&rings_->rx, n);
    return n;
}

int XdpSocket::fd() const {
    return xsk_ == nullptr ? -1 : xsk_socket__fd(xsk_);
}

Result<XdpStats> XdpSocket::stats() const {
    if (xsk_ == nullptr) return Error{"getsockopt(XDP_STATISTICS)", EBADF, "the socket is closed"};
    xdp_statistics st{};
    socklen_t len = sizeof(st);
    if (::getsockopt(fd(), SOL_XDP, XDP_STATISTICS, &st, &len) != 0)
        return errno_error("getsockopt(XDP_STATISTICS)", errno);
    return XdpStats{st.rx_dropped, st.rx_invalid_descs, st.rx_ring_full, st.rx_fill_ring_empty_descs};
}

std::string xdp_unavailable_reason() {
    const int fd = ::socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::string("socket(AF_XDP) is refused here: ") + std::strerror(errno);
    ::close(fd);
    return "";
}

}  // namespace ndisshm::os
