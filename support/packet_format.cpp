#include "packet_format.hpp"

#include <ndisshm/afxdp.h>

namespace ndisshm::support {
namespace {

// The AF_XDP NIC's wire, as its public header states it.
static_assert(kUdpPort == NDISSHM_AFXDP_UDP_PORT);
static_assert(kUdpPayloadOffset == NDISSHM_AFXDP_UDP_PAYLOAD_OFFSET);

uint64_t splitmix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::byte pattern_byte(uint32_t variant, uint32_t length, size_t i) {
    return static_cast<std::byte>((variant * 37u + length * 11u + i * 13u + 5u) & 0xffu);
}

// Copies packet bytes [from, from + n) out of its segments (the header and
// trailer, whatever segment boundary they straddle).
void gather(Segments segments, size_t from, size_t n, std::byte* out) {
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

}  // namespace

uint64_t packet_key(uint64_t seq, uint32_t length, uint32_t stream) {
    return splitmix(seq ^ splitmix((uint64_t{length} << 32) | stream));
}

uint64_t fill_payload(std::byte* p, uint32_t length, uint32_t variant) {
    if (length < kFullBytes) return 0;
    for (size_t i = kHeaderBytes; i < length - kTrailerBytes; ++i) p[i] = pattern_byte(variant, length, i);
    return PayloadSum::of(p + kHeaderBytes, length - kFullBytes);
}

std::vector<std::byte> make_packet(uint64_t seq, size_t length, uint32_t stream) {
    std::vector<std::byte> p(std::max<size_t>(length, 8));
    const auto n = static_cast<uint32_t>(p.size());
    const uint64_t sum = fill_payload(p.data(), n, static_cast<uint32_t>(seq % kVariants));
    stamp(p.data(), n, seq, sum, stream);
    return p;
}

std::optional<uint64_t> verify(const std::byte* data, size_t length, uint32_t stream) {
    if (length < 8 || length > kMaxPacket) return std::nullopt;
    uint64_t seq;
    std::memcpy(&seq, data, 8);
    const uint64_t key = packet_key(seq, static_cast<uint32_t>(length), stream);
    if (length < kFullBytes) {
        for (size_t i = 8; i < length; ++i)
            if (data[i] != static_cast<std::byte>((key >> (8 * (i % 8))) + i)) return std::nullopt;
        return seq;
    }
    uint32_t magic, stated;
    uint64_t check, trailer;
    std::memcpy(&magic, data + 8, 4);
    std::memcpy(&stated, data + 12, 4);
    std::memcpy(&check, data + 16, 8);
    std::memcpy(&trailer, data + length - kTrailerBytes, 8);
    if (magic != kMagic || stated != length || trailer != seq) return std::nullopt;
    if ((PayloadSum::of(data + kHeaderBytes, length - kFullBytes) ^ key) != check) return std::nullopt;
    return seq;
}

std::optional<uint64_t> verify(Segments segments, uint32_t stream) {
    if (segments.size() == 1) return verify(segments[0].data(), segments[0].size(), stream);
    size_t length = 0;
    for (const auto& seg : segments) length += seg.size();
    if (length < 8 || length > kMaxPacket) return std::nullopt;
    uint64_t seq;
    gather(segments, 0, 8, reinterpret_cast<std::byte*>(&seq));
    const uint64_t key = packet_key(seq, static_cast<uint32_t>(length), stream);
    if (length < kFullBytes) {
        std::byte rest[kFullBytes];
        gather(segments, 8, length - 8, rest);
        for (size_t i = 8; i < length; ++i)
            if (rest[i - 8] != static_cast<std::byte>((key >> (8 * (i % 8))) + i)) return std::nullopt;
        return seq;
    }
    struct {
        uint32_t magic, length;
        uint64_t check;
    } h;
    static_assert(sizeof(h) == kHeaderBytes - 8);
    gather(segments, 8, sizeof(h), reinterpret_cast<std::byte*>(&h));
    uint64_t trailer;
    gather(segments, length - kTrailerBytes, 8, reinterpret_cast<std::byte*>(&trailer));
    if (h.magic != kMagic || h.length != length || trailer != seq) return std::nullopt;
    // The payload [kHeaderBytes, length - kTrailerBytes), summed where it lies.
    PayloadSum sum;
    size_t pos = 0;
    for (const auto& seg : segments) {
        const size_t from = std::max(pos, kHeaderBytes), to = std::min(pos + seg.size(), length - kTrailerBytes);
        if (from < to) sum.add(seg.data() + (from - pos), to - from);
        pos += seg.size();
    }
    if ((sum.finish() ^ key) != h.check) return std::nullopt;
    return seq;
}

Segments skip(Segments segments, size_t bytes, std::span<const std::byte>* out) {
    size_t n = 0;
    for (const auto& seg : segments) {
        const size_t k = std::min(bytes, seg.size());
        bytes -= k;
        if (k < seg.size()) out[n++] = seg.subspan(k);
    }
    return {out, n};
}

void Checker::check(uint32_t stream, Segments segments) {
    count(stream, verify(segments, stream));
}

void Checker::check(uint32_t stream, const std::byte* data, size_t length) {
    count(stream, verify(data, length, stream));
}

void Checker::count(uint32_t stream, std::optional<uint64_t> seq) {
    if (!seq) {
        ++counts_.corrupt;
        return;
    }
    if (cached_next_ == nullptr || cached_stream_ != stream) {
        auto [it, fresh] = next_.try_emplace(stream, 1);
        cached_stream_ = stream;
        cached_next_ = &it->second;
    }
    uint64_t& next = *cached_next_;
    if (*seq < next) {
        ++counts_.out_of_order;
        return;
    }
    counts_.lost += *seq - next;
    next = *seq + 1;
    ++counts_.verified;
    counts_.last_seq = *seq;
}

ParsedFrame parse_frame(const std::byte* f, size_t n, uint32_t stream) {
    auto u8 = [&](size_t i) { return std::to_integer<unsigned>(f[i]); };
    if (n < 14 + 20 || u8(12) != 0x08 || u8(13) != 0x00) return {};
    const size_t ihl = (u8(14) & 0x0f) * 4u;
    const size_t total = (u8(16) << 8) | u8(17);
    if ((u8(14) >> 4) != 4 || ihl < 20 || 14 + total > n || total < ihl) return {FrameKind::Bad, 0};
    const std::byte* l4 = f + 14 + ihl;
    const size_t l4_bytes = total - ihl;
    auto payload = [&](FrameKind kind, size_t header) -> ParsedFrame {
        const auto seq = verify(l4 + header, l4_bytes - header, stream);
        return seq ? ParsedFrame{kind, *seq} : ParsedFrame{FrameKind::Bad, 0};
    };
    if (u8(14 + 9) == 17) {  // UDP
        if (l4_bytes < 8) return {FrameKind::Bad, 0};
        const unsigned port = (std::to_integer<unsigned>(l4[2]) << 8) | std::to_integer<unsigned>(l4[3]);
        const size_t udp_len = (std::to_integer<size_t>(l4[4]) << 8) | std::to_integer<size_t>(l4[5]);
        if (port != kUdpPort) return {};
        if (udp_len != l4_bytes) return {FrameKind::Bad, 0};
        return payload(FrameKind::Udp, 8);
    }
    if (u8(14 + 9) == 1 && l4_bytes >= 8 && std::to_integer<unsigned>(l4[0]) == 8)  // ICMP echo request
        return payload(FrameKind::Icmp, 8);
    return {};
}

}  // namespace ndisshm::support
