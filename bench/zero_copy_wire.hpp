// What zero_copy_bench.cpp (the host and its emulated NIC) and
// zero_copy_guest.cpp (the guest process) agree on: the packet format the
// guest checks in place, and the counters page the guest publishes.
//
//   [0, 24)        header: magic, length, sequence number, check value
//   [24, length)   payload: fixed random bytes per source buffer
//
// check = the payload's sum mixed with the sequence number, so a packet that
// is torn (a new header over an old payload), stale (a slot read before the
// NIC wrote it), misplaced or corrupted fails. The guest sums every payload
// byte with four independent accumulators: it reads the whole packet, as a
// consumer must, at about the speed the cache delivers it, so the guest's
// check is not what limits either path (a byte-by-byte check would be).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace zero_copy {

inline constexpr uint32_t kMagic = 0x4B504357u;  // "WCPK"
inline constexpr size_t kHeaderBytes = 24;

struct Header {
    uint32_t magic;
    uint32_t length;
    uint64_t seq;
    uint64_t check;
};
static_assert(sizeof(Header) == kHeaderBytes);

inline uint64_t rotl(uint64_t v, int s) {
    return (v << s) | (v >> (64 - s));
}

// Sum of every byte of [p, p + n): four 64-bit lanes, so the loads do not
// wait on one another; the lanes are rotated apart so that swapping two words
// of different lanes changes the result.
inline uint64_t payload_sum(const std::byte* p, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        std::memcpy(w, p + i, sizeof(w));
        a += w[0];
        b += w[1];
        c += w[2];
        d += w[3];
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        a += w;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    d += tail;
    return a ^ rotl(b, 16) ^ rotl(c, 32) ^ rotl(d, 48) ^ n;
}

// splitmix64 of the sequence number.
inline uint64_t seq_mix(uint64_t seq) {
    uint64_t z = seq + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The NIC's side: writes packet `seq`'s header over a buffer whose payload
// sums to `sum` (24 bytes written per packet, the same on both paths).
inline void stamp(std::byte* p, uint32_t length, uint64_t seq, uint64_t sum) {
    const Header h{kMagic, length, seq, sum ^ seq_mix(seq)};
    std::memcpy(p, &h, sizeof(h));
}

// The guest's counters, in a page the bench maps too (a memfd the guest
// inherits). The guest stores them after every batch; the bench reads them
// only outside its timed loop. std::atomic<uint64_t> is lock-free, hence
// address-free, so it works across the two mappings.
struct GuestCounters {
    std::atomic<uint64_t> packets;   // handed to the guest's packet callback
    std::atomic<uint64_t> bytes;     // their lengths
    std::atomic<uint64_t> verified;  // intact, each the next in sequence
    std::atomic<uint64_t> corrupt;   // bad magic, length or check value
    std::atomic<uint64_t> lost;      // sequence numbers skipped, or gone backwards
    std::atomic<uint64_t> batches;   // PACKETS messages
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// The guest's in-place check of one packet.
struct Checker {
    uint64_t packets = 0, bytes = 0, verified = 0, corrupt = 0, lost = 0;
    uint64_t next = 1;  // the host numbers packets from 1

    void check(const std::byte* data, size_t length) {
        ++packets;
        bytes += length;
        Header h;
        if (length < kHeaderBytes) {
            ++corrupt;
            return;
        }
        std::memcpy(&h, data, sizeof(h));
        const uint64_t sum = payload_sum(data + kHeaderBytes, length - kHeaderBytes);
        if (h.magic != kMagic || h.length != length || (sum ^ seq_mix(h.seq)) != h.check) {
            ++corrupt;
            return;
        }
        if (h.seq != next) ++lost;
        next = h.seq + 1;
        ++verified;
    }
};

}  // namespace zero_copy
