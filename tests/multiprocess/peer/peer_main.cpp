// The other process of the multiprocess suite, exec'd by the tests.
//
//   multiprocess_peer guest SOCKET NAME [options]   a guest, honest or not
//   multiprocess_peer library-guest SOCKET NAME     an honest guest of the guest library
//   multiprocess_peer host SOCKET                   a host with a test NIC
//
// It speaks the wire protocol through Channel directly (not the guest
// library) so that it can misbehave in ways a library would never let it:
// hand over a pipe, lie about the size, forge descriptors, send garbage.
// It reports what happens as lines on stdout, one event a line, flushed, for
// the test to wait on: "HELLO_ACK id", "MEMORY_ACK bytes", "QUEUE id flags lookahead",
// "BLOCK handle offset length", "RINGS queue size", "GOT total bad", "TRUNCATE EPERM|OK|<errno>",
// "ERROR reason", "CLOSED reason" (exit 3), "BYE" (exit 0). Every wait is
// bounded: a peer never outlives --life-ms.
#include <fcntl.h>
#include <ndisshm/guest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ipc/channel.hpp"
#include "ipc/ring.hpp"
#include "hub/guest_hub.hpp"
#include "packet_format.hpp"

namespace {
using namespace ndisshm;
using namespace ndisshm::ipc;
using Clock = std::chrono::steady_clock;

void out(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

struct Options {
    uint64_t memory = 4 << 20;  // bytes of the memfd
    uint64_t claim = 0;         // SET_MEMORY.size; 0: the real size
    std::string fd = "memfd";   // memfd | unsealed | unsealable | pipe | file
    std::string behavior = "normal";
    uint64_t forge_cookie = 0;
    int life_ms = 15000;
    uint32_t reconnect_ms = 0;  // library-guest: ndisshm_guest_config.reconnect_ms
};

Options parse(int argc, char** argv, int first) {
    Options o;
    for (int i = first; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--memory") o.memory = std::strtoull(v.c_str(), nullptr, 0);
        else if (k == "--claim") o.claim = std::strtoull(v.c_str(), nullptr, 0);
        else if (k == "--fd") o.fd = v;
        else if (k == "--behavior") o.behavior = v;
        else if (k == "--forge-cookie") o.forge_cookie = std::strtoull(v.c_str(), nullptr, 0);
        else if (k == "--life-ms") o.life_ms = std::atoi(v.c_str());
        else if (k == "--reconnect-ms") o.reconnect_ms = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 0));
    }
    return o;
}

// The guest's memory, or the thing it pretends is its memory.
int make_memory(const Options& o, const std::string& name, int* keep) {
    *keep = -1;
    if (o.fd == "pipe") {
        int p[2];
        if (::pipe(p) != 0) return -1;
        *keep = p[1];
        return p[0];
    }
    if (o.fd == "file") {
        char path[] = "/tmp/ndisshm-mp-file-XXXXXX";
        const int fd = ::mkstemp(path);
        ::unlink(path);
        if (fd >= 0 && ::ftruncate(fd, static_cast<off_t>(o.memory)) != 0) return -1;
        return fd;
    }
    const int fd = ::memfd_create(("mp-guest-" + name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(o.memory)) != 0) return -1;
    if (o.fd == "memfd") ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
    if (o.fd == "unsealable") ::fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL);  // no seal can ever be added now
    return fd;
}

struct Block {
    uint64_t offset, length;
};

