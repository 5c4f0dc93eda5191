#include "nic/vmq_miniport.hpp"

#include <cstring>
#include <vector>

namespace ndisshm::nic {

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

NDIS_STATUS VmqMiniport::start_queue(NDIS_RECEIVE_QUEUE_ID queue, std::string* why) {
    auto q = std::make_shared<Queue>();
    // As a driver sizes it: one SG element per page at most.
    const ULONG max_elements = BYTES_TO_PAGES(config_.block_bytes);
    std::vector<unsigned char> sg(NDISSHM_SG_LIST_BYTES(max_elements));
    for (uint32_t i = 0; i < config_.blocks_per_queue; ++i) {
        NDIS_SHARED_MEMORY_PARAMETERS p;
        NdisZeroMemory(&p, sizeof(p));
        p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
        p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;
        p.QueueId = queue;
        p.PreferredNode = MM_ANY_NODE_OK;
        p.Usage = NdisSharedMemoryUsageReceive;
        p.Length = config_.block_bytes;
        auto* list = reinterpret_cast<PSCATTER_GATHER_LIST>(sg.data());
        list->NumberOfElements = max_elements;
        p.SGListBufferLength = static_cast<ULONG>(sg.size());
        p.SGListBuffer = list;
        NDIS_HANDLE handle = nullptr;
        const NDIS_STATUS s = NdisAllocateSharedMemory(adapter_, &p, &handle);
        if (s != NDIS_STATUS_SUCCESS) {
            if (why != nullptr)
                *why = "receive block " + std::to_string(i + 1) + " of " + std::to_string(config_.blocks_per_queue) +
                       " for queue " + std::to_string(queue);
            free_blocks(q->blocks);
            return s;
        }
        q->blocks.push_back({reinterpret_cast<uintptr_t>(handle), static_cast<std::byte*>(p.VirtualAddress),
                             config_.block_bytes});
    }
    const uint32_t per_block = config_.block_bytes / config_.slot_bytes;
    for (uint32_t b = 0; b < q->blocks.size(); ++b)
        for (uint32_t k = 0; k < per_block; ++k) q->slots.push_back({b, k * config_.slot_bytes, 0, false, 0});
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
    if (!q->running) return std::nullopt;
    if (packet.size() > config_.slot_bytes || packet.empty()) {
        ++q->stats.too_large;
        return std::nullopt;
    }
    if (q->free.empty()) {
        ++q->stats.ring_full;
        return std::nullopt;
    }
    const uint32_t index = q->free.back();
    q->free.pop_back();
    Slot& s = q->slots[index];
    const RxBlock& b = q->blocks[s.block];
    std::memcpy(b.address + s.offset, packet.data(), packet.size());
    s.held = true;
    s.length = static_cast<uint32_t>(packet.size());
    ++q->stats.received;
    ++q->stats.outstanding;
    return RxDescriptor{b.handle, s.offset, s.length, (uint64_t{s.generation} << 32) | index};
}

bool VmqMiniport::give_back(NDIS_RECEIVE_QUEUE_ID queue, const RxDescriptor& d) {
    auto q = find(queue);
    if (q == nullptr) return false;
    std::lock_guard lock(q->mu);
    const uint64_t index = d.cookie & 0xffffffffu;
    if (!q->running || index >= q->slots.size()) return false;
    Slot& s = q->slots[index];
    if (!s.held || s.generation != (d.cookie >> 32) || q->blocks[s.block].handle != d.handle || s.offset != d.offset ||
        s.length != d.length)
        return false;
    s.held = false;
    ++s.generation;
    q->free.push_back(static_cast<uint32_t>(index));
    ++q->stats.returned;
    --q->stats.outstanding;
    return true;
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
