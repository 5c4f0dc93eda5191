#include "core/ops_provider.hpp"

namespace ndisshm::core {
namespace {
thread_local NDIS_STATUS t_last_status = NDIS_STATUS_SUCCESS;
}

NDIS_STATUS OpsProvider::last_status() { return t_last_status; }

providers::ProviderStatus OpsProvider::allocate(const providers::Request& request, providers::SgSink& /*sg*/,
                                                providers::Grant& grant) {
    auto* params = static_cast<PNDIS_SHARED_MEMORY_PARAMETERS>(const_cast<void*>(request.native));
    NDIS_HANDLE context = nullptr;
    NDIS_STATUS status = ops_.allocate(ops_.context, params, &context);
    t_last_status = status;
    grant.virtual_address = params->VirtualAddress;
    grant.token = reinterpret_cast<uint64_t>(context);
    // ndis.sys takes any success-class status (NT_SUCCESS: PENDING too) as success.
    if (status >= 0) return providers::ProviderStatus::Success;
    if (status == NDIS_STATUS_RESOURCES) return providers::ProviderStatus::Resources;
    if (status == NDIS_STATUS_INVALID_PARAMETER) return providers::ProviderStatus::InvalidParameter;
    if (status == NDIS_STATUS_BUFFER_TOO_SHORT) return providers::ProviderStatus::BufferTooShort;
    return providers::ProviderStatus::Failure;
}

void OpsProvider::free(uint64_t token) { ops_.free(ops_.context, reinterpret_cast<NDIS_HANDLE>(token)); }

void OpsProvider::committed(uint64_t token, void* shared_memory_handle) {
    if (ops_.committed != nullptr)
        ops_.committed(ops_.context, reinterpret_cast<NDIS_HANDLE>(token), shared_memory_handle);
}

void OpsProvider::attach_queue(uint32_t queue_id) {
    if (ops_.attach_queue != nullptr) ops_.attach_queue(ops_.context, queue_id);
}

void OpsProvider::detach_queue(uint32_t queue_id) {
    if (ops_.detach_queue != nullptr) ops_.detach_queue(ops_.context, queue_id);
}

std::string OpsProvider::describe() const {
    if (ops_.describe == nullptr) return name_;
    char buf[256] = {};
    ops_.describe(ops_.context, buf, sizeof(buf));
    buf[sizeof(buf) - 1] = '\0';
    return buf;
}

}  // namespace ndisshm::core
