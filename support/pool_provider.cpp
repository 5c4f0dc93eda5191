#include "pool_provider.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace ndisshm::support {

PoolProvider::PoolProvider(std::string name, size_t slots, size_t slot_bytes)
    : name_(std::move(name)), slot_bytes_((slot_bytes + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE), slots_(slots) {
    // One region for the whole pool, as a virtual switch carves queue memory
    // out of one virtual machine's memory. aligned_alloc wants a size that is
    // a multiple of the alignment, and at least one page.
    const size_t bytes = slots * slot_bytes_ == 0 ? PAGE_SIZE : slots * slot_bytes_;
    region_ = static_cast<unsigned char*>(std::aligned_alloc(PAGE_SIZE, bytes));
    if (region_ == nullptr) throw std::bad_alloc();
    free_slots_.reserve(slots);
    // Lowest slot first, so the pool fills from the start of the region.
    for (size_t i = slots; i-- > 0;) free_slots_.push_back(i);
}

PoolProvider::~PoolProvider() {
    std::free(region_);
}

NDIS_STATUS PoolProvider::allocate(NDIS_SHARED_MEMORY_PARAMETERS& p, NDIS_HANDLE& context) {
    std::lock_guard lock(mu_);
    if (NDISSHM_SG_LIST_CAPACITY(p.SGListBufferLength) < 1) {
        if (p.SGListBufferLength >= NDISSHM_SG_LIST_HEADER_BYTES) p.SGListBuffer->NumberOfElements = 1;
        return NDIS_STATUS_BUFFER_TOO_SHORT;
    }
    QueueCounters& q = queues_[p.QueueId];
    if (p.Length > slot_bytes_ || free_slots_.empty()) {
        ++q.refusals;
        return NDIS_STATUS_RESOURCES;
    }
    const size_t slot = free_slots_.back();
    free_slots_.pop_back();
    unsigned char* mem = address_of(slot);
    std::memset(mem, 0, slot_bytes_);
    slots_[slot] = {true, p.QueueId, nullptr};
    ++q.allocations;
    ++q.live;
    p.VirtualAddress = mem;
    p.SGListBuffer->NumberOfElements = 1;
    p.SGListBuffer->Elements[0].Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(mem));
    p.SGListBuffer->Elements[0].Length = p.Length;
    p.SGListBuffer->Elements[0].Reserved = 0;
    context = &slots_[slot];
    return NDIS_STATUS_SUCCESS;
}

PoolProvider::Slot* PoolProvider::slot_of(NDIS_HANDLE context) {
    // Compared as integers: a foreign pointer is not in the array, and
    // relational comparison of unrelated pointers is unspecified.
    const auto at = reinterpret_cast<uintptr_t>(context);
    const auto first = reinterpret_cast<uintptr_t>(slots_.data());
    const auto end = first + slots_.size() * sizeof(Slot);
    if (at < first || at >= end || (at - first) % sizeof(Slot) != 0) return nullptr;
    Slot* s = &slots_[(at - first) / sizeof(Slot)];
    return s->in_use ? s : nullptr;
}

void PoolProvider::free(NDIS_HANDLE context) {
    std::lock_guard lock(mu_);
    Slot* s = slot_of(context);
    if (s == nullptr) {
        ++bad_frees_;
        return;
    }
    QueueCounters& q = queues_[s->queue];
    ++q.frees;
    --q.live;
    *s = Slot{};
    free_slots_.push_back(static_cast<size_t>(s - slots_.data()));
}

void PoolProvider::committed(NDIS_HANDLE context, NDIS_HANDLE shared_memory_handle) {
    std::lock_guard lock(mu_);
    if (Slot* s = slot_of(context)) s->shared_memory_handle = shared_memory_handle;
}

std::string PoolProvider::describe() const {
    std::lock_guard lock(mu_);
    // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive at
    // -O2) on `"literal" + std::string&&` chains.
    std::string d = name_;
    d.append(" pool: ");
    d.append(std::to_string(slots_.size() - free_slots_.size())).append("/").append(std::to_string(slots_.size()));
    d.append(" slots of ").append(std::to_string(slot_bytes_ / 1024)).append(" KiB in use;");
    for (const auto& [id, q] : queues_) {
        d.append(" q").append(std::to_string(id)).append(" ").append(std::to_string(q.allocations));
        d.append(" alloc/").append(std::to_string(q.frees)).append(" free");
        if (q.refusals != 0) d.append("/").append(std::to_string(q.refusals)).append(" refused");
        d.append(",");
    }
    if (d.back() == ',' || d.back() == ';') d.pop_back();
    if (bad_frees_ != 0) d.append("; ").append(std::to_string(bad_frees_)).append(" BAD FREES");
    return d;
}

std::map<NDIS_RECEIVE_QUEUE_ID, PoolProvider::QueueCounters> PoolProvider::queues() const {
    std::lock_guard lock(mu_);
    return queues_;
}

size_t PoolProvider::live() const {
    std::lock_guard lock(mu_);
    return slots_.size() - free_slots_.size();
}

uint64_t PoolProvider::bad_frees() const {
    std::lock_guard lock(mu_);
    return bad_frees_;
}

NDIS_HANDLE PoolProvider::shared_memory_handle(const void* block) const {
    std::lock_guard lock(mu_);
    const auto at = reinterpret_cast<uintptr_t>(block);
    const auto first = reinterpret_cast<uintptr_t>(region_);
    if (at < first || at >= first + slots_.size() * slot_bytes_ || (at - first) % slot_bytes_ != 0) return nullptr;
    const Slot& s = slots_[(at - first) / slot_bytes_];
    return s.in_use ? s.shared_memory_handle : nullptr;
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

}  // namespace ndisshm::support
