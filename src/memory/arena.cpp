#include "memory/arena.hpp"

#include <cstring>

namespace ndisshm::memory {

Result<std::unique_ptr<Arena>> Arena::create(const ArenaConfig& config) {
    const uint64_t page = os::page_size();
    if (config.capacity_bytes < page || config.capacity_bytes % page != 0)
        return Error{"arena " + config.name, EINVAL, "capacity must be a non-zero multiple of the page size"};
    auto fd = os::memfd_create(config.name, /*huge_pages=*/false);
    if (!fd) return fd.error();
    if (auto s = os::memfd_seal_shrink(fd->get()); !s) return s.error();
    auto base = os::map_shared(fd->get(), config.capacity_bytes);
    if (!base) return base.error();
    return std::unique_ptr<Arena>(
        new Arena(config, std::move(*fd), static_cast<std::byte*>(*base), page));
}

Arena::Arena(ArenaConfig config, os::UniqueFd fd, std::byte* base, uint64_t page)
    : config_(std::move(config)), fd_(std::move(fd)), base_(base), page_(page),
      pages_(config_.capacity_bytes / page) {}

Arena::~Arena() { os::unmap(base_, config_.capacity_bytes); }

Result<ArenaBlock> Arena::allocate(uint64_t bytes) {
    if (bytes == 0) return Error{"arena " + config_.name + " allocate", EINVAL, "zero bytes"};
    const uint64_t pages = (bytes + page_ - 1) / page_;
    std::unique_lock lock(mu_);
    auto range = pages_.allocate(pages);
    if (!range)
        return Error{"arena " + config_.name + " allocate(" + std::to_string(bytes) + ")", ENOMEM,
                     "no free range that large (" + std::to_string(pages_.pages_in_use() * page_) + " of " +
                         std::to_string(config_.capacity_bytes) + " bytes in use)"};
    const uint64_t offset = range->first_page * page_;
    const uint64_t length = range->pages * page_;
    if (offset + length > file_bytes_) {
        // Grow in steps so that most allocations never reach the kernel.
        uint64_t target = (offset + length + config_.grow_step_bytes - 1) / config_.grow_step_bytes *
                          config_.grow_step_bytes;
        if (target > config_.capacity_bytes) target = config_.capacity_bytes;
        if (auto s = os::resize_file(fd_.get(), target); !s) {
            pages_.free(range->first_page, range->pages);
            return s.error();
        }
        file_bytes_ = target;
    }
    const bool fresh = range->fresh;
    lock.unlock();
    ArenaBlock block{offset, length, base_ + offset};
    if (!fresh) {
        // Reused pages may hold another user's data: no byte crosses tenants.
        std::memset(block.address, 0, length);
        zeroed_bytes_.fetch_add(length, std::memory_order_relaxed);
    }
    return block;
}

bool Arena::free(uint64_t offset, uint64_t length) {
    if (offset % page_ != 0 || length % page_ != 0 || length == 0) return false;
    std::lock_guard lock(mu_);
    return pages_.free(offset / page_, length / page_);
}

ArenaStats Arena::stats() const {
    std::lock_guard lock(mu_);
    return ArenaStats{config_.capacity_bytes,        file_bytes_,           pages_.pages_in_use() * page_,
                      pages_.blocks_in_use(),        pages_.high_water_pages() * page_, zeroed_bytes_.load(std::memory_order_relaxed)};
}

}  // namespace ndisshm::memory
