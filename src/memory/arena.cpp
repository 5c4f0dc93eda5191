#include "memory/arena.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <chrono>
#include <cstring>

#include "memory/zeroer.hpp"
#include "memory/zeroing.hpp"

namespace ndisshm::memory {
namespace {

// Blocks fetched from the page allocator per cache miss: one trip to the arena lock serves the next few
// allocations of that size on this CPU too. Small, so a miss stays cheap and a burst of one size does
// not strand many blocks in one CPU's cache.
constexpr unsigned kRefillBatch = 8;

uint64_t round_up(uint64_t v, uint64_t step) { return (v + step - 1) / step * step; }

}  // namespace

Result<std::unique_ptr<Arena>> Arena::create(const ArenaConfig& config) {
    const uint64_t unit = os::page_size();
    const std::string what = "arena " + config.name;
    if (config.capacity_bytes < unit || config.capacity_bytes % unit != 0)
        return Error{what, EINVAL, "capacity must be a non-zero multiple of the page size"};
    if (!config.huge_pages && (config.grow_step_bytes == 0 || config.grow_step_bytes % unit != 0))
        return Error{what, EINVAL, "grow step must be a non-zero multiple of the page size"};
    // hugetlb mappings are whole huge pages; the allocator may use all of what is mapped.
    const uint64_t capacity =
        config.huge_pages ? round_up(config.capacity_bytes, os::kHugePageBytes) : config.capacity_bytes;

    auto fd = os::memfd_create(config.name, config.huge_pages);
    if (!fd) return fd.error();
    auto base = os::map_shared(fd->get(), capacity);  // a hugetlb memfd takes this size here
    if (!base) return base.error();
    // From here on `arena` owns the mapping and the fd, so every early return cleans up.
    auto states = os::reserve_anonymous(capacity / unit * sizeof(uint64_t));
    if (!states) {
        os::unmap(*base, capacity);
        return states.error();
    }
    std::unique_ptr<Arena> arena(new Arena(config, std::move(*fd), static_cast<std::byte*>(*base), capacity,
                                           static_cast<uint64_t*>(*states)));
    if (auto s = os::memfd_seal_shrink(arena->fd()); !s) return s.error();
    if (config.node >= 0) {
        if (auto s = os::prefer_node(arena->base_, capacity, static_cast<unsigned>(config.node)); !s)
            return s.error();
    }
    if (config.huge_pages) {
        // The first huge page now: an arena that cannot have even one is refused here, where the caller
        // can fall back or report, rather than at some later allocation.
        std::lock_guard lock(arena->mu_);
        if (auto s = arena->commit_locked(os::kHugePageBytes); !s) return s.error();
    } else {
        // Refused only by kernels without transparent huge pages; the arena works the same either way.
        arena->thp_advised_ = static_cast<bool>(os::advise_huge_pages(arena->base_, capacity));
    }
    return arena;
}

Arena::Arena(ArenaConfig config, os::UniqueFd fd, std::byte* base, uint64_t capacity, uint64_t* states)
    : config_(std::move(config)), fd_(std::move(fd)), base_(base), capacity_(capacity), unit_(os::page_size()),
      unit_shift_(static_cast<unsigned>(std::countr_zero(unit_))),
      release_from_(resolve_zero_by_release(config_.zero_by_release_bytes)), states_(states),
      pages_(capacity / unit_) {}

Arena::~Arena() {
    os::unmap(base_, capacity_);
    os::unmap(states_, capacity_ / unit_ * sizeof(uint64_t));
}

Error Arena::no_room(uint64_t bytes) const {
    std::lock_guard lock(mu_);
    return Error{"arena " + config_.name + " allocate(" + std::to_string(bytes) + ")", ENOMEM,
                 "no free range that large (" + std::to_string(pages_.pages_in_use() * unit_) + " of " +
                     std::to_string(capacity_) + " bytes in use)"};
}

Status Arena::commit_locked(uint64_t end_bytes) {
    if (end_bytes <= committed_) return Ok{};
    if (config_.huge_pages) {
        // After the pool refused, ask again only once kCommitRetry has passed: until then every
        // allocation that reaches past the committed pages would pay a failing fallocate before it is
        // refused (or, in Auto, served by the 4 KiB overflow arena). The pool only refills when some
        // other process or the administrator gives pages back, which is rare and never urgent.
        const auto now = std::chrono::steady_clock::now();
        if (commit_refused_ && now < retry_commit_at_) return *commit_refused_;
        // Exactly the huge pages needed: each one is real memory taken from a pool others may need.
        const uint64_t target = std::min(round_up(end_bytes, os::kHugePageBytes), capacity_);
        if (auto s = os::commit_huge_pages(fd_.get(), committed_, target - committed_, config_.node); !s) {
            commit_refused_ = s.error();
            retry_commit_at_ = now + kCommitRetry;
            return s.error();
        }
        commit_refused_.reset();
        committed_ = target;
        return Ok{};
    }
    // Grow in steps so that most allocations never reach the kernel (growing costs no memory: the
    // kernel supplies pages when they are touched).
    const uint64_t target = std::min(round_up(end_bytes, config_.grow_step_bytes), capacity_);
    if (auto s = os::resize_file(fd_.get(), target); !s) return s.error();
    committed_ = target;
    return Ok{};
}

Result<ArenaBlock> Arena::allocate(uint64_t bytes, bool contiguous, uint64_t owner) {
    if (bytes == 0) return Error{"arena " + config_.name + " allocate", EINVAL, "zero bytes"};
    if (bytes > capacity_) return no_room(bytes);
    const uint64_t pages = (bytes + unit_ - 1) >> unit_shift_;
    // A cached block may sit across a huge page boundary, so a CONTIGUOUS request in a huge page arena
    // goes to the page allocator, which knows how to avoid that.
    const bool within_huge_page = contiguous && config_.huge_pages && pages * unit_ <= os::kHugePageBytes;
    if (config_.cpu_cache && pages <= CpuCache::kMaxPages && !within_huge_page)
        return allocate_cached(pages, owner_tag(owner));
    return allocate_uncached(pages, within_huge_page, owner_tag(owner));
}

Result<ArenaBlock> Arena::allocate_cached(uint64_t pages, uint64_t owner) {
    CpuCache::Slot& slot = cache_.local();
    std::unique_lock slot_lock(slot.mu);
    uint64_t e = 0;
    CpuCache::Kind from = CpuCache::Dirty;
    bool mine = false;
    bool missed = false, refilled = false;
    for (;;) {
        const bool dirty = slot.peek(CpuCache::Dirty, pages, e);
        // The hot case of a driver's steady state: its own block back, as it left it.
        mine = dirty && owner != 0 && !CpuCache::entry_clean(e) &&
               state_owner(state(CpuCache::entry_page(e)).load(std::memory_order_relaxed)) == owner;
        if (mine) break;
        if (slot.peek(CpuCache::Clean, pages, e)) {
            from = CpuCache::Clean;
            break;
        }
        // Only another owner's block here (or a never-used one, zero but not yet present): rather one
        // the zeroer has cleared, if it has one ready (the hint is read without the lock; refill looks
        // again under it).
        if (config_.zeroer != nullptr && !refilled && depot_.clean_hint(pages) != 0) {
            refilled = true;
            auto r = refill(slot, pages, true);
            if (r && *r != 0) continue;
        }
        if (dirty) {
            [[maybe_unused]] const bool again = slot.peek(CpuCache::Dirty, pages, e);
            break;
        }
        // Nothing of this size: a few blocks in one trip to the arena lock.
        ++slot.misses;
        missed = refilled = true;
        auto r = refill(slot, pages, false);
        if (!r) return r.error();
        if (*r == 0) {
            // No room: the uncached path flushes every cache and retries before it says so.
            slot_lock.unlock();
            return allocate_uncached(pages, false, owner);
        }
    }
    [[maybe_unused]] const bool popped = slot.pop(from, pages, e);
    assert(popped);
    if (!missed) ++slot.hits;
    const bool clean = CpuCache::entry_clean(e);
    const uint64_t bytes = pages << unit_shift_;
    bool wake_zeroer = false;
    if (clean) {
        if (CpuCache::entry_ahead(e)) ++slot.pre_zeroed;
    } else if (mine) {
        ++slot.owner_reuses;
    } else {
        slot.count_zeroed(zero_method(bytes) == ZeroMethod::Release, bytes);
        // Cleared here, for want of a clean one: the zeroer should have some of this size ready.
        wake_zeroer = config_.zeroer != nullptr && depot_.want(pages);
    }
    slot_lock.unlock();
    if (wake_zeroer) config_.zeroer->poke();
    // A hit is a block freed on this CPU a moment ago (the stacks are short): likely still in its caches.
    return hand_out(CpuCache::entry_page(e), pages, owner, clean || mine, true, missed ? Warmth::Cold : Warmth::Warm);
}

Result<unsigned> Arena::refill(CpuCache::Slot& slot, uint64_t pages, bool clean_only) {
    const unsigned batch_size = std::clamp(CpuCache::capacity(pages) / 2, 1u, kRefillBatch);
    const unsigned want_clean = std::min(batch_size, slot.room(CpuCache::Clean, pages));
    const unsigned want_dirty = std::min(batch_size, slot.room(CpuCache::Dirty, pages));  // also never-used ones
    std::array<uint64_t, kRefillBatch> batch;  // entries; filled up to n
    unsigned n = 0;
    bool from_pages = false;
    {
        std::lock_guard lock(mu_);
        if (config_.zeroer != nullptr) {
            n = depot_.take_clean(pages, batch.data(), want_clean);
            if (n == 0 && !clean_only) {
                // Blocks the zeroer has not reached: still their owner's, so one may go back to it as is.
                n = depot_.take_dirty(pages, batch.data(), want_dirty);
                for (unsigned i = 0; i < n; ++i) batch[i] = CpuCache::entry(batch[i], false);
            }
        }
        if (n == 0 && !clean_only) {
            from_pages = true;
            uint64_t end = 0;
            for (; n < want_dirty; ++n) {
                auto r = pages_.allocate(pages);
                if (!r) break;
                batch[n] = CpuCache::entry(r->first_page, r->fresh);
                end = std::max(end, (r->first_page + pages) << unit_shift_);
            }
            if (n > 0) {
                if (auto s = commit_locked(end); !s) {
                    // Keep what fits under the memory already there; give the rest back.
                    unsigned kept = 0;
                    for (unsigned i = 0; i < n; ++i) {
                        const uint64_t first = CpuCache::entry_page(batch[i]);
                        if ((first + pages) << unit_shift_ <= committed_) {
                            batch[kept++] = batch[i];
                        } else {
                            [[maybe_unused]] const bool ok = pages_.free(first, pages);
                            assert(ok);
                        }
                    }
                    if (kept == 0) return s.error();
                    n = kept;
                }
            }
        }
    }
    for (unsigned i = 0; i < n; ++i) {
        // From the page allocator a block has no owner yet: cached for nobody (cleared for anyone).
        if (from_pages) state(CpuCache::entry_page(batch[i])).store(cached(pages, 0), std::memory_order_relaxed);
        // Cleared ahead: the clean stack. The rest, never-used blocks included (zero, but not yet
        // present: taking one costs page faults, so they come after a block that only needs a memset),
        // the other stack.
        [[maybe_unused]] const bool pushed =
            slot.push(CpuCache::entry_ahead(batch[i]) ? CpuCache::Clean : CpuCache::Dirty, pages, batch[i]);
        assert(pushed);
    }
    return n;
}

Result<ArenaBlock> Arena::allocate_uncached(uint64_t pages, bool within_huge_page, uint64_t owner) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::unique_lock lock(mu_);
        std::optional<PageAllocator::Range> r;
        if (within_huge_page) r = pages_.allocate_within(pages, os::kHugePageBytes / unit_);
        if (!r) r = pages_.allocate(pages);
        if (r) {
            if (auto s = commit_locked((r->first_page + pages) << unit_shift_); !s) {
                [[maybe_unused]] const bool ok = pages_.free(r->first_page, pages);
                assert(ok);
                return s.error();
            }
            lock.unlock();
            return hand_out(r->first_page, pages, owner, r->fresh, false);
        }
        lock.unlock();
        // Blocks parked in caches are free memory too: take them back before saying there is no room.
        if (!config_.cpu_cache || flush_caches() == 0) break;
    }
    return no_room(pages << unit_shift_);
}

