// BareRing: what a ring of our shape costs on two CPUs with nothing of ours
// in it, as the floor beside the rings' figures.
//
// Why: the rings' figures follow how far apart the two CPUs are (see
// line_round_trip.hpp), and a VM cannot choose. A run that misses a target
// should say whether anything could have met it there. This is the same work
// as zero_vs_copy_paired_rxonly's zero-copy slices, reduced to what no ring
// of this shape can skip: a receive ring of 16-byte entries and a completion
// ring of 4-byte cookies, kRingSize each, indices on lines of their own;
// slots of `slot_bytes` in 8 MiB, taken from a stack (the last given back
// first, as the miniport does); each packet's first line asked for kAhead
// packets before its write and its other lines (up to 2 KiB) one packet
// before; batches of kBatch published by one sequentially consistent store
// and its flag read (the wake-up protocol's cost, kept); a consumer that
// reads a burst of 32 entries, asks for the packets' first lines, reads each
// packet's first 64 bytes (the rxonly guest) and gives the burst back with
// one store of each index. What it leaves out is ours: the books, the locks,
// the checks of a peer that may lie, a second process (both sides are
// threads of this one), the packet source's headers.
//
// A helper thread pinned to `far_cpu` (pinned_helper.hpp: asleep between
// measurements) consumes each run; the caller produces on its own CPU, with
// nothing else busy on `far_cpu` (the guest stopped). The consumer checks that
// every packet arrives once, in order, with its stamp: measure() fails
// otherwise, so a broken floor never reads as a fast one.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "pinned_helper.hpp"

namespace bench {

class BareRing {
public:
    static constexpr uint32_t kBatch = 64;          // packets a producer turn, as the rig sends
    static constexpr uint32_t kBurst = 32;          // entries a consumer turn, as the bench guest takes
    static constexpr uint32_t kRingSize = 1024;     // each ring's entries, as the rig's
    static constexpr size_t kPoolBytes = 8u << 20;  // the slots' memory, as the rig's queue
    static constexpr uint32_t kAhead = 8;           // as the miniport's receive_batch
    static constexpr uint32_t kAheadBytes = 2048;

    // `slot_bytes`: each slot's size (the rig's), at least one line.
    BareRing(int far_cpu, uint32_t slot_bytes)
        : slot_bytes_(std::max<uint32_t>(slot_bytes, 64) / 64 * 64),
          slots_(static_cast<uint32_t>(kPoolBytes / slot_bytes_)),
          pool_(static_cast<std::byte*>(std::aligned_alloc(4096, kPoolBytes))),
          source_(static_cast<std::byte*>(std::aligned_alloc(4096, size_t{kBatch} * slot_bytes_))),
          helper_(far_cpu) {
        // Touched now: no measurement takes the pages' first faults.
        if (pool_ != nullptr) std::memset(pool_.get(), 0, kPoolBytes);
        if (source_ != nullptr) std::memset(source_.get(), 0x5a, size_t{kBatch} * slot_bytes_);
    }
    BareRing(const BareRing&) = delete;
    BareRing& operator=(const BareRing&) = delete;

    // False if the memory could not be had or the helper not pinned.
    bool ready() { return helper_.pinned() && pool_ != nullptr && source_ != nullptr; }

    // Sends `batches` batches of `bytes`-byte packets (at most slot_bytes)
    // through the rings and returns the producer's ns a packet; nullopt when
    // the consumer saw a packet twice, out of order or with a wrong stamp, or
    // when this ring is not ready().
    std::optional<double> measure(uint32_t bytes, uint32_t batches) {
        if (!ready() || bytes == 0 || bytes > slot_bytes_ || batches == 0) return std::nullopt;
        reset();
        const uint32_t packets = batches * kBatch;
        helper_.start([this, packets, bytes] { consume(packets, bytes); });
        const auto t0 = std::chrono::steady_clock::now();
        const bool sent = produce(bytes, packets);
        const auto t1 = std::chrono::steady_clock::now();
        helper_.finish();
        if (!sent || !good_.load(std::memory_order_acquire)) return std::nullopt;
        return std::chrono::duration<double, std::nano>(t1 - t0).count() / packets;
    }

private:
    static constexpr uint32_t kMask = kRingSize - 1;
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    struct alignas(64) Index {
        std::atomic<uint32_t> value{0};
        std::atomic<uint32_t> flags{0};  // the consumer's need-wakeup word (never set here: both poll)
    };

    static void prefetch_for_write(const void* p) {
#if defined(__x86_64__)
        asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
#else
        __builtin_prefetch(p, 1, 3);
#endif
    }
    std::byte* slot(uint32_t i) const {
        return pool_.get() + size_t{i} * slot_bytes_;
    }

    // Both rings empty, every slot free, every index 0; the consumer is asleep.
    void reset() {
        for (Index* x : {&rx_prod_, &rx_cons_, &done_prod_, &done_cons_})
            x->value.store(0, std::memory_order_relaxed);
        free_.clear();
        // The stack's top is slot 0, as the miniport's after a reset.
        for (uint32_t i = slots_; i-- > 0;) free_.push_back(i);
        good_.store(true, std::memory_order_relaxed);
    }

