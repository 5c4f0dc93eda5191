#include "nic/provider_ops.hpp"

#include <cstring>

namespace ndisshm::nic {
namespace {

class ListSink final : public providers::SgSink {
public:
    ListSink(PSCATTER_GATHER_LIST list, ULONG capacity) : list_(list), capacity_(capacity) {}
    void add(uint64_t address, uint64_t length) override {
        if (count_ < capacity_) {
            SCATTER_GATHER_ELEMENT& e = list_->Elements[count_];
            e.Address.QuadPart = static_cast<LONGLONG>(address);
            e.Length = static_cast<ULONG>(length);
            e.Reserved = 0;
        }
        ++count_;
    }
    ULONG count() const { return count_; }

private:
    PSCATTER_GATHER_LIST list_;
    ULONG capacity_;
    ULONG count_ = 0;
};

NDIS_STATUS to_ndis(providers::ProviderStatus s) {
    switch (s) {
        case providers::ProviderStatus::Success: return NDIS_STATUS_SUCCESS;
        case providers::ProviderStatus::Resources: return NDIS_STATUS_RESOURCES;
        case providers::ProviderStatus::InvalidParameter: return NDIS_STATUS_INVALID_PARAMETER;
        case providers::ProviderStatus::BufferTooShort: return NDIS_STATUS_BUFFER_TOO_SHORT;
        case providers::ProviderStatus::Failure: break;
    }
    return NDIS_STATUS_FAILURE;
}

providers::Provider& self(NDIS_HANDLE context) { return *static_cast<providers::Provider*>(context); }

NDIS_STATUS allocate(NDIS_HANDLE context, PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out) {
    providers::Request req;
    req.length = p->Length;
    req.contiguous = (p->Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) != 0;
    req.queue_id = p->QueueId;
    std::memcpy(&req.usage, &p->Usage, sizeof(req.usage));  // any value: read as bits, not through the enum
    req.preferred_node = p->PreferredNode;
    req.vport_id = p->Header.Revision >= NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2 ? p->VPortId : 0;
    const ULONG capacity = NDISSHM_SG_LIST_CAPACITY(p->SGListBufferLength);
    ListSink sink(p->SGListBuffer, capacity);
    providers::Grant grant;
    const providers::ProviderStatus s = self(context).allocate(req, sink, grant);
    if (s != providers::ProviderStatus::Success) return to_ndis(s);
    if (sink.count() > capacity) {
        self(context).free(grant.token);
        p->SGListBuffer->NumberOfElements = sink.count();
        return NDIS_STATUS_BUFFER_TOO_SHORT;
    }
    p->SGListBuffer->NumberOfElements = sink.count();
    p->VirtualAddress = grant.virtual_address;
    *out = reinterpret_cast<NDIS_HANDLE>(static_cast<uintptr_t>(grant.token));
    return NDIS_STATUS_SUCCESS;
}

}  // namespace

ndisshm_provider_ops provider_ops(providers::Provider& provider) {
    ndisshm_provider_ops o{};
    o.struct_size = sizeof(o);
    o.context = &provider;
    o.allocate = &allocate;
    o.free = [](NDIS_HANDLE c, NDIS_HANDLE token) { self(c).free(reinterpret_cast<uintptr_t>(token)); };
    o.attach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c).attach_queue(q); };
    o.detach_queue = [](NDIS_HANDLE c, NDIS_RECEIVE_QUEUE_ID q) { self(c).detach_queue(q); };
    o.committed = [](NDIS_HANDLE c, NDIS_HANDLE token, NDIS_HANDLE handle) {
        self(c).committed(reinterpret_cast<uintptr_t>(token), handle);
    };
    o.describe = [](NDIS_HANDLE c, char* buf, size_t n) {
        if (n == 0) return;
        const std::string d = self(c).describe();
        const size_t k = d.size() < n - 1 ? d.size() : n - 1;
        d.copy(buf, k);
        buf[k] = '\0';
    };
    return o;
}

}  // namespace ndisshm::nic