ArenaBlock Arena::hand_out(uint64_t first_page, uint64_t pages, uint64_t owner, bool clean, bool counted,
                           Warmth warmth) {
    const ArenaBlock block{first_page << unit_shift_, pages << unit_shift_, base_ + (first_page << unit_shift_)};
    if (!clean) {
        // Reused memory may hold another owner's data: no byte crosses from one owner to the next.
        // Hugetlb pages are never released (see zeroing.hpp).
        const ZeroMethod how =
            zero_block(fd_.get(), base_, block.offset, block.length, release_from_, !config_.huge_pages, warmth);
        const ZeroMethod foretold = zero_method(block.length);
        if (!counted || how != foretold) {
            CpuCache::Slot& slot = cache_.local();
            std::lock_guard slot_lock(slot.mu);
            if (counted) slot.count_zeroed(foretold == ZeroMethod::Release, 0 - block.length);
            slot.count_zeroed(how == ZeroMethod::Release, block.length);
        }
    }
    // Release: whoever frees it next (after the core publishes the handle) sees it live.
    state(first_page).store(live(pages, owner), std::memory_order_release);
    return block;
}

bool Arena::is_live(uint64_t offset, uint64_t length) const {
    if (((offset | length) & (unit_ - 1)) != 0 || length == 0 || offset >= capacity_ || length > capacity_ - offset)
        return false;
    const uint64_t s = state(offset >> unit_shift_).load(std::memory_order_acquire);
    return state_live(s) && state_pages(s) == length >> unit_shift_;
}