    // The producer: the rig's send() with the miniport's write and the hub's push, and no books.
    bool produce(uint32_t bytes, uint32_t packets) {
        uint32_t prod = 0, done_cons = 0;
        // A consumer that stopped (it found a bad packet) gives nothing back:
        // after 5 s without room the run fails instead of hanging.
        std::chrono::steady_clock::time_point stalled{};
        for (uint32_t sent = 0; sent < packets;) {
            // Reap what came back: the consumer's index once, its entries copied out.
            const uint32_t done_prod = done_prod_.value.load(std::memory_order_acquire);
            for (; done_cons != done_prod; ++done_cons)
                free_.push_back(std::atomic_ref<uint32_t>(completions_[done_cons & kMask])
                                    .load(std::memory_order_relaxed));
            done_cons_.value.store(done_cons, std::memory_order_release);
            const uint32_t room = kRingSize - (prod - rx_cons_.value.load(std::memory_order_acquire));
            const uint32_t n = std::min({kBatch, packets - sent, room, static_cast<uint32_t>(free_.size())});
            if (n == 0) {
                const auto now = std::chrono::steady_clock::now();
                if (stalled == std::chrono::steady_clock::time_point{}) stalled = now;
                if (now - stalled > std::chrono::seconds(5)) return false;
                std::this_thread::yield();  // as the rig does when the guest holds a full ring
                continue;
            }
            stalled = {};
            const size_t nfree = free_.size();
            const auto next = [&](uint32_t k) { return slot(free_[nfree - 1 - k]); };
            for (uint32_t i = 0; i < std::min(kAhead, n); ++i) prefetch_for_write(next(i));
            for (uint32_t i = 0; i < n; ++i) {
                if (i + kAhead < nfree) prefetch_for_write(next(i + kAhead));
                if (i + 1 < n && bytes > 64)
                    for (uint32_t off = 64; off < std::min(bytes, kAheadBytes); off += 64)
                        prefetch_for_write(next(i + 1) + off);
                const uint32_t s = free_.back();
                free_.pop_back();
                std::byte* src = source_.get() + size_t{(sent + i) % kBatch} * slot_bytes_;
                const uint64_t stamp = sent + i;
                std::memcpy(src, &stamp, sizeof(stamp));
                std::memcpy(slot(s), src, bytes);
                uint64_t* e = &rx_[(prod & kMask) * 2];
                std::atomic_ref<uint64_t>(e[0]).store(uint64_t{s} | uint64_t{bytes} << 32,
                                                      std::memory_order_relaxed);
                std::atomic_ref<uint64_t>(e[1]).store(stamp, std::memory_order_relaxed);
                ++prod;
            }
            sent += n;
            rx_prod_.value.store(prod, std::memory_order_seq_cst);
            (void)rx_cons_.flags.load(std::memory_order_seq_cst);
        }
        return true;
    }

    // The consumer: the bench guest's rxonly loop on the guest library's
    // take() and give-back, without the library.
    void consume(uint32_t packets, uint32_t bytes) {
        uint32_t cons = 0, done_prod = 0;
        uint64_t expect = 0, fold = 0;
        bool good = true;
        while (expect < packets) {
            const uint32_t prod = rx_prod_.value.load(std::memory_order_acquire);
            const uint32_t ready = std::min(prod - cons, kBurst);
            if (ready == 0) {
                PinnedHelper::pause();
                continue;
            }
            uint32_t taken[kBurst];
            for (uint32_t i = 0; i < ready; ++i) {
                uint64_t* e = &rx_[((cons + i) & kMask) * 2];
                const uint64_t w0 = std::atomic_ref<uint64_t>(e[0]).load(std::memory_order_relaxed);
                const uint64_t w1 = std::atomic_ref<uint64_t>(e[1]).load(std::memory_order_relaxed);
                taken[i] = static_cast<uint32_t>(w0);
                good =
                    good && taken[i] < slots_ && static_cast<uint32_t>(w0 >> 32) == bytes && w1 == expect + i;
                if (!good) break;
                __builtin_prefetch(slot(taken[i]), 0, 3);
            }
            if (!good) break;
            cons += ready;
            rx_cons_.value.store(cons, std::memory_order_release);
            for (uint32_t i = 0; i < ready; ++i) {
                const std::byte* p = slot(taken[i]);
                uint64_t stamp;
                std::memcpy(&stamp, p, sizeof(stamp));
                good = good && stamp == expect + i;
                for (uint32_t off = 8; off + 8 <= std::min<uint32_t>(bytes, 64); off += 8) {
                    uint64_t w;
                    std::memcpy(&w, p + off, sizeof(w));
                    fold ^= w;
                }
            }
            for (uint32_t i = 0; i < ready; ++i)
                std::atomic_ref<uint32_t>(completions_[(done_prod + i) & kMask])
                    .store(taken[i], std::memory_order_relaxed);
            done_prod += ready;
            done_prod_.value.store(done_prod, std::memory_order_release);
            expect += ready;
            if (!good) break;
        }
        sink_ = fold;
        good_.store(good, std::memory_order_release);
        // A bad run: the producer, short of slots, gives up after 5 s without room.
    }

    const uint32_t slot_bytes_;
    const uint32_t slots_;
    std::unique_ptr<std::byte, Free> pool_;
    std::unique_ptr<std::byte, Free> source_;
    std::vector<uint32_t> free_;  // the producer's
    Index rx_prod_, rx_cons_, done_prod_, done_cons_;
    alignas(64) uint64_t rx_[kRingSize * 2] = {};
    alignas(64) uint32_t completions_[kRingSize] = {};
    std::atomic<bool> good_{true};  // the consumer's verdict on the last run
    uint64_t sink_ = 0;
    PinnedHelper helper_;  // last: its thread starts once the rest is made
};

}  // namespace bench