int guest(const std::string& path, const std::string& name, const Options& o) {
    auto sock = connect_to(path);
    if (!sock) return out("CLOSED connect: " + sock.error().message()), 3;
    Channel ch(std::move(*sock));
    int writer = -1;
    const int memfd = make_memory(o, name, &writer);
    if (memfd < 0) return out("CLOSED cannot make memory"), 4;
    auto* mem = static_cast<std::byte*>(::mmap(nullptr, o.memory, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
    if (mem == MAP_FAILED) mem = nullptr;  // a pipe cannot be mapped: it is only handed over

    Hello h{};
    std::snprintf(h.name, sizeof(h.name), "%s", name.c_str());
    if (o.behavior == "garbage") {
        const char junk[] = "GET / HTTP/1.1\r\nthis is not a message";
        ::send(ch.fd(), junk, sizeof(junk), MSG_NOSIGNAL);
    } else {
        ch.send(MessageType::Hello, h);
    }
    std::map<uint64_t, Block> blocks;
    std::map<uint32_t, uint64_t> handle_of_index;  // BLOCK_ADDED's index: what ring entries name a block by
    uint64_t total = 0, bad = 0;
    bool forged = false;
    // The queue's rings, once RINGS_ATTACHED names them (no checks: this
    // peer trusts its host, and plays the hostile guest on purpose).
    ReceiveRing rx;
    CompletionRing done;
    uint32_t cons = 0, done_prod = 0;
    // Reads every packet the host has published, checks each, and gives
    // its cookie back: honestly, or as --behavior says.
    const auto drain = [&] {
        if (!rx.attached()) return;
        const uint32_t prod = rx.load_producer();
        if (prod == cons) return;
        std::vector<uint32_t> cookies;
        while (cons != prod) {
            // One packet: its chain of segments (two with lookahead split).
            std::span<const std::byte> pieces[kMaxSegmentsPerPacket];
            size_t n = 0;
            bool ok = mem != nullptr, follows = true;
            uint32_t cookie = 0;
            while (follows && cons != prod && n < kMaxSegmentsPerPacket) {
                const RxEntry d = rx.load(cons++);
                follows = (d.flags & kSegmentFollows) != 0;
                cookie = d.cookie;
                const auto h = handle_of_index.find(d.block);
                auto b = h == handle_of_index.end() ? blocks.end() : blocks.find(h->second);
                ok = ok && b != blocks.end() && d.offset + uint64_t{d.length} <= b->second.length;
                // Read in place: the packet is where the host wrote it, in our memory.
                if (ok) pieces[n] = {mem + b->second.offset + d.offset, d.length};
                ++n;
            }
            ok = ok && support::verify(support::Segments(pieces, n)).has_value();
            ++total;
            if (!ok) ++bad;
            cookies.push_back(cookie);
        }
        rx.store_consumer(cons);
        out("GOT " + std::to_string(total) + " " + std::to_string(bad));
        if (!forged && o.behavior != "normal" && o.behavior != "shrink") {
            forged = true;
            if (o.behavior == "forge-cookie") cookies[0] = static_cast<uint32_t>(o.forge_cookie);
            if (o.behavior == "double-done") cookies.push_back(cookies[0]);
            if (o.behavior == "wild-index") {
                rx.store_consumer(cons + 1000);  // claims to have read what was never written
                return;
            }
            if (o.behavior == "overrun") {
                done.store_producer(done_prod + done.size() + 5);  // more completions than the ring holds
                return;
            }
            if (o.behavior == "hold") return;  // never gives anything back
        }
        if (o.behavior == "hold") return;
        for (uint32_t c : cookies) done.store(done_prod++, Completion{c});
        done.store_producer(done_prod);
    };
    const auto end = Clock::now() + std::chrono::milliseconds(o.life_ms);
    while (Clock::now() < end) {
        drain();
        auto r = ch.receive(rx.attached() ? 1 : 100);
        if (!r) {
            if (r.error().err == ETIMEDOUT) continue;
            return out("CLOSED " + r.error().message()), 3;
        }
        Message& m = *r;
        switch (m.type()) {
            case MessageType::HelloAck: {
                out("HELLO_ACK " + std::to_string(m.as<HelloAck>().guest_id));
                if (o.behavior == "stall-before-memory") break;  // never sends SET_MEMORY
                const SetMemory sm{o.claim != 0 ? o.claim : o.memory, 0x100000000ull};
                ch.send(MessageType::SetMemory, sm, memfd);
                break;
            }
            case MessageType::MemoryAck:
                out("MEMORY_ACK " + std::to_string(m.as<MemoryAck>().size));
                if (o.behavior == "shrink") {
                    // The host maps all of it: a smaller file would make its
                    // next write a SIGBUS. The seal must forbid this.
                    const int rc = ::ftruncate(memfd, static_cast<off_t>(o.memory / 2));
                    out(std::string("TRUNCATE ") + (rc == 0 ? "OK" : errno == EPERM ? "EPERM" : std::strerror(errno)));
                }
                break;
            case MessageType::QueueAttached: {
                const auto qa = m.as<QueueAttached>();
                out("QUEUE " + std::to_string(qa.queue_id) + " " + std::to_string(qa.flags) + " " +
                    std::to_string(qa.lookahead_size));
                if (o.behavior == "deaf") {  // alive, connected, and never reads again
                    std::this_thread::sleep_until(end);
                    return out("CLOSED life time over"), 5;
                }
                break;
            }
            case MessageType::BlockAdded: {
                const auto b = m.as<BlockAdded>();
                blocks[b.handle] = {b.guest_offset, b.length};
                handle_of_index[b.index] = b.handle;
                out("BLOCK " + std::to_string(b.handle) + " " + std::to_string(b.guest_offset) + " " +
                    std::to_string(b.length));
                break;
            }
            case MessageType::BlockRemoved: blocks.erase(m.as<BlockRemoved>().handle); break;
            case MessageType::RingsAttached: {
                const auto ra = m.as<RingsAttached>();
                auto b = blocks.find(ra.handle);
                if (mem == nullptr || b == blocks.end()) break;
                rx = ReceiveRing(mem + b->second.offset, ra.size);
                done = CompletionRing(mem + b->second.offset + ra.done_offset, ra.size);
                out("RINGS " + std::to_string(ra.queue_id) + " " + std::to_string(ra.size));
                break;
            }
            case MessageType::Error: out("ERROR " + m.error_reason()); break;
            case MessageType::Bye: return out("BYE"), 0;
            default: break;
        }
    }
    return out("CLOSED life time over"), 5;
}

// A host with a test NIC: every running guest's queue gets a packet about
// every millisecond, until the test kills us (or --life-ms).
int host(const std::string& path, const Options& o) {
    ::setenv("NDISSHM_QUIET", "1", 1);
    ndisshm_runtime* rt = nullptr;
    NDIS_HANDLE adapter = nullptr;
    if (ndisshm_runtime_create(nullptr, &rt, nullptr, 0) != NDIS_STATUS_SUCCESS ||
        ndisshm_adapter_create(rt, "nic0", &adapter) != NDIS_STATUS_SUCCESS)
        return out("CLOSED runtime"), 4;
    GuestHubConfig c;
    c.socket_path = path;
    c.log = [](const std::string&) {};
    auto hub = GuestHub::start(adapter, c);
    if (!hub) return out("CLOSED hub: " + hub.error().message()), 4;
    out("LISTENING");
    uint64_t seq = 0;
    const auto end = Clock::now() + std::chrono::milliseconds(o.life_ms);
    while (Clock::now() < end) {
        for (const auto& g : (*hub)->guests()) {
            ++seq;
            const auto p = support::make_packet(seq, 64 + seq % 1400);
            (*hub)->deliver(g.queue_id, p);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    (*hub)->stop();
    ndisshm_adapter_destroy(adapter);
    ndisshm_runtime_destroy(rt);
    return out("BYE"), 0;
}

}  // namespace

// A guest of the real guest library (<ndisshm/guest.h>), honest: it reads
// each packet in place across its segments through ndisshm_guest_packet's
// segment list and checks it. Lines: "QUEUE id flags lookahead", "BLOCK
// handle offset length usage", "GOT total bad split" after each batch, then
// "BYE" or "CLOSED reason".
struct LibraryGuest {
    uint64_t total = 0, bad = 0, split = 0;
    bool batch = false;

    static void on_packet(void* self, const ndisshm_guest_packet* p) {
        auto* g = static_cast<LibraryGuest*>(self);
        std::span<const std::byte> pieces[NDISSHM_GUEST_MAX_SEGMENTS];
        uint64_t length = 0;
        for (uint32_t k = 0; k < p->segment_count; ++k) {
            pieces[k] = {static_cast<const std::byte*>(p->segments[k].data), p->segments[k].length};
            length += p->segments[k].length;
        }
        const bool ok = length == p->packet_length && p->segments[0].data == p->data &&
                        p->segments[0].length == p->length &&
                        support::verify(support::Segments(pieces, p->segment_count)).has_value();
        ++g->total;
        if (!ok) ++g->bad;
        if (p->segment_count > 1) ++g->split;
        g->batch = true;
    }
    static void on_event(void*, const ndisshm_guest_event* e) {
        if (e->kind == NDISSHM_GUEST_QUEUE_ATTACHED)
            out("QUEUE " + std::to_string(e->queue_id) + " " + std::to_string(e->flags) + " " +
                std::to_string(e->lookahead_size));
        if (e->kind == NDISSHM_GUEST_BLOCK_ADDED)
            out("BLOCK " + std::to_string(e->handle) + " " + std::to_string(e->guest_offset) + " " +
                std::to_string(e->length) + " " + std::to_string(e->usage));
        if (e->kind == NDISSHM_GUEST_DISCONNECTED) out(std::string("DISCONNECTED ") + e->reason);
        if (e->kind == NDISSHM_GUEST_RECONNECTED)
            out("RECONNECTED " + std::to_string(e->guest_id) + " " + std::to_string(e->attempts));
    }
};

int library_guest(const std::string& path, const std::string& name, const Options& o) {
    LibraryGuest state;
    ndisshm_guest_config c;
    ndisshm_guest_config_init(&c);
    c.name = name.c_str();
    c.memory_bytes = o.memory;
    c.guest_physical_base = 0x100000000ull;
    c.on_packet = &LibraryGuest::on_packet;
    c.on_event = &LibraryGuest::on_event;
    c.context = &state;
    c.reconnect_ms = o.reconnect_ms;
    char error[256] = {};
    ndisshm_guest* g = nullptr;
    (void)ndisshm_guest_create(&c, &g, error, sizeof(error));
    if (g == nullptr) return out(std::string("CLOSED ") + error), 4;
    if (ndisshm_guest_connect(g, path.c_str(), 5000, error, sizeof(error)) != NDIS_STATUS_SUCCESS) {
        out(std::string("CLOSED ") + error);
        ndisshm_guest_destroy(g);
        return 3;
    }
    const auto end = Clock::now() + std::chrono::milliseconds(o.life_ms);
    int rc = 5;
    std::string last = "life time over";
    while (Clock::now() < end) {
        const NDIS_STATUS s = ndisshm_guest_poll(g, 100, error, sizeof(error));
        if (state.batch) {
            state.batch = false;
            out("GOT " + std::to_string(state.total) + " " + std::to_string(state.bad) + " " +
                std::to_string(state.split));
        }
        if (s == NDIS_STATUS_SUCCESS || s == NDISSHM_STATUS_TIMEOUT) continue;
        rc = s == NDISSHM_STATUS_HOST_BYE ? 0 : 3;
        last = error;
        break;
    }
    ndisshm_guest_destroy(g);
    return rc == 0 ? (out("BYE"), 0) : (out("CLOSED " + last), rc);
}

int main(int argc, char** argv) {
    if (argc >= 4 && std::strcmp(argv[1], "guest") == 0) return guest(argv[2], argv[3], parse(argc, argv, 4));
    if (argc >= 4 && std::strcmp(argv[1], "library-guest") == 0)
        return library_guest(argv[2], argv[3], parse(argc, argv, 4));
    if (argc >= 3 && std::strcmp(argv[1], "host") == 0) return host(argv[2], parse(argc, argv, 3));
    std::fprintf(stderr,
                 "usage: %s guest SOCKET NAME [--memory B] [--claim B] [--fd KIND] [--behavior B]\n"
                 "       %s library-guest SOCKET NAME [--memory B] [--life-ms MS] [--reconnect-ms MS]\n"
                 "       %s host SOCKET [--life-ms MS]\n",
                 argv[0], argv[0], argv[0]);
    return 2;
}
