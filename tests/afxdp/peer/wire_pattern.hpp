// What the afxdp suite's senders put in each UDP datagram or ICMP echo, and
// what the in-process consumer and the guest process check, byte for byte,
// where the kernel put the frame: a 16-byte header (magic, length, sequence
// number) and a pattern of the sequence number and position, so a frame
// written to the wrong place, torn, truncated or read stale fails.
//
// Frames are parsed as the kernel delivers them: Ethernet, IPv4, then UDP
// (port kPort) or ICMP echo request. Anything else is "other" (the wire is
// private, so there should be none).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace ndisshm_afxdp {

inline constexpr uint32_t kMagic = 0x50445841u;  // "AXDP"
inline constexpr uint16_t kPort = 50000;         // AfxdpHubNic::kUdpPort
inline constexpr size_t kHeader = 16;

inline std::byte pattern_byte(uint64_t seq, size_t i) {
    return static_cast<std::byte>((seq * 167 + i * 13 + 3) & 0xff);
}

inline std::vector<std::byte> make_payload(uint64_t seq, size_t length) {
    std::vector<std::byte> p(length < kHeader ? kHeader : length);
    const auto len = static_cast<uint32_t>(p.size());
    std::memcpy(p.data(), &kMagic, 4);
    std::memcpy(p.data() + 4, &len, 4);
    std::memcpy(p.data() + 8, &seq, 8);
    for (size_t i = kHeader; i < p.size(); ++i) p[i] = pattern_byte(seq, i);
    return p;
}

// The sequence number of an intact payload, or 0.
inline uint64_t check_payload(const std::byte* p, size_t n) {
    if (n < kHeader) return 0;
    uint32_t magic, len;
    uint64_t seq;
    std::memcpy(&magic, p, 4);
    std::memcpy(&len, p + 4, 4);
    std::memcpy(&seq, p + 8, 8);
    if (magic != kMagic || len != n || seq == 0) return 0;
    for (size_t i = kHeader; i < n; ++i)
        if (p[i] != pattern_byte(seq, i)) return 0;
    return seq;
}

enum class Kind { Udp, Icmp, Other, Bad };
struct Parsed {
    Kind kind = Kind::Other;
    uint64_t seq = 0;
};

// One Ethernet frame as the NIC wrote it.
inline Parsed parse_frame(const std::byte* f, size_t n) {
    auto u8 = [&](size_t i) { return std::to_integer<unsigned>(f[i]); };
    if (n < 14 + 20 || u8(12) != 0x08 || u8(13) != 0x00) return {};
    const size_t ihl = (u8(14) & 0x0f) * 4u;
    const size_t total = (u8(16) << 8) | u8(17);
    if ((u8(14) >> 4) != 4 || ihl < 20 || 14 + total > n || total < ihl) return {Kind::Bad, 0};
    const std::byte* l4 = f + 14 + ihl;
    const size_t l4_bytes = total - ihl;
    if (u8(14 + 9) == 17) {  // UDP
        if (l4_bytes < 8) return {Kind::Bad, 0};
        const unsigned port = (std::to_integer<unsigned>(l4[2]) << 8) | std::to_integer<unsigned>(l4[3]);
        const size_t udp_len = (std::to_integer<size_t>(l4[4]) << 8) | std::to_integer<size_t>(l4[5]);
        if (port != kPort) return {};
        if (udp_len != l4_bytes) return {Kind::Bad, 0};
        const uint64_t seq = check_payload(l4 + 8, udp_len - 8);
        return {seq != 0 ? Kind::Udp : Kind::Bad, seq};
    }
    if (u8(14 + 9) == 1 && l4_bytes >= 8 && std::to_integer<unsigned>(l4[0]) == 8) {  // ICMP echo request
        const uint64_t seq = check_payload(l4 + 8, l4_bytes - 8);
        return {seq != 0 ? Kind::Icmp : Kind::Bad, seq};
    }
    return {};
}

}  // namespace ndisshm_afxdp
