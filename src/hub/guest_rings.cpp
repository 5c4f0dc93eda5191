#include "hub/guest_rings.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ndisshm::ipc {

std::optional<uint16_t> BlockIndex::add(uint64_t handle) {
    if (index_.count(handle) != 0) return std::nullopt;
    uint16_t index;
    if (next_ < kMaxBlocks) {
        index = static_cast<uint16_t>(next_++);
    } else if (!free_.empty()) {
        index = free_.front();
        free_.pop_front();
    } else {
        return std::nullopt;
    }
    index_.emplace(handle, index);
    return index;
}

void BlockIndex::remove(uint64_t handle) {
    const auto it = index_.find(handle);
    if (it == index_.end()) return;
    free_.push_back(it->second);
    index_.erase(it);
}

GuestRings::GuestRings(std::byte* block, RingGeometry geometry, os::WakeFd rx_kick, os::WakeFd done_kick,
                       const BlockIndex& blocks, Cookies cookies)
    : geometry_(geometry),
      rx_(block, geometry.size),
      done_(block + geometry.done_offset, geometry.size),
      rx_kick_(std::move(rx_kick)),
      done_kick_(std::move(done_kick)),
      blocks_(blocks),
      cookies_(cookies) {
    // Before the guest learns where the rings are: nothing races these.
    std::memset(block, 0, geometry.bytes);
    // The table exists only where it names the packets.
    if (cookies_ != Cookies::Table) return;
    table_.resize(geometry.size);
    free_.reserve(geometry.size);
    for (uint32_t i = geometry.size; i-- > 0;) free_.push_back(i);
}

bool GuestRings::names_known_blocks(std::span<const PacketDescriptor> ds) const {
    return std::all_of(ds.begin(), ds.end(), [&](const PacketDescriptor& d) { return blocks_.find(d.handle).has_value(); });
}

std::string GuestRings::map_blocks(std::span<const nic::RxBlock> blocks) {
    wire_block_.assign(blocks.size(), 0);
    for (size_t i = 0; i < blocks.size(); ++i) {
        const std::optional<uint16_t> index = blocks_.find(blocks[i].handle);
        if (!index) return "block " + hex(blocks[i].handle) + " of the queue was never announced to the guest";
        wire_block_[i] = *index;
    }
    return {};
}

std::string GuestRings::completions_ready(uint32_t& ready) const {
    const uint32_t prod = done_.load_producer();  // the guest's: read once
    ready = prod - done_cons_;
    if (ready <= geometry_.size) return {};
    const uint32_t claimed = ready;
    ready = 0;
    return "completion ring: producer index " + std::to_string(prod) + " claims " + std::to_string(claimed) +
           " entries ready past consumer " + std::to_string(done_cons_) + " (the ring holds " +
           std::to_string(geometry_.size) + ")";
}

std::string GuestRings::room(uint32_t& descriptors, uint32_t& packets) {
    const uint32_t cons = rx_.load_consumer();  // the guest's: read once
    const uint32_t used = rx_prod_ - cons;
    if (used > geometry_.size) {
        descriptors = packets = 0;
        return "receive ring: consumer index " + std::to_string(cons) + " is " +
               (static_cast<int32_t>(used) < 0 ? "ahead of" : "too far behind") + " the producer's " +
               std::to_string(rx_prod_) + " (the ring holds " + std::to_string(geometry_.size) + ")";
    }
    descriptors = geometry_.size - used;
    packets = geometry_.size - outstanding();
    return {};
}

bool GuestRings::publish() {
    if (rx_published_ == rx_prod_) return false;
    rx_published_ = rx_prod_;
    rx_.publish_producer(rx_prod_);  // seq_cst, then the flag: ring.hpp's wake-up protocol
    // Taken: a guest that has not woken yet is kicked once, not each batch.
    if (!rx_.take_wakeup()) return false;
    ++stats_.kicks;
    rx_kick_.signal();
    return true;
}

void GuestRings::want_completions() {
    if (!wanting_) ++stats_.completion_waits;
    wanting_ = true;
    done_.store_flags(kNeedWakeup);  // seq_cst; the caller then looks at the ring once more
}

void GuestRings::stop_wanting_completions() {
    if (!wanting_) return;
    wanting_ = false;
    done_.store_flags(0);
}

std::vector<Outstanding> GuestRings::held() const {
    std::vector<Outstanding> out;
    for (const Outstanding& o : table_)
        if (o.held) out.push_back(o);
    return out;
}

std::string GuestRings::hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string GuestRings::bad_completion(uint32_t index, uint32_t cookie) const {
    const uint32_t slot = cookie & kCookieSlotMask;
    std::string what = "completion ring entry " + std::to_string(index) + ": cookie " + hex(cookie);
    if (slot >= table_.size()) return what + " names no slot (the table has " + std::to_string(table_.size()) + ")";
    if (!table_[slot].held) return what + " names a packet the guest does not hold (given back twice, or never given)";
    return what + " is of an old generation of its slot (a replay)";
}

}  // namespace ndisshm::ipc