bool Arena::free(uint64_t offset, uint64_t length) {
    if (((offset | length) & (unit_ - 1)) != 0 || length == 0 || offset >= capacity_ || length > capacity_ - offset)
        return false;
    const uint64_t first = offset >> unit_shift_;
    const uint64_t pages = length >> unit_shift_;
    uint64_t s = state(first).load(std::memory_order_relaxed);
    if (!state_live(s) || state_pages(s) != pages) return false;
    if (!config_.cpu_cache || pages > CpuCache::kMaxPages) {
        if (!state(first).compare_exchange_strong(s, 0, std::memory_order_acq_rel)) return false;
        std::lock_guard lock(mu_);
        [[maybe_unused]] const bool ok = pages_.free(first, pages);
        assert(ok && "a live state word names a block the page allocator has");
        return true;
    }
    // Only the one free that moves the word from live to cached may put the block in a cache: a second
    // free of the same block, however it races, finds the word changed and is refused. The owner stays
    // in the word, for the next allocation to compare.
    if (!state(first).compare_exchange_strong(s, cached(pages, state_owner(s)), std::memory_order_acq_rel))
        return false;
    std::array<uint64_t, CpuCache::capacity(1)> out;  // filled up to n: no need to clear it first
    unsigned n = 0;
    {
        CpuCache::Slot& slot = cache_.local();
        std::lock_guard slot_lock(slot.mu);
        if (!slot.push(CpuCache::Dirty, pages, CpuCache::entry(first, false))) {
            // Full: the older half leaves, in one trip to the arena's lock.
            n = slot.take_half(CpuCache::Dirty, pages, out.data());
            [[maybe_unused]] const bool pushed = slot.push(CpuCache::Dirty, pages, CpuCache::entry(first, false));
            assert(pushed);
        }
    }
    if (n != 0) spill(pages, out.data(), n);
    return true;
}

