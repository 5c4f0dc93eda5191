#include "driver_request.hpp"

namespace ndisshm::support {

std::string record_differences(const ndisshm_block_info& info, NDIS_HANDLE adapter,
                               const NDIS_SHARED_MEMORY_PARAMETERS& p) {
    std::string bad;
    if (info.adapter != adapter) bad += " adapter";
    if (info.queue_id != p.QueueId) bad += " queue " + std::to_string(info.queue_id);
    if (info.usage != p.Usage) bad += " usage";
    if (info.length != p.Length) bad += " length " + std::to_string(info.length);
    if (info.virtual_address != p.VirtualAddress) bad += " address";
    const auto first = p.SGListBuffer != nullptr && p.SGListBuffer->NumberOfElements != 0
                           ? static_cast<ULONG64>(p.SGListBuffer->Elements[0].Address.QuadPart)
                           : 0;
    if (info.first_address != first) bad += " first SG address";
    return bad;
}

}  // namespace ndisshm::support
