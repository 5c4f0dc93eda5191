// The host, its emulated NIC and one guest process, set up once per packet
// size for zero_copy_bench.cpp.
//
// A Rig owns a runtime, a hub (<ndisshm/hub.h>) with the guest provider on its
// adapter, one host queue (host memory: the copy path) and one guest process
// (bench/zero_copy_guest.cpp, spawned with posix_spawn) whose memfd backs the
// guest's queue. Both queues have the same receive buffers: 8 blocks of 1 MiB
// (8 MiB), cut into 2 KiB slots (9 KiB for jumbo frames).
//
// send() is the NIC receiving kBatch packets, through one of two paths:
//   ZeroCopy: ndisshm_hub_deliver_batch: the NIC writes each packet straight
//             into a slot of the guest's queue (guest memory);
//   Copy:     ndisshm_hub_deliver_copy_batch: the NIC writes each packet into
//             a slot of the host queue, the host copies it into a slot of the
//             guest's queue, and gives the host slot back.
// Either way the packets' descriptors go into the guest's receive ring (no
// system call unless the guest sleeps), the guest reads them in place (every
// byte, or only the headers: GuestStyle) and gives each back through its
// completion ring, which the hub reaps at its next delivery. Everything but
// the copy is the same on both paths: the source buffers, their stamping, the
// batch, the guest and its check, and the flow control below.
//
// Flow control is the rings': the hub takes no more packets than the guest's
// ring has room for (kRingSize, the most a guest holds at once), and checks
// that room before the NIC writes a byte, so a refused packet costs no wasted
// write. A batch that does not fit whole is offered again from where it
// stopped (each offer reaps what the guest gave back meanwhile); between
// offers the NIC spins (spin(true): the host has a core of its own) or sleeps
// 20 us, leaving the CPU to the guest.
//
// Working set: each queue has 8 MiB of buffers, but the miniport hands out the
// slot given back last first (a stack), so the memory touched is the packets
// in flight: up to the window (about 8 MiB) when the guest is behind, a few
// batches (hundreds of KiB, in L2) when it keeps up.
//
// Nothing here hangs: the guest must be up within 10 s (or it is killed), a
// send that makes no progress for 5 s fails, a drain waits at most 5 s, and
// the destructor reaps the guest (BYE, then SIGKILL after 5 s). The guest
// leaves by itself if the bench dies (zero_copy_guest.cpp).
#pragma once

#include <ndisshm/hub.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "zero_copy_counters.hpp"

namespace zero_copy {

inline constexpr uint32_t kBatch = 64;  // packets per delivery, Linux NAPI's budget
inline constexpr uint32_t kRingSize = 1024;  // each guest ring's entries: 32 batches in the guest's hands
inline constexpr uint32_t kBlocksPerQueue = 8;
inline constexpr uint32_t kBlockBytes = 1u << 20;

enum class Path { ZeroCopy, Copy };

// How the guest reads and waits (zero_copy_guest.cpp's arguments).
struct GuestStyle {
    bool rxonly = false;  // descriptors and first 64 bytes only, in bursts; else every byte, checked
    bool busy = false;    // spins on its ring; else sleeps in interrupt mode
    bool operator<(const GuestStyle& o) const { return std::pair(rxonly, busy) < std::pair(o.rxonly, o.busy); }
};

// The NIC's input for one packet size: kBatch buffers with fixed payloads
// (support/packet_format.hpp) whose sums are precomputed, so the NIC only
// stamps a header and trailer (32 bytes) per packet; the hub copies a batch
// out before it returns, so the same buffers serve every batch.
class Source {
public:
    explicit Source(uint32_t length);
    // Stamps packets seq .. seq + kBatch - 1 of `stream` into `out`.
    void fill(uint64_t seq, uint32_t stream, ndisshm_hub_packet* out);
    uint32_t length() const { return length_; }

private:
    uint32_t length_;
    size_t stride_;
    std::vector<std::byte> bytes_;
    std::vector<uint64_t> sums_;
};

// CPU time in nanoseconds, each from where it is cheapest to read.
uint64_t thread_cpu_ns();
uint64_t process_cpu_ns();
// A process's time on a CPU (/proc/PID/schedstat); 0 if unreadable.
uint64_t process_cpu_ns(pid_t pid);

class Rig {
public:
    // Everything up, the guest connected and both paths warmed up (each slot
    // written once); nullptr with the reason in `error` otherwise (no guest
    // left behind).
    static std::unique_ptr<Rig> make(uint32_t packet_bytes, const std::string& guest_path, GuestStyle style,
                                     std::string* error);
    ~Rig();
    Rig(const Rig&) = delete;
    Rig& operator=(const Rig&) = delete;

    // Sends the next kBatch packets by `path`, offering again what the ring
    // had no room for. False (with error()) if the guest stopped taking them.
    bool send(Path path);
    // Between offers: spin (a core of one's own) or sleep 20 us.
    void spin(bool on) { spin_ = on; }
    // Waits until the guest has read and given back every packet sent.
    bool drain();
    // Every packet sent was read intact, in order, by the guest ("" if so).
    std::string check_guest() const;
    // SIGSTOP / SIGCONT the guest: while it is stopped nothing gives slots
    // back, so the NIC's thread runs alone (send() must then stay inside the
    // window: it would wait 5 s and fail otherwise).
    bool stop_guest();
    bool continue_guest();

    uint64_t sent() const { return next_seq_ - 1; }
    uint64_t guest_packets() const { return counters_->packets.load(std::memory_order_acquire); }
    uint64_t stalls() const { return stalls_; }  // times send() waited for the guest
    // Packets the hub refused after the NIC offered them (ring or socket
    // full); send() offers them again.
    uint64_t dropped() const;
    // Packets the guest gave back and the hub took (completions reaped).
    uint64_t returned() const;
    // Eventfd writes that woke the sleeping guest (need-wakeup).
    uint64_t kicks() const;
    pid_t guest_pid() const { return guest_ ? guest_->pid() : -1; }
    uint32_t slots() const { return slots_; }
    uint32_t window() const { return window_; }
    uint32_t slot_bytes() const { return slot_bytes_; }
    const std::string& error() const { return error_; }

private:
    Rig(uint32_t packet_bytes, GuestStyle style);
    bool start(const std::string& guest_path);
    bool spawn_guest(const std::string& guest_path);
    bool guest_running();
    void reap_guest();
    ndisshm_hub_queue_info guest_queue_info() const;
    bool fail(std::string why);
    static void log_line(void* rig, const char* line);

    Source source_;
    GuestStyle style_;
    bool spin_ = false;
    uint32_t slot_bytes_;
    uint32_t slots_ = 0;
    uint32_t window_ = 0;
    std::string dir_;
    ndisshm_runtime* runtime_ = nullptr;
    ndisshm_hub* hub_ = nullptr;
    uint32_t guest_queue_ = 0;
    std::unique_ptr<ndisshm::support::ChildProcess> guest_;
    GuestCounters* counters_ = nullptr;
    uint64_t next_seq_ = 1;
    uint64_t stalls_ = 0;
    ndisshm_hub_packet batch_[kBatch];
    std::string error_;
    mutable std::mutex log_mu_;         // the hub logs from its own thread
    std::vector<std::string> hub_log_;  // the hub's last lines, for error messages
};

}  // namespace zero_copy
