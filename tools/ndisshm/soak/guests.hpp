// The soak's guests: processes of this binary (`ndisshm soak --guest-worker
// PATH`, run_soak_guest) that connect to the hub, get a queue in their own
// memory and check every packet. One thread keeps --guests of them alive,
// kills each with SIGKILL at a random moment and starts another in its place,
// and delivers numbered packets to the running ones.
//
// A guest process reports on stdout, one line each:
//   Q <queue>                          its queue was attached
//   B+ <handle> <offset> <length> <queue>   a block of its memory was added (checked: inside its
//                                      memory, overlapping no live block of it)
//   B- <handle>                        a block was removed
//   P <count>                          packets checked so far (content, queue, sequence: none lost)
//   X <what>                           something it found wrong
//   D <why>                            it lost its host (a restart) and is reconnecting
//   R <attempts>                       it reconnected: a new session (Q and B+ follow)
//   E <status> <why>                   its session ended
// A host restart (--host-restart-every) is made on this thread: the old
// hub stops, its books must be empty, a new one starts on the same socket,
// and every guest that was running must be running again within
// kBackWithinMs (new queue, new blocks, the new stream verified).
// The soak checks each block against the runtime's record (queue, length,
// provider, guest physical address) and adds it to the live ranges.
#pragma once

#include <ndisshm/hub.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "soak/host_threads.hpp"
#include "soak/soak.hpp"
#include "soak/world.hpp"

namespace ndisshm::cli::soak {

inline constexpr uint32_t kGuestBlocks = 4;  // receive blocks per guest queue
inline constexpr uint32_t kGuestBlockBytes = 64 * 1024;
inline constexpr uint32_t kGuestSlotBytes = 2048;     // largest packet

class SoakGuests {
public:
    // `hub` is the soak's: a restart replaces it with make_hub()'s, after
    // `host` has let go of the old one's adapter.
    SoakGuests(World& world, const SoakOptions& options, std::unique_ptr<ndisshm::Hub>& hub,
               std::function<std::unique_ptr<ndisshm::Hub>()> make_hub, SoakHost& host);
    ~SoakGuests();
    SoakGuests(const SoakGuests&) = delete;
    SoakGuests& operator=(const SoakGuests&) = delete;

    void start(uint64_t seed);
    // Once world.stopping is set: stops killing and starting guests, waits for
    // the hub to let go of the ones killed last.
    void join();
    // After ndisshm_hub_stop: every guest still running must end on the
    // host's BYE, exit status 0.
    void finish_after_hub_stop();

    uint64_t spawned() const { return spawned_; }
    uint64_t packets_verified() const { return packets_verified_; }
    uint64_t killed_connecting() const { return killed_connecting_; }  // before their queue was complete
    // Hubs stopped by restarts: their statistics, summed (the last hub's are the soak's own).
    const ndisshm_hub_stats& earlier_hubs() const { return earlier_; }
    uint64_t packets_after_reconnect() const { return packets_after_reconnect_; }

private:
    struct Slot {
        std::unique_ptr<support::ChildProcess> process;
        std::string name;
        uint64_t base = 0;  // guest physical base
        std::chrono::steady_clock::time_point kill_at;
        uint32_t queue = 0;
        uint32_t guest_id = 0;
        bool running = false;  // its queue and every block arrived
        bool stale = false;    // a restart ended its session: its lines until D or R are the old session's
        std::chrono::steady_clock::time_point back_by{};  // after a restart: running again by then
        bool reconnected = false;
        uint64_t packets_at_reconnect = 0;
        uint64_t next_seq = 1;
        uint64_t packets = 0;                  // as it last reported
        std::map<uint64_t, uintptr_t> blocks;  // handle -> host address
        std::vector<std::string> last_lines;
    };
    struct Dying {
        std::string name;
        uint32_t guest_id = 0;
        std::chrono::steady_clock::time_point deadline;
    };

    void run();
    void spawn(Slot& s);
    void handle(Slot& s, const std::string& line);
    void block_added(Slot& s, uint64_t handle, uint64_t offset, uint64_t length, uint32_t queue);
    void forget_blocks(Slot& s);
    void kill(Slot& s);
    void deliver(Slot& s);
    void check_dying(bool final);
    void restart_host();
    void check_back();
    void drain(Slot& s, bool expect_end);
    std::string who(const Slot& s) const { return "guest " + s.name; }

    World& world_;
    const SoakOptions& options_;
    std::unique_ptr<ndisshm::Hub>& hub_holder_;
    std::function<std::unique_ptr<ndisshm::Hub>()> make_hub_;
    SoakHost& host_;
    ndisshm::Hub* hub_ = nullptr;
    NDIS_HANDLE hub_adapter_ = nullptr;
    std::chrono::steady_clock::time_point next_restart_{};
    ndisshm_hub_stats earlier_{};
    uint64_t packets_after_reconnect_ = 0;
    std::string socket_;
    std::mt19937_64 rng_;
    std::vector<Slot> slots_;
    std::vector<Dying> dying_;
    std::thread thread_;
    uint64_t serial_ = 0;
    uint64_t spawned_ = 0;
    uint64_t packets_verified_ = 0;  // by guests that ended
    uint64_t killed_connecting_ = 0;
    bool hub_stopped_ = false;  // set by finish_after_hub_stop, after this thread ended
};

}  // namespace ndisshm::cli::soak
