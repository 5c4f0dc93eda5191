// Fuzz target: a hostile guest against the host's side of its rings
// (hub/guest_rings.hpp), the way design/rings.md says a guest may behave:
// any value in any word of the shared block at any moment.
//
// The input is a program of steps on one GuestRings over a block of memory
// the "guest" owns; each step is one of:
//   produce   the host pushes 1..8 packets (1..4 segments each) if room()
//             says they fit, and publishes;
//   consume   the guest takes receive entries honestly (advances its index);
//   complete  the guest writes a completion: an honest cookie of a packet it
//             holds, one it gave back already (a replay), one of an old
//             generation, a slot out of range, or raw bytes; then publishes
//             an honest or a wild producer index;
//   scribble  the guest writes raw bytes anywhere in the block (indices,
//             flags, entries, the host's own lines included);
//   reap      the host reaps.
// After every step, against a model of what the host handed out:
//   * room() never offers more than the ring and table hold, and refuses an
//     impossible consumer index (the session would end there);
//   * each give_back is of a packet the host handed out and did not have
//     back yet, with the host's own segments (never the guest's bytes), and
//     no packet comes back twice;
//   * outstanding() is what was handed out less what came back;
//   * a reap that refuses names a reason, and the run ends there, as the
//     session would.
// At the end: nothing is both free and held.
//
// The first byte picks who names the packets (hub/guest_rings.hpp's
// Cookies): the host's table (a queue driver's packets), or the hub's
// miniport, played here by a model of VmqMiniport's slots (index and
// generation in the cookie, taken back only while held and of that
// generation). In the second, the guest also forges cookies of slots it
// never had, of the next generation and of a slot taken back, and a
// give_back is checked against the model the same way.
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "hub/guest_rings.hpp"

