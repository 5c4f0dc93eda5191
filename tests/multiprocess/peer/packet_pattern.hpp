// What the host's test NIC writes and the test guest checks, byte for byte:
// a packet is its sequence number (8 bytes) followed by a pattern that
// depends on the sequence and the position, so a packet written to the wrong
// place, torn, or read from a stale slot fails the check.
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

inline bool check_packet(const std::byte* data, size_t length, uint64_t* seq_out) {
    if (length < 8) return false;
    uint64_t seq;
    std::memcpy(&seq, data, 8);
    for (size_t i = 8; i < length; ++i)
        if (data[i] != pattern_byte(seq, i)) return false;
    *seq_out = seq;
    return true;
}

}  // namespace ndisshm_mp
