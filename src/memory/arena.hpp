// Arena: one memfd, mapped once, carved into page-aligned blocks.
//
// Every block is a range of one memfd, so it can be handed to another process
// as (fd, offset, length). The whole capacity is reserved as address space up
// front (so a block's address never changes), and the file grows under it in
// steps as the allocator reaches further. Blocks are zeroed before they are
// handed out: a block that reuses memory somebody else wrote is cleared, a
// block of never-used pages is zero already.
//
// Thread-safe: one lock per arena (per-thread caches come with the memory
// issue's allocator work).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.hpp"
#include "memory/page_allocator.hpp"
#include "os/os.hpp"

namespace ndisshm::memory {

struct ArenaConfig {
    std::string name = "ndisshm";
    uint64_t capacity_bytes = uint64_t{16} << 30;  // address space reserved
    uint64_t grow_step_bytes = uint64_t{64} << 20; // the file grows by this much at a time
};

struct ArenaBlock {
    uint64_t offset = 0;  // bytes from the start of the memfd
    uint64_t length = 0;  // bytes, a multiple of the page size
    std::byte* address = nullptr;
};

struct ArenaStats {
    uint64_t capacity_bytes = 0;
    uint64_t file_bytes = 0;
    uint64_t bytes_in_use = 0;
    uint64_t blocks_in_use = 0;
    uint64_t high_water_bytes = 0;
    uint64_t zeroed_bytes = 0;  // bytes cleared by us because they were reused
};

class Arena {
public:
    static Result<std::unique_ptr<Arena>> create(const ArenaConfig& config);
    ~Arena();
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    // A zeroed block of at least `bytes` (rounded up to pages). Fails with an
    // Error (err = ENOMEM for lack of space, or the OS's errno) and allocates
    // nothing.
    Result<ArenaBlock> allocate(uint64_t bytes);

    // Returns a block exactly as allocate gave it. False, changing nothing, for
    // anything else (the caller reports the misuse).
    bool free(uint64_t offset, uint64_t length);

    int fd() const { return fd_.get(); }
    std::byte* base() const { return base_; }
    uint64_t page_bytes() const { return page_; }
    ArenaStats stats() const;
    const std::string& name() const { return config_.name; }

private:
    Arena(ArenaConfig config, os::UniqueFd fd, std::byte* base, uint64_t page);

    ArenaConfig config_;
    os::UniqueFd fd_;
    std::byte* base_;
    uint64_t page_;
    mutable std::mutex mu_;
    PageAllocator pages_;
    uint64_t file_bytes_ = 0;
    std::atomic<uint64_t> zeroed_bytes_{0};
};

}  // namespace ndisshm::memory
