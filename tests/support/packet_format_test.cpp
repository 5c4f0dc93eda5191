// support/packet_format: the fast path (a packet in one piece: PayloadSum::of, header and trailer read in
// place) must answer exactly as the general path (a packet across segments: gathered, summed with a
// carry) does, for intact packets and for damaged ones, wherever the packet is cut.
#include "packet_format.hpp"

#include <gtest/gtest.h>

#include <random>
#include <span>
#include <vector>

namespace ndisshm::test {
namespace {

using support::Segments;
using Piece = std::span<const std::byte>;

// The packet cut at `cuts` (ascending, each in [0, size]): the general path, empty segments and all.
std::optional<uint64_t> verify_cut(const std::vector<std::byte>& p, std::initializer_list<size_t> cuts,
                                   uint32_t stream) {
    std::vector<Piece> pieces;
    size_t from = 0;
    for (size_t c : cuts) {
        pieces.emplace_back(p.data() + from, c - from);
        from = c;
    }
    pieces.emplace_back(p.data() + from, p.size() - from);
    return support::verify(Segments(pieces), stream);
}

// Every cut for a packet up to 96 bytes; for a longer one every cut within 64 bytes of either end
// (header and trailer straddling segments) and one every 61 bytes between.
std::vector<size_t> cuts_of(size_t size) {
    std::vector<size_t> cuts;
    for (size_t c = 0; c <= size; c += size <= 96 || c < 64 || c + 64 > size ? 1 : 61) cuts.push_back(c);
    return cuts;
}

// The fast path's answer, checked against the general path's for every two-way cut, and for three-way
// cuts (all of them for short packets, some for long ones).
void expect_paths_agree(const std::vector<std::byte>& p, uint32_t stream, std::mt19937_64& rng) {
    const std::optional<uint64_t> fast = support::verify(p.data(), p.size(), stream);
    const Piece whole[] = {{p.data(), p.size()}};
    ASSERT_EQ(support::verify(Segments(whole), stream), fast) << "one segment is the fast path";
    const std::vector<size_t> cuts = cuts_of(p.size());
    for (size_t c : cuts) ASSERT_EQ(verify_cut(p, {c}, stream), fast) << "cut at " << c;
    if (p.size() <= 48) {
        for (size_t c1 : cuts)
            for (size_t c2 : cuts) {
                if (c1 > c2) continue;
                ASSERT_EQ(verify_cut(p, {c1, c2}, stream), fast) << "cuts at " << c1 << ", " << c2;
            }
        return;
    }
    std::uniform_int_distribution<size_t> at(0, p.size());
    for (int i = 0; i < 64; ++i) {
        size_t c1 = at(rng), c2 = at(rng);
        if (c1 > c2) std::swap(c1, c2);
        ASSERT_EQ(verify_cut(p, {c1, c2}, stream), fast) << "cuts at " << c1 << ", " << c2;
    }
}

TEST(PacketFormat, FastAndGeneralPathsAgreeOnRandomPacketsCutEveryWay) {
    std::mt19937_64 rng(20261205);
    std::vector<size_t> lengths;
    for (size_t n = 8; n <= 100; ++n) lengths.push_back(n);
    for (size_t n : {127, 128, 129, 1499, 1500, 1501, 4096, 9215, 9216}) lengths.push_back(n);
    std::uniform_int_distribution<size_t> any_length(101, support::kMaxPacket);
    for (int i = 0; i < 16; ++i) lengths.push_back(any_length(rng));
    for (size_t n : lengths) {
        SCOPED_TRACE(n);
        const uint64_t seq = rng() >> 1;
        const auto stream = static_cast<uint32_t>(rng());
        std::vector<std::byte> p = support::make_packet(seq, n, stream);
        ASSERT_EQ(support::verify(p.data(), p.size(), stream), seq);
        expect_paths_agree(p, stream, rng);
        // Another stream's packet: both refuse.
        expect_paths_agree(p, stream + 1, rng);
        // One byte damaged, anywhere: both refuse (an 8-byte packet is its sequence number alone: any
        // value is one, and both must read the same).
        std::vector<std::byte> bad = p;
        bad[std::uniform_int_distribution<size_t>(0, n - 1)(rng)] ^= std::byte{0x20};
        if (n > 8) {
            ASSERT_EQ(support::verify(bad.data(), bad.size(), stream), std::nullopt);
        }
        expect_paths_agree(bad, stream, rng);
        // Random bytes behind an intact header and trailer: the payload's sum alone must tell.
        if (n >= support::kFullBytes + 1) {
            std::vector<std::byte> noise = p;
            for (size_t i = support::kHeaderBytes; i < n - support::kTrailerBytes; ++i)
                noise[i] = static_cast<std::byte>(rng());
            expect_paths_agree(noise, stream, rng);
        }
    }
}

TEST(PacketFormat, PayloadSumOfOneRangeIsItsSumFedInAnyPieces) {
    std::mt19937_64 rng(7);
    for (size_t n = 0; n <= 300; ++n) {
        std::vector<std::byte> bytes(n);
        for (auto& b : bytes) b = static_cast<std::byte>(rng());
        const uint64_t whole = support::PayloadSum::of(bytes.data(), n);
        for (int round = 0; round < 8; ++round) {
            support::PayloadSum sum;
            size_t at = 0;
            while (at < n) {
                const size_t k = std::uniform_int_distribution<size_t>(0, n - at)(rng);
                sum.add(bytes.data() + at, k);
                at += k;
            }
            ASSERT_EQ(sum.finish(), whole) << n << " bytes";
        }
    }
}

TEST(PacketFormat, CheckerCountsAPacketAlikeWholeOrCut) {
    support::Checker whole, cut;
    for (uint64_t seq : {1, 2, 4, 3, 5}) {
        std::vector<std::byte> p = support::make_packet(seq, 64 + seq * 100, 9);
        if (seq == 5) p[40] ^= std::byte{1};
        whole.check(9, p.data(), p.size());
        const Piece pieces[] = {{p.data(), 30}, {p.data() + 30, p.size() - 30}};
        cut.check(9, Segments(pieces));
    }
    for (const auto* c : {&whole.counts(), &cut.counts()}) {
        EXPECT_EQ(c->verified, 3u);
        EXPECT_EQ(c->lost, 1u);
        EXPECT_EQ(c->out_of_order, 1u);
        EXPECT_EQ(c->corrupt, 1u);
        EXPECT_EQ(c->last_seq, 4u);
    }
}

}  // namespace
}  // namespace ndisshm::test
