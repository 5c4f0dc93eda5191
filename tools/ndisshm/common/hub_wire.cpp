#include "common/hub_wire.hpp"

namespace ndisshm::cli {

size_t HubWire::send(Path path, Stream& s, std::span<const ndisshm_hub_packet> packets) {
    return path == Path::ZeroCopy ? hub_.deliver_batch(s.guest_queue, packets)
                                  : hub_.deliver_copy_batch(s.host_queue, s.guest_queue, packets);
}

}  // namespace ndisshm::cli
