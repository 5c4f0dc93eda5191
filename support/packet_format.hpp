// The one packet format of the tree: what a traffic source (the CLI's
// generators, the zero-copy benchmark's NIC, the tests' hosts and senders)
// writes into each packet and what a guest checks where the packet lies,
// read in place, in one piece or across a split packet's segments.
//
// A packet of `length` bytes (8 .. kMaxPacket), numbered per stream from 1:
//
//   [0, 8)                 sequence number (both forms)
//   full form, length >= kFullBytes (32):
//   [8, 12)                magic ("NDTR")
//   [12, 16)               length
//   [16, 24)               check: the payload's sum mixed with the key
//   [24, length - 8)       payload: one of kVariants patterns per length
//   [length - 8, length)   the sequence number again (trailer)
//   short form, length < 32:
//   [8, length)            bytes of the key (an 8-byte packet is its sequence number alone)
//
// The key mixes the sequence number, the length and the stream (a source's
// own number for the flow, e.g. the guest's queue id), so a packet that lands
// in the wrong place or another stream, is torn (a new header over an old
// payload: the trailer or the sum differs), stale (a slot read before it was
// written) or corrupted anywhere fails. A full packet's payload is built once
// per (length, variant) and its sum kept (fill_payload), so a source writes
// 32 bytes per packet (stamp) and a comparison between delivery paths
// measures the paths, not the source; the guest reads every byte, at the
// speed the cache delivers it (four independent lanes, kept in registers for
// a packet in one piece: verify's fast path).
//
// Frames: the AF_XDP NIC delivers whole Ethernet frames, the stream riding in
// UDP datagrams (kUdpPort) or ICMP echo requests; parse_frame finds and checks
// it, and a guest that reads frames skips kUdpPayloadOffset bytes (skip).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace ndisshm::support {

inline constexpr uint32_t kMagic = 0x5254444Eu;  // "NDTR"
inline constexpr size_t kHeaderBytes = 24;       // sequence number, magic, length, check
inline constexpr size_t kTrailerBytes = 8;
inline constexpr size_t kFullBytes = kHeaderBytes + kTrailerBytes;  // the full form from here
inline constexpr uint32_t kMinPacket = 64;    // an Ethernet frame's minimum: the CLI's smallest
inline constexpr uint32_t kMaxPacket = 9216;  // a jumbo frame
inline constexpr uint32_t kVariants = 64;     // payload patterns per length; also a source's largest batch

// Where a packet's bytes are: its segments in order (one, or two with
// lookahead split), read in place.
using Segments = std::span<const std::span<const std::byte>>;

// A word-wise Fletcher-style sum in four lanes: the order of words matters,
// and the lanes' loads do not wait on one another, so checking every byte
// runs at memory speed. Fed in pieces (a packet's segments) it gives what it
// gives over the bytes joined: a chunk cut by a segment's end is completed
// from the next segment. of() is the same sum over one contiguous range.
class PayloadSum {
public:
    // What add(p, n) then finish() give, for bytes that lie in one piece: the
    // fast path. Its lanes are locals, so they stay in registers; add()'s are
    // members, which the std::byte loads may alias, so the compiler must
    // write them back to memory at every word.
    static uint64_t of(const std::byte* p, size_t n) {
        uint64_t a0 = kSeed[0], a1 = kSeed[1], a2 = kSeed[2], a3 = kSeed[3];
        uint64_t b0 = 0, b1 = 0, b2 = 0, b3 = 0;
        size_t i = 0;
        for (; i + kChunk <= n; i += kChunk) {
            a0 += word(p + i);
            a1 += word(p + i + 8);
            a2 += word(p + i + 16);
            a3 += word(p + i + 24);
            b0 += a0;
            b1 += a1;
            b2 += a2;
            b3 += a3;
        }
        for (; i + 8 <= n; i += 8) {  // finish()'s whole words of the last chunk
            a0 += word(p + i);
            b0 += a0;
        }
        uint64_t tail = 0;
        if (n > i) std::memcpy(&tail, p + i, n - i);  // never memcpy from a null p, even for 0 bytes (UBSan)
        a3 += tail;
        b3 += a3;
        return n ^ a0 ^ rotl(b0, 8) ^ rotl(a1, 16) ^ rotl(b1, 24) ^ rotl(a2, 32) ^ rotl(b2, 40) ^ rotl(a3, 48) ^
               rotl(b3, 56);
    }