void Arena::spill(uint64_t pages, const uint64_t* entries, unsigned n) {
    bool dirty_added = false;
    {
        std::lock_guard lock(mu_);
        for (unsigned i = 0; i < n; ++i) {
            // From a dirty stack: another owner's, or never used (which the zeroer makes present).
            const uint64_t first = CpuCache::entry_page(entries[i]);
            if (config_.zeroer != nullptr && depot_.push_dirty(pages, first)) {
                dirty_added = true;
                continue;
            }
            // Back to the page allocator, its state word cleared first: once there, the range may be
            // carved again at once, and its new state must not be overwritten by this one.
            state(first).store(0, std::memory_order_relaxed);
            [[maybe_unused]] const bool ok = pages_.free(first, pages);
            assert(ok);
        }
    }
    if (dirty_added) config_.zeroer->poke();
}

uint64_t Arena::flush_caches() {
    if (!config_.cpu_cache) return 0;
    uint64_t total = 0;
    struct Held {
        uint64_t pages, entry;
    };
    for (unsigned i = 0; i < cache_.slots(); ++i) {
        // One slot at a time, its lock released before the arena's is taken (lock order).
        std::array<Held, CpuCache::kSlotEntries> held{};
        unsigned n = 0;
        {
            CpuCache::Slot& slot = cache_.slot(i);
            std::lock_guard slot_lock(slot.mu);
            slot.drain([&](uint64_t pages, uint64_t e) { held[n++] = Held{pages, e}; });
        }
        if (n == 0) continue;
        for (unsigned k = 0; k < n; ++k) state(CpuCache::entry_page(held[k].entry)).store(0, std::memory_order_relaxed);
        std::lock_guard lock(mu_);
        for (unsigned k = 0; k < n; ++k) {
            [[maybe_unused]] const bool ok = pages_.free(CpuCache::entry_page(held[k].entry), held[k].pages);
            assert(ok);
        }
        total += n;
    }
    std::lock_guard lock(mu_);
    depot_.drain([&](uint64_t pages, uint64_t first) {
        state(first).store(0, std::memory_order_relaxed);
        [[maybe_unused]] const bool ok = pages_.free(first, pages);
        assert(ok);
        ++total;
    });
    return total;
}

