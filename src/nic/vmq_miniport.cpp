#include "nic/vmq_miniport.hpp"

#include <ndisshm/host.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/prefetch.hpp"

namespace ndisshm::nic {
namespace {
constexpr uint32_t kCacheLine = 64;
// How many packets ahead receive_batch asks for the slot it will write: far
// enough for a line from another core to arrive, near enough that the slots
// asked for are the ones used (the free list's top).
constexpr size_t kAhead = 8;
// How much of the next packet's slot it asks for past the first line.
constexpr size_t kAheadBytes = 2048;

// A cookie: the slot in the low 16 bits, its generation in the high 16
// (the header says why 32 bits); written and read only through these.
constexpr uint32_t cookie_of(uint16_t generation, uint32_t slot) { return uint32_t{generation} << 16 | slot; }
constexpr uint32_t slot_of(uint32_t cookie) { return cookie & 0xffffu; }
constexpr uint32_t generation_of(uint32_t cookie) { return cookie >> 16; }
}  // namespace

// Defined here: callers hold it only as a QueueRef.
struct VmqMiniport::Queue {
    std::mutex mu;
    bool running = true;
    uint32_t lookahead_size = 0;  // 0: no split
    std::vector<RxBlock> blocks;
    std::vector<Slot> slots;
    std::vector<uint32_t> free;  // slot indexes, a stack: the last returned is the warmest in cache
    VmqQueueStats stats;
};

uint32_t VmqMiniport::segments_of(const Queue& q, size_t length) {
    return q.lookahead_size != 0 && length > q.lookahead_size ? 2u : 1u;
}

VmqMiniport::VmqMiniport(NDIS_HANDLE adapter, const VmqMiniportConfig& config) : adapter_(adapter), config_(config) {
    if (config_.slot_bytes == 0 || config_.slot_bytes > config_.block_bytes) config_.slot_bytes = config_.block_bytes;
}

VmqMiniport::~VmqMiniport() {
    std::vector<NDIS_RECEIVE_QUEUE_ID> ids;
    {
        std::lock_guard lock(mu_);
        for (auto& [id, q] : queues_) ids.push_back(id);
    }
    for (auto id : ids) stop_queue(id);
}

uint32_t VmqMiniport::slots_per_queue() const {
    return config_.blocks_per_queue * (config_.block_bytes / config_.slot_bytes);
}

// A cache line per lookahead slot, so the NIC's writes of two packets never
// share one; never more than a block (lookahead_size <= slot_bytes <= block).
uint32_t VmqMiniport::lookahead_slot_bytes(uint32_t lookahead_size) const {
    const uint32_t rounded = (lookahead_size + kCacheLine - 1) / kCacheLine * kCacheLine;
    return std::min(std::max(rounded, lookahead_size), config_.block_bytes);
}

uint32_t VmqMiniport::lookahead_block_count(uint32_t lookahead_size) const {
    const uint32_t per_block = config_.block_bytes / lookahead_slot_bytes(lookahead_size);
    return (slots_per_queue() + per_block - 1) / per_block;
}

uint64_t VmqMiniport::queue_bytes(uint32_t lookahead_size) const {
    uint64_t blocks = config_.blocks_per_queue;
    if (lookahead_size != 0) blocks += lookahead_block_count(std::min(lookahead_size, config_.slot_bytes));
    return blocks * config_.block_bytes;
}

NDIS_STATUS allocate_queue_block(NDIS_HANDLE adapter, NDIS_RECEIVE_QUEUE_ID queue, NDIS_SHARED_MEMORY_USAGE usage,
                                 ULONG length, NDIS_HANDLE* handle, void** address) {
    // As a driver sizes it: one SG element per page at most.
    const ULONG max_elements = BYTES_TO_PAGES(length);
    std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(max_elements));
    NDIS_SHARED_MEMORY_PARAMETERS p;
    NdisZeroMemory(&p, sizeof(p));
    p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
    p.QueueId = queue;
    p.PreferredNode = MM_ANY_NODE_OK;
    p.Usage = usage;
    p.Length = length;
    auto* list = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
    list->NumberOfElements = max_elements;
    p.SGListBufferLength = static_cast<ULONG>(sg.size());
    p.SGListBuffer = list;
    *handle = nullptr;
    const NDIS_STATUS s = NdisAllocateSharedMemory(adapter, &p, handle);
    if (s == NDIS_STATUS_SUCCESS) *address = p.VirtualAddress;
    return s;
}

