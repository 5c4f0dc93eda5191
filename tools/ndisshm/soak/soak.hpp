// `ndisshm soak`: random allocate, free, queue create and free on host
// memory from several threads, with guest processes connecting to a hub and
// being SIGKILLed at random moments, for a set time or number of operations,
// while the invariants are checked continuously (soak/world.hpp lists them).
// Exit 0 only if no check failed, nothing leaked and the verifier found
// nothing.
#pragma once

#include <cstdint>
#include <string>

namespace ndisshm::cli {

struct SoakOptions {
    double seconds = 10;   // stop after this long (0: only --ops bounds it)
    uint64_t ops = 0;      // stop after this many operations (0: only --seconds bounds it)
    uint32_t threads = 2;  // threads allocating and freeing host memory
    uint32_t guests = 2;   // guest processes alive at once (0: none, no hub)
    uint64_t seed = 0;     // 0: from the clock (printed, so a run can be repeated)
    uint32_t max_block_bytes = 256 * 1024;
    uint32_t max_outstanding = 256;  // blocks one thread holds at most
    uint32_t kill_after_ms = 800;    // a guest is killed at a random moment within this of its start
    uint32_t host_restart_ms = 2000; // the hub is stopped and a new one started about this often (0: never)
    bool json = false;
    bool quiet = false;

    // The guest process the soak spawns: `ndisshm soak --guest-worker PATH ...` (hidden flags).
    std::string guest_worker;  // the hub's socket; set: run as a guest process
    std::string guest_name;
    uint64_t guest_memory = 4 << 20;
    uint64_t guest_base = 0;  // guest physical base
    uint32_t guest_reconnect_ms = 0;  // the guest's reconnect_ms: the soak restarts its host
};

int run_soak(const SoakOptions& o);
// The guest process: connects, checks what the host tells it and every packet,
// and reports each block and finding on stdout, one line each (soak/guests.hpp).
int run_soak_guest(const SoakOptions& o);

}  // namespace ndisshm::cli