    void add(const std::byte* p, size_t n) {
        total_ += n;
        if (have_ != 0) {
            const size_t k = std::min(n, kChunk - have_);
            std::memcpy(carry_ + have_, p, k);
            have_ += k;
            p += k;
            n -= k;
            if (have_ < kChunk) return;
            chunk(carry_);
            have_ = 0;
        }
        size_t i = 0;
        for (; i + kChunk <= n; i += kChunk) chunk(p + i);
        std::memcpy(carry_, p + i, n - i);
        have_ = n - i;
    }
    uint64_t finish() {
        size_t i = 0;
        for (; i + 8 <= have_; i += 8) lane(0, word(carry_ + i));
        uint64_t tail = 0;
        std::memcpy(&tail, carry_ + i, have_ - i);
        lane(3, tail);
        uint64_t r = total_;
        for (int k = 0; k < 4; ++k) r ^= rotl(a_[k], 16 * k) ^ rotl(b_[k], 16 * k + 8);
        return r;
    }

private:
    static constexpr size_t kChunk = 32;
    static constexpr uint64_t kSeed[4] = {0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull,
                                          0x2545f4914f6cdd1dull};
    static uint64_t rotl(uint64_t v, int s) { return s == 0 ? v : (v << s) | (v >> (64 - s)); }
    static uint64_t word(const std::byte* p) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        return w;
    }
    void lane(int k, uint64_t w) {
        a_[k] += w;
        b_[k] += a_[k];
    }
    void chunk(const std::byte* p) {
        for (int k = 0; k < 4; ++k) lane(k, word(p + 8 * k));
    }
    uint64_t a_[4] = {kSeed[0], kSeed[1], kSeed[2], kSeed[3]};
    uint64_t b_[4] = {};
    std::byte carry_[kChunk] = {};
    size_t have_ = 0;
    uint64_t total_ = 0;
};

// The key of packet `seq` of `length` bytes in `stream` (splitmix64 rounds).
uint64_t packet_key(uint64_t seq, uint32_t length, uint32_t stream);

// Fills the payload of a full packet of `length` bytes with `variant`'s
// pattern (variant < kVariants) and returns its sum, for stamp. A short
// packet has no payload: it returns 0 and writes nothing.
uint64_t fill_payload(std::byte* p, uint32_t length, uint32_t variant);

// Makes `p` (length bytes, 8 .. kMaxPacket) packet `seq` of `stream`. A full
// packet's payload must hold what fill_payload wrote, `payload_sum` being its
// result; then only 32 bytes are written. A short packet is written whole.
inline void stamp(std::byte* p, uint32_t length, uint64_t seq, uint64_t payload_sum, uint32_t stream = 0) {
    const uint64_t key = packet_key(seq, length, stream);
    std::memcpy(p, &seq, 8);
    if (length >= kFullBytes) {
        const uint64_t check = payload_sum ^ key;
        std::memcpy(p + 8, &kMagic, 4);
        std::memcpy(p + 12, &length, 4);
        std::memcpy(p + 16, &check, 8);
        std::memcpy(p + length - kTrailerBytes, &seq, 8);
        return;
    }
    for (uint32_t i = 8; i < length; ++i) p[i] = static_cast<std::byte>((key >> (8 * (i % 8))) + i);
}

// One packet built whole (payload variant seq % kVariants): what tests send.
// Lengths under 8 are made 8.
std::vector<std::byte> make_packet(uint64_t seq, size_t length, uint32_t stream = 0);

// The sequence number of an intact packet of `stream`, read where it lies;
// nullopt if anything differs. A packet in one piece (one segment, or data
// and length) takes the fast path: header and trailer read in place, the
// payload summed by PayloadSum::of. One split across segments takes the
// general path: header and trailer gathered, the payload summed segment by
// segment. Both give the same answer for the same bytes.
std::optional<uint64_t> verify(Segments segments, uint32_t stream = 0);
std::optional<uint64_t> verify(const std::byte* data, size_t length, uint32_t stream = 0);

// The segments less their first `bytes` bytes (a NIC's headers before the
// stream), written to `out` (room for as many entries as `segments`).
Segments skip(Segments segments, size_t bytes, std::span<const std::byte>* out);

struct CheckCounts {
    uint64_t verified = 0;      // intact and in order
    uint64_t lost = 0;          // sequence numbers skipped
    uint64_t out_of_order = 0;  // older than one already seen (reordered or duplicated)
    uint64_t corrupt = 0;       // anything verify refuses (torn, stale, misplaced, another stream's)
    uint64_t last_seq = 0;      // of the last intact packet
};

// A guest's side: every packet, in place, in arrival order, each stream
// numbered on its own from 1.
class Checker {
public:
    void check(uint32_t stream, Segments segments);
    void check(uint32_t stream, const std::byte* data, size_t length);
    const CheckCounts& counts() const { return counts_; }
    // A new sender (a host that restarted) starts its streams afresh: each
    // stream is expected from sequence number 1 again; the counts stay.
    void restart() {
        next_.clear();
        cached_next_ = nullptr;
    }

private:
    void count(uint32_t stream, std::optional<uint64_t> seq);

    std::map<uint32_t, uint64_t> next_;  // per stream: the sequence number expected next
    uint32_t cached_stream_ = 0;
    uint64_t* cached_next_ = nullptr;  // next_[cached_stream_]: map nodes stay put
    CheckCounts counts_;
};

// ---- Frames, as the AF_XDP NIC delivers them ------------------------------
inline constexpr uint16_t kUdpPort = 50000;             // the port senders aim at
inline constexpr size_t kUdpPayloadOffset = 14 + 20 + 8;  // Ethernet, IPv4 (no options), UDP

enum class FrameKind { Udp, Icmp, Other, Bad };
struct ParsedFrame {
    FrameKind kind = FrameKind::Other;
    uint64_t seq = 0;
};

// One Ethernet frame: IPv4, then UDP to kUdpPort or an ICMP echo request,
// whose payload must be an intact packet of `stream` (else Bad). Anything
// else is Other (the tests' wire is private: there should be none).
ParsedFrame parse_frame(const std::byte* frame, size_t length, uint32_t stream = 0);

}  // namespace ndisshm::support
