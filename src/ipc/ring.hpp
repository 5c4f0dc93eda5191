// The shared rings between the host and a guest: the layout both sides agree
// on, and the index arithmetic (design/rings.md has the invariants).
//
// Per guest queue, one NDIS block (Usage = NdisSharedMemoryUsageOther, carved
// out of the guest's memory by the guest provider, as a NIC driver allocates
// its descriptor rings) holds two single-producer, single-consumer rings:
//
//   offset 0                  receive ring: host produces, guest consumes;
//                             entries are RxEntries, 16 bytes (one per
//                             segment, chained by kSegmentFollows)
//   offset done_offset        completion ring: guest produces, host consumes;
//                             entries are the 4-byte cookies of packets
//                             given back
//
// Each ring starts with two 64-byte lines, then `size` entries (a power of
// two): line 0 holds the producer's index and nothing else, line 1 the
// consumer's index and the flags word (kNeedWakeup), so each hot line is
// written by one side only. Indices are free-running 32-bit counters; an
// entry is `index & (size - 1)`; `producer - consumer` (unsigned) is what is
// ready. The producer writes entries, then stores its index with release; the
// consumer loads it with acquire, reads the entries, then stores its own index
// with release: one store and one load per batch, no system call.
//
// Neither side reads the geometry (size, offsets) back from shared memory:
// the host chose it and keeps its own copy; the guest got it in RINGS_ATTACHED
// and checked it against the block. Every access to a word the other side may
// write at the same moment goes through std::atomic_ref, so the code is
// correct under the C++ memory model (and TSan agrees in tests that run both
// sides in one process); on x86 each is a plain move.
//
// Waking up (AF_XDP's XDP_RING_NEED_WAKEUP, virtio's event suppression): a
// consumer about to sleep sets kNeedWakeup in its ring's flags and looks at
// the ring once more; only if it is still empty does it sleep on its eventfd.
// A producer publishes its index and then reads the flag, writing the
// consumer's eventfd only if it is set. Both the flag's store and the
// index's store (publish_producer) are sequentially consistent, as are the
// loads after them: in the single total order one side sees the other's
// write, so no wake-up is lost (a standalone fence would do on x86, but
// TSan cannot check fences; a seq_cst store is an xchg, the same cost as
// mfence, once per batch). Under load the flag stays clear and no eventfd is
// touched.
//
// The producer that kicks takes the flag (take_wakeup: an exchange to 0), so
// a consumer that has not woken yet is kicked once, not once per batch: a
// stopped or slow guest filling its ring costs one eventfd write, not one a
// batch. The consumer sets the flag again each time it is about to sleep (and
// looks once more), so no wake-up is lost: the flag it set is either seen and
// taken by a producer that then kicks, or not yet set when the producer
// looked, and then the consumer's second look sees the entries.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ipc/protocol.hpp"

namespace ndisshm::ipc {

inline constexpr uint32_t kRingLine = 64;
inline constexpr uint32_t kRingHeaderBytes = 2 * kRingLine;
inline constexpr uint32_t kNeedWakeup = 0x1;
// Sizes a host may choose and a guest accepts: powers of two in this range.
inline constexpr uint32_t kMinRingSize = 8;
inline constexpr uint32_t kMaxRingSize = 1u << 16;

// Offsets within a ring's header.
inline constexpr uint32_t kProducerOffset = 0;
inline constexpr uint32_t kConsumerOffset = kRingLine;
inline constexpr uint32_t kFlagsOffset = kRingLine + 4;

// A completion: the cookie of a packet the guest is done with (every segment
// of a chain carries the same cookie; one completion gives back the chain).
struct Completion {
    uint32_t cookie;
};
static_assert(sizeof(Completion) == 4);

// Where the two rings lie in the ring block: what RINGS_ATTACHED carries.
struct RingGeometry {
    uint32_t size = 0;         // entries of each ring, a power of two
    uint32_t done_offset = 0;  // the completion ring's start in the block
    uint32_t bytes = 0;        // the whole block's length the rings need

    static constexpr RingGeometry for_size(uint32_t size) {
        RingGeometry g;
        g.size = size;
        const uint32_t rx_bytes = kRingHeaderBytes + size * static_cast<uint32_t>(sizeof(RxEntry));
        g.done_offset = (rx_bytes + kRingLine - 1) / kRingLine * kRingLine;
        g.bytes = g.done_offset + kRingHeaderBytes + size * static_cast<uint32_t>(sizeof(Completion));
        return g;
    }
    static constexpr bool valid_size(uint32_t size) {
        return size >= kMinRingSize && size <= kMaxRingSize && std::has_single_bit(size);
    }
};
static_assert(RingGeometry::for_size(512).bytes == 128 + 512 * 16 + 128 + 512 * 4);

// One ring's words, over memory either side maps. The view owns nothing and
// checks nothing: the host's and the guest's wrappers decide what to trust.
template <class Entry>
class RingView {
public:
    RingView() = default;
    RingView(std::byte* base, uint32_t size) : base_(base), mask_(size - 1) {}