namespace {
using namespace ndisshm_fuzz;
namespace ipc = ndisshm::ipc;

constexpr uint32_t kSize = 16;  // small: wrap-around and a full ring come quickly

struct Handed {
    uint64_t handle;  // what the host said, so the give_back can be compared
    uint8_t segments;
};

// VmqMiniport's slots as give_back_cookies sees them.
struct MiniportModel {
    struct Slot {
        uint16_t generation = 0;
        bool held = false;
    };
    std::vector<Slot> slots = std::vector<Slot>(2 * kSize);  // more slots than the ring: as the hub's miniport has
    uint32_t receive() {
        for (uint32_t i = 0; i < slots.size(); ++i)
            if (!slots[i].held) {
                slots[i].held = true;
                return uint32_t{slots[i].generation} << 16 | i;
            }
        return ~uint32_t{0};
    }
    bool give_back(uint32_t cookie) {
        const uint32_t i = cookie & 0xffffu;
        if (i >= slots.size() || !slots[i].held || slots[i].generation != cookie >> 16) return false;
        slots[i].held = false;
        ++slots[i].generation;
        return true;
    }
    size_t held() const {
        size_t n = 0;
        for (const Slot& s : slots) n += s.held ? 1 : 0;
        return n;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ByteReader in(data, size);
    const bool by_miniport = in.flag();
    const ipc::Cookies cookies = by_miniport ? ipc::Cookies::Miniport : ipc::Cookies::Table;
    MiniportModel miniport;
    std::set<uint32_t> miniport_out;  // cookies the "miniport" handed out and holds
    const ipc::RingGeometry g = ipc::RingGeometry::for_size(kSize);
    std::vector<uint64_t> words((g.bytes + 7) / 8);
    auto* block = reinterpret_cast<std::byte*>(words.data());
    auto rx_kick = ndisshm::os::WakeFd::create();
    auto done_kick = ndisshm::os::WakeFd::create();
    FUZZ_CHECK(rx_kick.ok() && done_kick.ok(), "eventfd");
    // The blocks the guest was told of: the miniport's queue has four
    // (miniport block numbers 0..3); a queue driver's packets each name one
    // of their own, announced as it is pushed.
    ipc::BlockIndex blocks;
    std::vector<ndisshm::nic::RxBlock> miniport_blocks;
    for (uint64_t h = 1001; h <= 1004; ++h) {
        FUZZ_CHECK(blocks.add(h).has_value(), "BlockIndex refused block %llu", static_cast<unsigned long long>(h));
        miniport_blocks.push_back({h, nullptr, 65536, 4});
    }
    ipc::GuestRings rings(block, g, std::move(*rx_kick), std::move(*done_kick), blocks, cookies);
    if (by_miniport) FUZZ_CHECK(rings.map_blocks(miniport_blocks).empty(), "map_blocks refused announced blocks");
    // The guest's view, as an honest guest would keep it (the fuzzer decides
    // how honest it is).
    ipc::ReceiveRing rx(block, kSize);
    ipc::CompletionRing done(block + g.done_offset, kSize);
    uint32_t guest_cons = 0, guest_done_prod = 0;
    std::vector<uint32_t> held_cookies;                 // taken from the ring, not completed
    std::vector<uint32_t> completed_cookies;            // for replays
    std::map<uint64_t, Handed> out;                     // handle -> what the host handed out and holds
    uint64_t next_handle = 1, handed = 0, back = 0;

    for (int step = 0; step < 400 && !in.empty(); ++step) {
        switch (in.below(5)) {
            case 0: {  // produce
                uint32_t descriptors = 0, packets = 0;
                const std::string why = rings.room(descriptors, packets);
                if (!why.empty()) return 0;  // the session ends here
                FUZZ_CHECK(descriptors <= kSize && packets <= kSize, "room %u/%u past the ring", descriptors,
                           packets);
                const uint32_t want = 1 + in.below(8);
                for (uint32_t i = 0; i < want; ++i) {
                    const uint8_t segs = static_cast<uint8_t>(1 + in.below(ipc::kMaxSegmentsPerPacket));
                    if (segs > descriptors || packets == 0) break;
                    if (by_miniport) {
                        const uint8_t n = segs > 2 ? 2 : segs;  // the miniport splits in two at most
                        const uint32_t cookie = miniport.receive();
                        FUZZ_CHECK(cookie != ~uint32_t{0}, "the model ran out of slots: the ring bounds them");
                        const auto b = static_cast<uint32_t>(next_handle++ % miniport_blocks.size());
                        ndisshm::nic::RxDescriptor d{miniport_blocks[b].handle, 0, 64, cookie, b, n, {}};
                        if (n == 2) d.next = {d.handle, 64, 64, b};
                        rings.push_rx(d);
                        miniport_out.insert(cookie);
                        ++handed;
                        descriptors -= n;
                        --packets;
                        continue;
                    }
                    ipc::Outstanding o;
                    o.segments = segs;
                    const uint64_t handle = next_handle++;
                    FUZZ_CHECK(blocks.add(handle).has_value(), "BlockIndex refused a new block");
                    for (uint8_t k = 0; k < segs; ++k)
                        o.seg[k] = {handle, k * 64u, 64, 0, k + 1u < segs ? ipc::kSegmentFollows : 0u, 0};
                    FUZZ_CHECK(rings.names_known_blocks(std::span(o.seg, segs)), "an announced block is unknown");
                    rings.push(o);
                    out[handle] = {handle, segs};
                    ++handed;
                    descriptors -= segs;
                    --packets;
                }
                rings.publish();
                break;
            }
            case 1: {  // consume honestly what is published
                const uint32_t prod = rx.load_producer();
                while (guest_cons != prod && static_cast<uint32_t>(prod - guest_cons) <= kSize) {
                    const ipc::RxEntry d = rx.load(guest_cons++);
                    if ((d.flags & ipc::kSegmentFollows) == 0) held_cookies.push_back(d.cookie);
                }
                rx.store_consumer(guest_cons);
                break;
            }
            case 2: {  // complete: honest, replayed, forged
                uint32_t cookie = 0;
                switch (in.below(4)) {
                    case 0:
                        if (held_cookies.empty()) break;
                        {
                            const size_t i = in.below(static_cast<uint32_t>(held_cookies.size()));
                            cookie = held_cookies[i];
                            held_cookies.erase(held_cookies.begin() + static_cast<long>(i));
                            completed_cookies.push_back(cookie);
                        }
                        break;
                    case 1:
                        if (!completed_cookies.empty())
                            cookie = completed_cookies[in.below(static_cast<uint32_t>(completed_cookies.size()))];
                        break;
                    case 2:
                        if (by_miniport && !completed_cookies.empty() && in.flag()) {
                            // The next generation of a slot it gave back, or the slot's own cookie again.
                            cookie = completed_cookies[in.below(static_cast<uint32_t>(completed_cookies.size()))] +
                                     (in.flag() ? 1u << 16 : 0u);
                            break;
                        }
                        cookie = uint32_t{in.byte()} << 16 | in.below(3 * kSize);
                        break;
                    default: cookie = in.take<uint32_t>(); break;
                }
                done.store(guest_done_prod++, ipc::Completion{cookie});
                if (in.flag())
                    done.store_producer(guest_done_prod);
                else
                    done.store_producer(in.take<uint32_t>());  // any index at all
                break;
            }
            case 3: {  // scribble anywhere, the host's own lines included
                const uint32_t at = in.below(static_cast<uint32_t>(words.size()) > 255 ? 256 : static_cast<uint32_t>(words.size()));
                const uint64_t v = in.take<uint64_t>();
                std::atomic_ref<uint64_t>(words[(at * 37u) % words.size()]).store(v, std::memory_order_relaxed);
                break;
            }
            default: {  // reap
                if (by_miniport) {
                    const std::string why = rings.reap_cookies(
                        [&](std::span<const uint32_t> cs) {
                            FUZZ_CHECK(cs.size() <= miniport_out.size(), "offered %zu cookies, %zu in flight",
                                       cs.size(), miniport_out.size());
                            size_t n = 0;
                            for (; n < cs.size(); ++n) {
                                if (!miniport.give_back(cs[n])) break;
                                FUZZ_CHECK(miniport_out.erase(cs[n]) == 1, "a cookie came back twice");
                                ++back;
                            }
                            return n;
                        },
                        [](uint32_t) { return std::string("refused by the model"); });
                    FUZZ_CHECK(rings.outstanding() == handed - back, "outstanding %u, handed %llu, back %llu",
                               rings.outstanding(), static_cast<unsigned long long>(handed),
                               static_cast<unsigned long long>(back));
                    if (!why.empty()) return 0;
                    break;
                }
                std::set<uint64_t> seen;
                const std::string why = rings.reap([&](const ipc::Outstanding& o) {
                    const auto it = out.find(o.seg[0].handle);
                    FUZZ_CHECK(it != out.end(), "gave back handle %llu, never handed out or back already",
                               static_cast<unsigned long long>(o.seg[0].handle));
                    FUZZ_CHECK(o.segments == it->second.segments, "segments changed");
                    for (uint8_t k = 0; k < o.segments; ++k)
                        FUZZ_CHECK(o.seg[k].handle == it->second.handle && o.seg[k].offset == k * 64u &&
                                       o.seg[k].length == 64,
                                   "the host's copy changed");
                    out.erase(it);
                    ++back;
                });
                FUZZ_CHECK(rings.outstanding() == handed - back, "outstanding %u, handed %llu, back %llu",
                           rings.outstanding(), static_cast<unsigned long long>(handed),
                           static_cast<unsigned long long>(back));
                if (!why.empty()) return 0;  // refused: the session ends here
                break;
            }
        }
        const size_t model_holds = by_miniport ? miniport_out.size() : out.size();
        FUZZ_CHECK(rings.outstanding() == model_holds, "outstanding %u, the model holds %zu", rings.outstanding(),
                   model_holds);
        FUZZ_CHECK(miniport.held() == miniport_out.size(), "the miniport's slots and the model disagree");
    }
    if (by_miniport) return 0;  // the miniport keeps the packets, not the table
    // Nothing is both free and held: what the host still holds is what the
    // model says it handed out and did not have back.
    const auto held = rings.held();
    FUZZ_CHECK(held.size() == out.size(), "held %zu, model %zu", held.size(), out.size());
    for (const auto& o : held) FUZZ_CHECK(out.count(o.seg[0].handle) == 1, "held a packet the model does not");
    return 0;
}
