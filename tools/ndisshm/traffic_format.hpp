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
// of reading in place. A packet that arrives in two segments (lookahead
// split) is checked across them where they lie, without joining it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>

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
// memory speed, so checking every byte does not starve the guest. Fed in
// pieces (a packet's segments), it gives what it gives over the bytes joined:
// a word cut by a segment's end is completed from the next segment, so a
// reader sums a split packet in place.
class PayloadSum {
public:
    void add(const std::byte* p, size_t n) {
        if (have_ != 0) {
            const size_t k = std::min(n, size_t{8} - have_);
            std::memcpy(carry_ + have_, p, k);
            have_ += k;
            p += k;
            n -= k;
            if (have_ < 8) return;
            word(carry_);
            have_ = 0;
        }
        size_t i = 0;
        for (; i + 8 <= n; i += 8) word(p + i);
        std::memcpy(carry_, p + i, n - i);
        have_ = n - i;
    }
    uint64_t finish() {
        uint64_t tail = 0;
        std::memcpy(&tail, carry_, have_);
        a_ += tail ^ have_;
        b_ += a_;
        return a_ ^ ((b_ << 32) | (b_ >> 32));
    }

private:
    void word(const std::byte* p) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        a_ += w;
        b_ += a_;
    }
    uint64_t a_ = 0x9e3779b97f4a7c15ull, b_ = 0;
    std::byte carry_[8] = {};
    size_t have_ = 0;
};

inline uint64_t payload_sum(const std::byte* p, size_t n) {
    PayloadSum s;
    s.add(p, n);
    return s.finish();
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

// Where a packet's bytes are: its segments in order (one, or two with
// lookahead split), read in place.
using Segments = std::span<const std::span<const std::byte>>;

// Copies packet bytes [from, from + n) out of its segments (the header and
// trailer: 32 bytes, whatever segment boundary they straddle).
inline void gather(Segments segments, size_t from, size_t n, std::byte* out) {
    size_t pos = 0;
    for (const auto& seg : segments) {
        const size_t end = pos + seg.size();
        if (n != 0 && from < end) {
            const size_t k = std::min(n, end - from);
            std::memcpy(out, seg.data() + (from - pos), k);
            out += k;
            from += k;
            n -= k;
        }
        pos = end;
    }
}

// The segments less their first `bytes` bytes (a NIC's headers before the
// stream), written to `out` (as many entries as `segments`).
inline Segments skip(Segments segments, size_t bytes, std::span<const std::byte>* out) {
    size_t n = 0;
    for (const auto& seg : segments) {
        const size_t k = std::min(bytes, seg.size());
        bytes -= k;
        if (k < seg.size()) out[n++] = seg.subspan(k);
    }
    return {out, n};
}

// The guest's side: every packet, in place, in arrival order.
class Checker {
public:
    void check(uint32_t queue, const std::byte* data, size_t length) {
        const std::span<const std::byte> one[] = {{data, length}};
        check(queue, one);
    }
    void check(uint32_t queue, Segments segments) {
        size_t length = 0;
        for (const auto& seg : segments) length += seg.size();
        if (length < kMinPacket) return corrupt();
        Header h;
        gather(segments, 0, sizeof(h), reinterpret_cast<std::byte*>(&h));
        uint64_t trailer;
        gather(segments, length - kTrailerBytes, sizeof(trailer), reinterpret_cast<std::byte*>(&trailer));
        if (h.magic != kMagic || h.length != length || trailer != h.seq) return corrupt();
        // The payload [kHeaderBytes, length - kTrailerBytes), summed where it lies.
        PayloadSum sum;
        size_t pos = 0;
        for (const auto& seg : segments) {
            const size_t from = std::max(pos, kHeaderBytes),
                         to = std::min(pos + seg.size(), length - kTrailerBytes);
            if (from < to) sum.add(seg.data() + (from - pos), to - from);
            pos += seg.size();
        }
        if ((sum.finish() ^ seq_mix(h.seq, h.length)) != h.check) return corrupt();
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
