// A provider registered through NDIS (NdisSetOptionalHandlers) or our ops
// table: C function pointers, adapted to the provider interface. The C
// handler writes VirtualAddress and the SG list into the caller's parameters
// itself, as on Windows; the core checks what it wrote.
#pragma once

#include <ndisshm/host.h>
#include "providers/provider.hpp"

namespace ndisshm::core {

class OpsProvider final : public providers::Provider {
public:
    OpsProvider(const ndisshm_provider_ops& ops, std::string name) : ops_(ops), name_(std::move(name)) {}

    providers::ProviderStatus allocate(const providers::Request& request, providers::SgSink& sg,
                                       providers::Grant& grant) override;
    void free(uint64_t token) override;
    void committed(uint64_t token, void* shared_memory_handle) override;
    void attach_queue(uint32_t queue_id) override;
    void detach_queue(uint32_t queue_id) override;
    std::string describe() const override;

    // The NDIS status the handler returned last on this thread's call.
    static NDIS_STATUS last_status();

private:
    ndisshm_provider_ops ops_;
    std::string name_;
};

}  // namespace ndisshm::core
