// What the host's test NIC writes and the test guest checks, byte for byte:
// a packet is its sequence number (8 bytes) followed by a pattern that
// depends on the sequence and the position, so a packet written to the wrong
// place, torn, or read from a stale slot fails the check, in one piece or
// across a split packet's segments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ndisshm_mp {

inline std::byte pattern_byte(uint64_t seq, size_t i) { return static_cast<std::byte>((seq * 131 + i * 7 + 1) & 0xff); }

inline std::vector<std::byte> make_packet(uint64_t seq, size_t length) {
    std::vector<std::byte> p(length < 8 ? 8 : length);
    std::memcpy(p.data(), &seq, 8);
    for (size_t i = 8; i < p.size(); ++i) p[i] = pattern_byte(seq, i);
    return p;
}

// Where a packet's bytes are: one piece, or several (lookahead split), read
// in place in order.
struct Piece {
    const std::byte* data;
    size_t length;
};

inline bool check_pieces(const Piece* pieces, size_t count, uint64_t* seq_out) {
    size_t total = 0;
    for (size_t k = 0; k < count; ++k) total += pieces[k].length;
    if (total < 8) return false;
    // The sequence number may straddle pieces (a lookahead under 8 bytes).
    std::byte first[8];
    for (size_t k = 0, got = 0; got < 8; ++k)
        for (size_t j = 0; j < pieces[k].length && got < 8; ++j) first[got++] = pieces[k].data[j];
    uint64_t seq;
    std::memcpy(&seq, first, 8);
    size_t at = 0;
    for (size_t k = 0; k < count; ++k)
        for (size_t j = 0; j < pieces[k].length; ++j, ++at)
            if (at >= 8 && pieces[k].data[j] != pattern_byte(seq, at)) return false;
    *seq_out = seq;
    return true;
}

inline bool check_packet(const std::byte* data, size_t length, uint64_t* seq_out) {
    const Piece one{data, length};
    return check_pieces(&one, 1, seq_out);
}

}  // namespace ndisshm_mp
