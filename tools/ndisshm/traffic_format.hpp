// What the traffic generator writes into every packet and what a guest in
// `--verify` mode checks in place, in one header so the two cannot drift.
//
//   [0, 24)            header: magic, length, sequence number, check value
//   [24, length - 8)   payload: one of kVariants patterns per size
//   [length - 8, length) trailer: the sequence number again
//
// Each stream (one guest's queue) numbers its packets from 1. The check value
// is the payload's sum mixed with the sequence number and length, so a packet
// that lands in the wrong place, is torn (a new header over an old payload:
// the trailer or the sum differs), stale (a slot read before it was written)
// or corrupted anywhere fails. The payload patterns are built once and their
// sums precomputed, so the generator writes 32 bytes per packet besides the
// NIC's copy and the comparison between delivery paths measures the paths,
// not the generator. The guest, though, reads every byte: that is the point
// of reading in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>

namespace ndisshm::cli::traffic {

inline constexpr uint32_t kMagic = 0x5254444Eu;  // "NDTR"
inline constexpr size_t kHeaderBytes = 24;
inline constexpr size_t kTrailerBytes = 8;
inline constexpr uint32_t kMinPacket = 64;    // an Ethernet frame's minimum
inline constexpr uint32_t kMaxPacket = 9216;  // a jumbo frame
inline constexpr uint32_t kVariants = 64;     // payload patterns per size; also the largest batch

struct Header {
    uint32_t magic;
    uint32_t length;
    uint64_t seq;
    uint64_t check;
};
static_assert(sizeof(Header) == kHeaderBytes);

// A word-wise Fletcher-style sum: the order of words matters, and it runs at
// memory speed, so checking every byte does not starve the guest.
inline uint64_t payload_sum(const std::byte* p, size_t n) {
    uint64_t a = 0x9e3779b97f4a7c15ull, b = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        a += w;
        b += a;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    a += tail ^ (n - i);
    b += a;
    return a ^ ((b << 32) | (b >> 32));
}

// splitmix64 of the sequence number and length.
inline uint64_t seq_mix(uint64_t seq, uint32_t length) {
    uint64_t z = seq ^ (uint64_t{length} << 48);
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

inline std::byte pattern_byte(uint32_t variant, uint32_t length, size_t i) {
    return static_cast<std::byte>((variant * 37u + length * 11u + i * 13u + 5u) & 0xffu);
}

// Fills `p` (length bytes) with variant's payload; returns its sum.
inline uint64_t fill_payload(std::byte* p, uint32_t length, uint32_t variant) {
    for (size_t i = kHeaderBytes; i < length - kTrailerBytes; ++i) p[i] = pattern_byte(variant, length, i);
    return payload_sum(p + kHeaderBytes, length - kHeaderBytes - kTrailerBytes);
}

// Writes the header and trailer of packet `seq` over a buffer whose payload
// fill_payload made (with sum `payload`).
inline void stamp(std::byte* p, uint32_t length, uint64_t seq, uint64_t payload) {
    const Header h{kMagic, length, seq, payload ^ seq_mix(seq, length)};
    std::memcpy(p, &h, sizeof(h));
    std::memcpy(p + length - kTrailerBytes, &seq, sizeof(seq));
}

struct CheckCounts {
    uint64_t verified = 0;      // intact and in order
    uint64_t lost = 0;          // sequence numbers skipped
    uint64_t out_of_order = 0;  // older than one already seen (reordered or duplicated)
    uint64_t corrupt = 0;       // bad magic, length, trailer or check value
    uint64_t last_seq = 0;      // of the last intact packet
};

// The guest's side: every packet, in place, in arrival order.
class Checker {
public:
    void check(uint32_t queue, const std::byte* data, size_t length) {
        Header h;
        if (length < kMinPacket) return corrupt();
        std::memcpy(&h, data, sizeof(h));
        uint64_t trailer;
        std::memcpy(&trailer, data + length - kTrailerBytes, sizeof(trailer));
        if (h.magic != kMagic || h.length != length || trailer != h.seq) return corrupt();
        const uint64_t sum = payload_sum(data + kHeaderBytes, length - kHeaderBytes - kTrailerBytes);
        if ((sum ^ seq_mix(h.seq, h.length)) != h.check) return corrupt();
        uint64_t& next = next_[queue];
        if (next == 0) next = 1;
        if (h.seq < next) {
            ++counts_.out_of_order;
            return;
        }
        counts_.lost += h.seq - next;
        next = h.seq + 1;
        ++counts_.verified;
        counts_.last_seq = h.seq;
    }
    const CheckCounts& counts() const { return counts_; }

private:
    void corrupt() { ++counts_.corrupt; }
    std::map<uint32_t, uint64_t> next_;  // per queue: the sequence number expected next
    CheckCounts counts_;
};

}  // namespace ndisshm::cli::traffic