uint64_t Arena::zero_ahead_step() {
    uint64_t pages = 0, first = 0;
    bool fresh = false;
    {
        std::lock_guard lock(mu_);
        if (!depot_.take_for_zeroing(pages, first)) {
            // No freed block waits: one from the page allocator, if a size is wanted.
            if (!depot_.take_wanted(pages)) return 0;
            auto r = pages_.allocate(pages);
            if (!r || !commit_locked((r->first_page + pages) << unit_shift_)) {
                if (r) {
                    [[maybe_unused]] const bool ok = pages_.free(r->first_page, pages);
                    assert(ok);
                }
                depot_.unreserve(pages);
                return 0;
            }
            first = r->first_page;
            fresh = r->fresh;
        }
        depot_.clearing(pages);
    }
    // The block is in no list now: nobody else can reach it while it is cleared, with no lock held.
    // A fresh one is zero already, but not yet there: writing it makes its pages present now rather
    // than at its first user's touch.
    const uint64_t offset = first << unit_shift_, length = pages << unit_shift_;
    if (fresh) {
        std::memset(base_ + offset, 0, length);
    } else {
        zero_block(fd_.get(), base_, offset, length, release_from_, !config_.huge_pages);
    }
    state(first).store(cached(pages, 0), std::memory_order_relaxed);  // its owner's bytes are gone: anyone's
    {
        std::lock_guard lock(mu_);
        depot_.zeroed(pages, CpuCache::entry(first, true, true));
    }
    zeroed_ahead_bytes_.store(zeroed_ahead_bytes_.load(std::memory_order_relaxed) + length, std::memory_order_relaxed);
    return length;
}

ArenaStats Arena::stats() const {
    ArenaStats s;
    for (unsigned i = 0; i < cache_.slots(); ++i) {
        CpuCache::Slot& slot = cache_.slot(i);
        s.zeroed_by_memset_bytes += slot.zeroed_by_memset.load(std::memory_order_relaxed);
        s.zeroed_by_release_bytes += slot.zeroed_by_release.load(std::memory_order_relaxed);
        std::lock_guard slot_lock(slot.mu);
        s.cached_bytes += slot.cached_pages * unit_;
        s.cached_blocks += slot.cached_blocks;
        s.cache_hits += slot.hits;
        s.cache_misses += slot.misses;
        s.owner_reuses += slot.owner_reuses;
        s.served_pre_zeroed += slot.pre_zeroed;
    }
    s.zeroed_bytes = s.zeroed_by_memset_bytes + s.zeroed_by_release_bytes;
    s.zeroed_ahead_bytes = zeroed_ahead_bytes_.load(std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    s.cached_bytes += depot_.pages() << unit_shift_;  // the depot's blocks are free memory as the caches' are
    s.cached_blocks += depot_.blocks();
    s.capacity_bytes = capacity_;
    s.file_bytes = committed_;
    // Blocks move between caches and the page allocator while the slots are read: clamp, never wrap.
    s.bytes_in_use = pages_.pages_in_use() * unit_ - std::min(pages_.pages_in_use() * unit_, s.cached_bytes);
    s.blocks_in_use = pages_.blocks_in_use() - std::min(pages_.blocks_in_use(), s.cached_blocks);
    s.high_water_bytes = pages_.high_water_pages() * unit_;
    s.largest_free_bytes = pages_.largest_free_range() * unit_;
    return s;
}

bool Arena::check_consistency() const {
    std::lock_guard lock(mu_);
    return pages_.check_consistency();
}

}  // namespace ndisshm::memory
