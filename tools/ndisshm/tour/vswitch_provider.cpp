#include "tour/vswitch_provider.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

namespace ndisshm::cli {

VswitchProvider::VswitchProvider(size_t slots, size_t slot_bytes)
    : slot_bytes_((slot_bytes + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE), slots_(slots) {
    // One region for the whole pool, as a virtual switch would carve queue
    // memory out of one virtual machine's memory.
    region_ = static_cast<unsigned char*>(std::aligned_alloc(PAGE_SIZE, slots * slot_bytes_));
    if (region_ == nullptr) throw std::bad_alloc();
    free_slots_.reserve(slots);
    // Lowest slot first, so the pool fills from the start of the region.
    for (size_t i = slots; i-- > 0;) free_slots_.push_back(i);
}

VswitchProvider::~VswitchProvider() {
    std::free(region_);
}

NDIS_STATUS VswitchProvider::allocate(NDIS_SHARED_MEMORY_PARAMETERS& p, NDIS_HANDLE& context) {
    std::lock_guard lock(mu_);
    QueueCounters& q = queues_[p.QueueId];
    if (NDISSHM_SG_LIST_CAPACITY(p.SGListBufferLength) < 1) {
        if (p.SGListBufferLength >= NDISSHM_SG_LIST_HEADER_BYTES) p.SGListBuffer->NumberOfElements = 1;
        return NDIS_STATUS_BUFFER_TOO_SHORT;
    }
    if (p.Length > slot_bytes_ || free_slots_.empty()) {
        ++q.refusals;
        return NDIS_STATUS_RESOURCES;
    }
    const size_t slot = free_slots_.back();
    free_slots_.pop_back();
    unsigned char* mem = address_of(slot);
    // No data crosses from the block's last user to its next.
    std::memset(mem, 0, slot_bytes_);
    slots_[slot] = {true, p.QueueId};
    ++q.allocations;
    ++q.live;
    // A slot is one contiguous range, so one element serves CONTIGUOUS and not.
    p.VirtualAddress = mem;
    p.SGListBuffer->NumberOfElements = 1;
    p.SGListBuffer->Elements[0].Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(mem));
    p.SGListBuffer->Elements[0].Length = p.Length;
    p.SGListBuffer->Elements[0].Reserved = 0;
    context = &slots_[slot];
    return NDIS_STATUS_SUCCESS;
}

void VswitchProvider::free(NDIS_HANDLE context) {
    std::lock_guard lock(mu_);
    auto* s = static_cast<Slot*>(context);
    // Compare as integers: a foreign pointer is not in the array, and
    // relational comparison of unrelated pointers is unspecified.
    const auto at = reinterpret_cast<uintptr_t>(s);
    const auto first = reinterpret_cast<uintptr_t>(slots_.data());
    const auto end = first + slots_.size() * sizeof(Slot);
    if (at < first || at >= end || (at - first) % sizeof(Slot) != 0 || !s->in_use) {
        ++bad_frees_;
        return;
    }
    QueueCounters& q = queues_[s->queue];
    ++q.frees;
    --q.live;
    s->in_use = false;
    free_slots_.push_back(static_cast<size_t>(s - slots_.data()));
}

std::string VswitchProvider::describe() const {
    std::lock_guard lock(mu_);
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive at
    // -O2) on `"literal" + std::string&&` chains.
    std::string d = "vswitch pool: ";
    d.append(std::to_string(slots_.size() - free_slots_.size())).append("/").append(std::to_string(slots_.size()));
    d.append(" slots of ").append(std::to_string(slot_bytes_ / 1024)).append(" KiB in use;");
    for (const auto& [id, q] : queues_) {
        d.append(" q").append(std::to_string(id)).append(" ").append(std::to_string(q.allocations));
        d.append(" alloc/").append(std::to_string(q.frees)).append(" free");
        if (q.refusals != 0) d.append("/").append(std::to_string(q.refusals)).append(" refused");
        d.append(",");
    }
    if (d.back() == ',') d.pop_back();
    if (bad_frees_ != 0) d.append("; ").append(std::to_string(bad_frees_)).append(" BAD FREES");
    return d;
}

std::map<NDIS_RECEIVE_QUEUE_ID, VswitchProvider::QueueCounters> VswitchProvider::queues() const {
    std::lock_guard lock(mu_);
    return queues_;
}

size_t VswitchProvider::live() const {
    std::lock_guard lock(mu_);
    return slots_.size() - free_slots_.size();
}

uint64_t VswitchProvider::bad_frees() const {
    std::lock_guard lock(mu_);
    return bad_frees_;
}

NDIS_STATUS register_through_ndis(ndisshm::ProviderBinding& binding, ndisshm::Provider& provider) {
    const ndisshm_provider_ops ops = provider.ops();
    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS c;
    NdisZeroMemory(&c, sizeof(c));
    c.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
    c.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
    c.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
    c.ProviderContext = ops.context;
    c.AllocateSharedMemoryHandler = ops.allocate;
    c.FreeSharedMemoryHandler = ops.free;
    return NdisSetOptionalHandlers(binding.handle(), reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(&c));
}

}  // namespace ndisshm::cli