    uint32_t size() const { return mask_ + 1; }
    bool attached() const { return base_ != nullptr; }

    // Loads are seq_cst (a plain load on x86, acquire included); stores are
    // release, but for the two of the wake-up protocol: publish_producer and
    // store_flags.
    uint32_t load_producer() const { return word(kProducerOffset).load(std::memory_order_seq_cst); }
    uint32_t load_consumer() const { return word(kConsumerOffset).load(std::memory_order_seq_cst); }
    void store_producer(uint32_t v) const { word(kProducerOffset).store(v, std::memory_order_release); }
    void publish_producer(uint32_t v) const { word(kProducerOffset).store(v, std::memory_order_seq_cst); }
    void store_consumer(uint32_t v) const { word(kConsumerOffset).store(v, std::memory_order_release); }
    uint32_t load_flags() const { return word(kFlagsOffset).load(std::memory_order_seq_cst); }
    void store_flags(uint32_t v) const { word(kFlagsOffset).store(v, std::memory_order_seq_cst); }
    // The producer's side of waking: true if the consumer asked to be woken
    // (kNeedWakeup), and then the flag is clear again, so the caller writes
    // the eventfd exactly once. A plain load first: under load the flag is
    // clear and the consumer's line is not taken from it.
    bool take_wakeup() const {
        if ((load_flags() & kNeedWakeup) == 0) return false;
        return (word(kFlagsOffset).exchange(0, std::memory_order_seq_cst) & kNeedWakeup) != 0;
    }

    // The entry's words (64-bit, or 32 for a 4-byte entry), one by one,
    // relaxed: the peer may be writing them (a hostile one, or a torn read of
    // a slot it reuses); the caller checks the copy.
    Entry load(uint32_t index) const {
        Entry e;
        load_into(index, e);
        return e;
    }
    // As load, into `out` where the caller keeps it. Why not `out = load(i)`:
    // the compiler copies the returned entry in 16-byte pieces, each a load
    // of what two 8-byte stores just wrote, which store forwarding cannot
    // serve, so every entry's copy waited for the stores before it to leave
    // the store buffer (the guest's take() spent a third of its time there).
    void load_into(uint32_t index, Entry& out) const {
        auto* dst = reinterpret_cast<Word*>(&out);
        auto* src = slot(index);
        for (size_t i = 0; i < kWords; ++i) dst[i] = std::atomic_ref<Word>(src[i]).load(std::memory_order_relaxed);
    }
    void store(uint32_t index, const Entry& e) const {
        auto* src = reinterpret_cast<const Word*>(&e);
        auto* dst = slot(index);
        for (size_t i = 0; i < kWords; ++i) std::atomic_ref<Word>(dst[i]).store(src[i], std::memory_order_relaxed);
    }

    // As store, from the entry's 64-bit words as the caller computed them:
    // nothing is stored in pieces and read back whole on its way to the ring
    // (a load that store forwarding cannot serve waits for every older store,
    // the packets' writes into the peer's memory included).
    void store_words(uint32_t index, const std::array<uint64_t, sizeof(Entry) / 8>& words) const
        requires(sizeof(Entry) % 8 == 0)
    {
        auto* dst = reinterpret_cast<uint64_t*>(slot(index));
        for (size_t i = 0; i < words.size(); ++i)
            std::atomic_ref<uint64_t>(dst[i]).store(words[i], std::memory_order_relaxed);
    }

    // The address of entry `index`, for a prefetch of what is about to be
    // written there (base/prefetch.hpp); never read or written through.
    const void* entry_address(uint32_t index) const { return slot(index); }

private:
    using Word = std::conditional_t<sizeof(Entry) % 8 == 0, uint64_t, uint32_t>;
    static constexpr size_t kWords = sizeof(Entry) / sizeof(Word);
    static_assert(sizeof(Entry) % sizeof(Word) == 0 && alignof(Entry) <= sizeof(Word));
    std::atomic_ref<uint32_t> word(uint32_t offset) const {
        return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base_ + offset));
    }
    Word* slot(uint32_t index) const {
        return reinterpret_cast<Word*>(base_ + kRingHeaderBytes + size_t{index & mask_} * sizeof(Entry));
    }

    std::byte* base_ = nullptr;
    uint32_t mask_ = 0;
};

using ReceiveRing = RingView<RxEntry>;

// A receive ring entry's words, as ReceiveRing::store_words takes them.
inline std::array<uint64_t, 2> entry_words(uint16_t block, uint32_t offset, uint32_t length, uint32_t cookie,
                                           uint16_t flags) {
    static_assert(std::endian::native == std::endian::little);
    static_assert(offsetof(RxEntry, offset) == 0 && offsetof(RxEntry, length) == 4);
    return {offset | uint64_t{length} << 32, cookie | uint64_t{block} << 32 | uint64_t{flags} << 48};
}
using CompletionRing = RingView<Completion>;


}  // namespace ndisshm::ipc