NDIS_STATUS VmqMiniport::allocate_blocks(NDIS_RECEIVE_QUEUE_ID queue, Queue& q, uint32_t count,
                                         NDIS_SHARED_MEMORY_USAGE usage, std::string* why) {
    for (uint32_t i = 0; i < count; ++i) {
        NDIS_HANDLE handle = nullptr;
        void* address = nullptr;
        if (const NDIS_STATUS s = allocate_queue_block(adapter_, queue, usage, config_.block_bytes, &handle, &address);
            s != NDIS_STATUS_SUCCESS) {
            static constexpr const char* kNames[] = {
                "", "", "", "", "receive", "lookahead", "post-lookahead"};
            if (why != nullptr)
                *why = std::string(kNames[usage <= NdisSharedMemoryUsageReceivePostLookahead ? usage : 0]) +
                       " block " + std::to_string(i + 1) + " of " + std::to_string(count) + " for queue " +
                       std::to_string(queue);
            return s;
        }
        q.blocks.push_back({reinterpret_cast<uintptr_t>(handle), static_cast<std::byte*>(address), config_.block_bytes,
                            static_cast<uint32_t>(usage)});
    }
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS VmqMiniport::start_queue(NDIS_RECEIVE_QUEUE_ID queue, std::string* why) {
    auto q = std::make_shared<Queue>();
    // The protocol's request, as the queue was allocated with it.
    ndisshm_queue_params params{};
    int complete = 0;
    if (ndisshm_queue_get_params(adapter_, queue, &params, &complete) == NDIS_STATUS_SUCCESS &&
        (params.flags & NDISSHM_QUEUE_LOOKAHEAD_SPLIT) != 0) {
        if (params.lookahead_size == 0 || params.lookahead_size > config_.slot_bytes) {
            if (why != nullptr)
                *why = "queue " + std::to_string(queue) + " asks for lookahead split at " +
                       std::to_string(params.lookahead_size) + " bytes (must be 1.." +
                       std::to_string(config_.slot_bytes) + ", a slot)";
            return NDIS_STATUS_INVALID_PARAMETER;
        }
        q->lookahead_size = params.lookahead_size;
    }
    if (slots_per_queue() > kMaxSlots) {
        if (why != nullptr)
            *why = "a queue of " + std::to_string(config_.blocks_per_queue) + " blocks of " +
                   std::to_string(config_.block_bytes) + " bytes has " + std::to_string(slots_per_queue()) +
                   " slots of " + std::to_string(config_.slot_bytes) + " bytes; at most " +
                   std::to_string(kMaxSlots) + " fit a cookie: use fewer blocks or larger slots";
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    const uint32_t per_block = config_.block_bytes / config_.slot_bytes;
    NDIS_STATUS s = NDIS_STATUS_SUCCESS;
    if (q->lookahead_size == 0) {
        s = allocate_blocks(queue, *q, config_.blocks_per_queue, NdisSharedMemoryUsageReceive, why);
        if (s == NDIS_STATUS_SUCCESS)
            for (uint32_t b = 0; b < q->blocks.size(); ++b)
                for (uint32_t k = 0; k < per_block; ++k)
                    q->slots.push_back({b, k * config_.slot_bytes, 0, 0});
    } else {
        const uint32_t la_slot = lookahead_slot_bytes(q->lookahead_size);
        const uint32_t la_per_block = config_.block_bytes / la_slot;
        const uint32_t la_blocks = lookahead_block_count(q->lookahead_size);
        s = allocate_blocks(queue, *q, la_blocks, NdisSharedMemoryUsageReceiveLookahead, why);
        if (s == NDIS_STATUS_SUCCESS)
            s = allocate_blocks(queue, *q, config_.blocks_per_queue,
                                NdisSharedMemoryUsageReceivePostLookahead, why);
        if (s == NDIS_STATUS_SUCCESS) {
            q->stats.lookahead_size = q->lookahead_size;
            q->stats.lookahead_blocks = la_blocks;
            q->stats.post_lookahead_blocks = config_.blocks_per_queue;
            for (uint32_t i = 0; i < slots_per_queue(); ++i)
                q->slots.push_back({i / la_per_block, i % la_per_block * la_slot, la_blocks + i / per_block,
                                    i % per_block * config_.slot_bytes});
        }
    }
    if (s != NDIS_STATUS_SUCCESS) {
        free_blocks(q->blocks);
        return s;
    }
    for (uint32_t i = static_cast<uint32_t>(q->slots.size()); i-- > 0;) q->free.push_back(i);
    q->stats.slots = q->slots.size();
    std::lock_guard lock(mu_);
    auto [it, inserted] = queues_.emplace(queue, q);
    if (!inserted) {
        if (why != nullptr) *why = "queue " + std::to_string(queue) + " already started";
        free_blocks(q->blocks);
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    return NDIS_STATUS_SUCCESS;
}

void VmqMiniport::free_blocks(std::vector<RxBlock>& blocks) {
    for (const RxBlock& b : blocks) NdisFreeSharedMemory(adapter_, reinterpret_cast<NDIS_HANDLE>(b.handle));
    blocks.clear();
}

void VmqMiniport::stop_queue(NDIS_RECEIVE_QUEUE_ID queue) {
    std::shared_ptr<Queue> q;
    {
        std::lock_guard lock(mu_);
        auto it = queues_.find(queue);
        if (it == queues_.end()) return;
        q = std::move(it->second);
        queues_.erase(it);
    }
    std::vector<RxBlock> blocks;
    {
        // Waits for a receive writing into these blocks right now.
        std::lock_guard lock(q->mu);
        q->running = false;
        blocks.swap(q->blocks);
    }
    free_blocks(blocks);
}

std::shared_ptr<VmqMiniport::Queue> VmqMiniport::find(NDIS_RECEIVE_QUEUE_ID queue) const {
    std::lock_guard lock(mu_);
    auto it = queues_.find(queue);
    return it == queues_.end() ? nullptr : it->second;
}

std::optional<RxDescriptor> VmqMiniport::receive(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::byte> packet) {
    auto q = find(queue);
    if (q == nullptr) return std::nullopt;
    std::lock_guard lock(q->mu);
    RxDescriptor d;
    if (!receive_locked(*q, packet, d)) return std::nullopt;
    ++q->stats.received;
    ++q->stats.outstanding;
    return d;
}

size_t VmqMiniport::receive_batch(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::span<const std::byte>> packets,
                                  size_t max_segments, std::vector<RxDescriptor>& out) {
    const size_t first = out.size();
    out.resize(first + packets.size());
    const size_t received = receive_batch(queue, packets, max_segments, out.data() + first);
    out.resize(first + received);
    return received;
}

VmqMiniport::QueueRef VmqMiniport::queue_ref(NDIS_RECEIVE_QUEUE_ID queue) const { return find(queue); }

size_t VmqMiniport::receive_batch(NDIS_RECEIVE_QUEUE_ID queue, std::span<const std::span<const std::byte>> packets,
                                  size_t max_segments, RxDescriptor* out) {
    return receive_batch(find(queue), packets, max_segments, out);
}

size_t VmqMiniport::receive_batch(const QueueRef& q, std::span<const std::span<const std::byte>> packets,
                                  size_t max_segments, RxDescriptor* out) {
    if (q == nullptr) return 0;
    // Each descriptor is written once, in place, and never read back here.
    // (A copy of one returned by value would read, 16 bytes at a time, what
    // was just stored 4 and 8 bytes at a time: no store forwarding, so the
    // NIC would wait for its writes into the guest's memory, packet by
    // packet.)
    std::lock_guard lock(q->mu);
    // Stopped (through a QueueRef): its blocks are gone, so not even a prefetch.
    if (!q->running) return 0;
    size_t received = 0, segments = 0;
    const size_t nfree = q->free.size();
    // Where the packet `n` on from this batch's first will be written: the
    // slot n below the free list's top (receive_locked pops from there).
    const auto slot_start = [&](size_t n) -> const std::byte* {
        const Slot& s = q->slots[q->free[nfree - 1 - n]];
        return q->blocks[s.block].address + s.offset;
    };
    // The batch's first kAhead slots: the loop below asks for each slot kAhead
    // packets before it is written, which leaves these out, and they are the
    // ones given back since the last batch, whose first lines the guest has
    // just read (the free list is a stack).
    for (size_t i = 0; i < std::min({kAhead, packets.size(), nfree}); ++i)
        base::prefetch_for_write(slot_start(i));
    for (const auto& p : packets) {
        // The slot kAhead packets on: its first line is often the guest's
        // last read, so ask for it now.
        if (received + kAhead < nfree) base::prefetch_for_write(slot_start(received + kAhead));
        if (&p + 1 != packets.data() + packets.size() && (&p)[1].size() > kCacheLine &&
            q->lookahead_size == 0 && received + 1 < nfree) {
            // The next packet's lines past its first (which the prefetch
            // above asked for), up to kAheadBytes: each store of a large
            // packet's write would otherwise wait for its line in turn.
            const std::byte* at = slot_start(received + 1);
            const size_t len = std::min<size_t>({(&p)[1].size(), config_.slot_bytes, kAheadBytes});
            for (size_t off = kCacheLine; off < len; off += kCacheLine) base::prefetch_for_write(at + off);
        }
        segments += segments_of(*q, p.size());
        if (segments > max_segments) break;  // checked first: a refused packet costs nothing
        if (!receive_locked(*q, p, out[received])) break;
        ++received;
    }
    // Counted once a batch: on the data path every store waits in line
    // behind the packets' writes into the guest's memory.
    q->stats.received += received;
    q->stats.outstanding += received;
    return received;
}

bool VmqMiniport::receive_locked(Queue& q, std::span<const std::byte> packet, RxDescriptor& d) {
    if (!q.running) return false;
    if (packet.size() > config_.slot_bytes || packet.empty()) {
        ++q.stats.too_large;
        return false;
    }
    if (q.free.empty()) {
        ++q.stats.ring_full;
        return false;
    }
    const uint32_t index = q.free.back();
    q.free.pop_back();
    Slot& s = q.slots[index];
    const RxBlock& b = q.blocks[s.block];
    const auto length = static_cast<uint32_t>(packet.size());
    // Without split the whole packet is "the lookahead": one segment.
    const uint32_t first = q.lookahead_size == 0 ? length : std::min(length, q.lookahead_size);
    const uint32_t rest = length - first;
    std::memcpy(b.address + s.offset, packet.data(), first);
    s.length = first;
    s.post_length = rest;
    s.held = true;
    d.handle = b.handle;
    d.offset = s.offset;
    d.length = first;
    d.block = s.block;
    d.cookie = cookie_of(s.generation, index);
    d.segments = 1;  // `next` is read only when there are two: not written otherwise
    if (rest != 0) {
        const RxBlock& post = q.blocks[s.post_block];
        std::memcpy(post.address + s.post_offset, packet.data() + first, rest);
        d.segments = 2;
        d.next = {post.handle, s.post_offset, rest, s.post_block};
        ++q.stats.split;
    }
    return true;
}

bool VmqMiniport::give_back(NDIS_RECEIVE_QUEUE_ID queue, const RxDescriptor& d) {
    auto q = find(queue);
    if (q == nullptr) return false;
    std::lock_guard lock(q->mu);
    return give_back_locked(*q, d);
}

// Each of `items` in turn, as `one(Queue&, const T&) -> bool` takes it back,
// under one lock; stops at the first refused.
template <class T, class F>
size_t VmqMiniport::give_back_each(const QueueRef& q, std::span<const T> items, F&& one) {
    if (items.empty() || q == nullptr) return 0;
    std::lock_guard lock(q->mu);
    size_t back = 0;
    while (back < items.size() && one(*q, items[back])) ++back;
    return back;
}

size_t VmqMiniport::give_back_batch(NDIS_RECEIVE_QUEUE_ID queue, std::span<const RxDescriptor> ds) {
    return give_back_each(find(queue), ds, [this](Queue& q, const RxDescriptor& d) { return give_back_locked(q, d); });
}

VmqMiniport::Slot* VmqMiniport::held_slot(Queue& q, uint32_t cookie) {
    const uint32_t index = slot_of(cookie);
    if (!q.running || index >= q.slots.size()) return nullptr;
    Slot& s = q.slots[index];
    return s.held && s.generation == generation_of(cookie) ? &s : nullptr;
}

bool VmqMiniport::give_back_locked(Queue& q, const RxDescriptor& d) {
    Slot* slot = held_slot(q, d.cookie);
    if (slot == nullptr) return false;
    const Slot& s = *slot;
    if (q.blocks[s.block].handle != d.handle || s.offset != d.offset || s.length != d.length) return false;
    // The second segment must be exactly the one the packet had, or absent
    // when it had none: a consumer cannot return half a packet.
    if (d.segments != (s.post_length != 0 ? 2u : 1u)) return false;
    if (d.segments == 2 && (q.blocks[s.post_block].handle != d.next.handle ||
                            s.post_offset != d.next.offset || s.post_length != d.next.length))
        return false;
    release_locked(q, *slot, slot_of(d.cookie));
    return true;
}

size_t VmqMiniport::give_back_cookies(NDIS_RECEIVE_QUEUE_ID queue, std::span<const uint32_t> cookies) {
    return give_back_cookies(find(queue), cookies);
}

size_t VmqMiniport::give_back_cookies(const QueueRef& queue, std::span<const uint32_t> cookies) {
    return give_back_each(queue, cookies, [](Queue& q, uint32_t cookie) {
        Slot* s = held_slot(q, cookie);
        if (s != nullptr) release_locked(q, *s, slot_of(cookie));
        return s != nullptr;
    });
}

std::string VmqMiniport::why_refused(NDIS_RECEIVE_QUEUE_ID queue, uint32_t cookie) const {
    auto q = find(queue);
    if (q == nullptr) return "names a queue (" + std::to_string(queue) + ") that is not running";
    std::lock_guard lock(q->mu);
    const uint32_t index = slot_of(cookie);
    if (!q->running) return "names a queue (" + std::to_string(queue) + ") that is not running";
    if (index >= q->slots.size())
        return "names no slot (the queue has " + std::to_string(q->slots.size()) + ")";
    const Slot& s = q->slots[index];
    if (!s.held) return "names a packet the guest does not hold (given back twice, or never given)";
    if (s.generation != generation_of(cookie))
        return "is not of its slot's generation now (" + std::to_string(s.generation) +
               "): a replay of an earlier packet in that slot";
    return "is taken back now (it was not when refused)";
}

void VmqMiniport::release_locked(Queue& q, Slot& s, uint32_t index) {
    s.held = false;
    ++s.generation;  // the cookie receive gave is void from here
    q.free.push_back(index);
    ++q.stats.returned;
    --q.stats.outstanding;
}

std::vector<RxBlock> VmqMiniport::blocks(NDIS_RECEIVE_QUEUE_ID queue) const {
    auto q = find(queue);
    if (q == nullptr) return {};
    std::lock_guard lock(q->mu);
    return q->blocks;
}

VmqQueueStats VmqMiniport::stats(NDIS_RECEIVE_QUEUE_ID queue) const {
    auto q = find(queue);
    if (q == nullptr) return {};
    std::lock_guard lock(q->mu);
    return q->stats;
}

}  // namespace ndisshm::nic
