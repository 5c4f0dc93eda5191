// The soak's host threads: each allocates and frees blocks through
// NdisAllocateSharedMemory / NdisFreeSharedMemory (on its own queues and the
// default queue of the soak's adapter, whose provider is NDIS's default, and
// on the default queue of the hub's adapter, whose provider is the hub's),
// and creates and frees queues, at random; every block is checked when it is
// handed out and when it is freed. check_books compares the library's books
// with what the threads hold (soak/world.hpp has the invariants).
#pragma once

#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>
#include <ndisshm/hub.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "soak/soak.hpp"
#include "soak/world.hpp"

namespace ndisshm::cli::soak {

class SoakHost {
public:
    // `hub` may be null (no guests): then only the soak adapter is used.
    SoakHost(World& world, const SoakOptions& options, ndisshm_runtime* runtime, NDIS_HANDLE adapter,
             ndisshm::Hub* hub);
    ~SoakHost();
    SoakHost(const SoakHost&) = delete;
    SoakHost& operator=(const SoakHost&) = delete;

    void start(uint64_t seed);
    // Joins the threads once world.stopping is set: each frees what it holds
    // (blocks, then queues) before it ends.
    void join();
    // Stops the threads for a moment and compares the books; failures go to
    // the world. Returns whether the hub's books could be read steady (guests
    // come and go meanwhile; they are left for the next check if not).
    bool check_books();
    // A host restart: stops the threads, frees every block they hold on the
    // hub's adapter (a host that goes takes its adapter along), calls
    // `restart` (stop the old hub, start a new one; null: none) and goes on
    // with the hub it returns.
    void swap_hub(const std::function<ndisshm::Hub*()>& restart);

private:
    struct Block {
        NDIS_HANDLE handle = nullptr;
        NDIS_HANDLE adapter = nullptr;
        uint32_t queue = 0;
        uint32_t usage = 0;
        uint32_t length = 0;
        unsigned char* data = nullptr;
        unsigned char pattern = 0;
    };
    struct Worker {
        uint32_t index = 0;
        std::mt19937_64 rng;
        std::vector<Block> blocks;
        std::vector<uint32_t> queues;  // on the soak adapter, ids of this worker's own range
        uint32_t next_queue = 0;
        uint64_t serial = 0;
    };

    void run(Worker& w);
    void step(Worker& w);
    void allocate(Worker& w);
    void free_block(Worker& w, size_t index);
    void create_queue(Worker& w);
    void free_queue(Worker& w);
    void release_all(Worker& w);
    // The runtime's record of a block just allocated against what was asked.
    void check_record(const Block& b, const NDIS_SHARED_MEMORY_PARAMETERS& p, const char* provider,
                      const std::string& who);
    void check_queue_books(NDIS_HANDLE adapter, uint32_t queue, uint64_t blocks, uint64_t bytes,
                           const char* where);
    bool check_hub_books(uint64_t q0_blocks, uint64_t q0_bytes);
    std::string name_of(const Block& b) const;

    World& world_;
    const SoakOptions& options_;
    ndisshm_runtime* runtime_;
    NDIS_HANDLE adapter_;
    ndisshm::Hub* hub_;
    NDIS_HANDLE hub_adapter_ = nullptr;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::thread> threads_;
    std::atomic<int> check_wanted_{0};  // threads waiting for the exclusive lock: the workers yield
};

}  // namespace ndisshm::cli::soak
