// The guest's session: handshake, block book-keeping, in-place packet reads.
#include "guest/session.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace ndisshm::guest {
namespace {

using ipc::MessageType;

// At most this many batches queued behind the one poll() waited for are read
// before their PACKETS_DONE goes back (guest.h: ndisshm_guest_poll).
constexpr uint32_t kBatchesPerReturn = 16;

std::string type_text(uint16_t t) { return "message type " + std::to_string(t); }

}  // namespace

Result<std::unique_ptr<Session>> Session::create(const ndisshm_guest_config& c) {
    const size_t name_bytes = c.name == nullptr ? 0 : std::strlen(c.name);
    if (name_bytes == 0 || name_bytes >= ipc::kNameBytes)
        return Error{"ndisshm_guest_create", EINVAL, "name must be 1.." + std::to_string(ipc::kNameBytes - 1) + " bytes"};
    if (c.memory_bytes == 0) return Error{"ndisshm_guest_create", EINVAL, "memory_bytes must be > 0"};
    auto fd = os::memfd_create(std::string("ndisshm-guest-") + c.name, false);
    if (!fd) return fd.error();
    if (auto s = os::resize_file(fd->get(), c.memory_bytes); !s) return s.error();
    // Sealed before the host ever sees it: the host maps the whole size, and a
    // guest that could shrink the file afterwards would make the host's next
    // write to a vanished page a SIGBUS.
    if (auto s = os::memfd_seal_shrink(fd->get()); !s) return s.error();
    auto mapped = os::map_shared(fd->get(), c.memory_bytes);
    if (!mapped) return mapped.error();
    return std::unique_ptr<Session>(new Session(c, std::move(*fd), static_cast<std::byte*>(*mapped)));
}

Session::Session(const ndisshm_guest_config& c, os::UniqueFd memfd, std::byte* memory)
    : name_(c.name),
      guest_physical_base_(c.guest_physical_base),
      on_packet_(c.on_packet),
      on_event_(c.on_event),
      context_(c.context),
      memfd_(std::move(memfd)),
      memory_(memory),
      bytes_(c.memory_bytes) {}

Session::~Session() {
    close();
    os::unmap(memory_, bytes_);
}

ndisshm_guest_stats Session::stats() const {
    ndisshm_guest_stats s = stats_;
    s.blocks = static_cast<uint32_t>(blocks_.size());
    s.queues = static_cast<uint32_t>(queues_.size());
    s.connected = channel_.has_value() ? 1 : 0;
    return s;
}

NDIS_STATUS Session::end(NDIS_STATUS status, std::string why) {
    channel_.reset();
    end_reason_ = why;
    last_error_ = std::move(why);
    return status;
}

void Session::close() {
    if (!channel_) return;
    // Best effort: a host that is already gone needs no goodbye.
    (void)channel_->send(MessageType::Bye, ipc::Bye{});
    channel_.reset();
}

NDIS_STATUS Session::connect(const std::string& socket_path, int timeout_ms) {
    if (used_) return end(NDIS_STATUS_FAILURE, "ndisshm_guest_connect: this guest has had its session already");
    used_ = true;
    auto sock = ipc::connect_to(socket_path);
    if (!sock) return end(NDIS_STATUS_FAILURE, sock.error().message());
    channel_.emplace(std::move(*sock));

    ipc::Hello hello{};
    std::memcpy(hello.name, name_.c_str(), name_.size() + 1);
    if (auto s = channel_->send(MessageType::Hello, hello); !s) return send_failed(s.error());
    ipc::Message m;
    if (auto st = await(MessageType::HelloAck, timeout_ms, m); st != NDIS_STATUS_SUCCESS) return st;
    stats_.guest_id = m.as<ipc::HelloAck>().guest_id;

    const ipc::SetMemory set{bytes_, guest_physical_base_};
    if (auto s = channel_->send(MessageType::SetMemory, set, memfd_.get()); !s) return send_failed(s.error());
    if (auto st = await(MessageType::MemoryAck, timeout_ms, m); st != NDIS_STATUS_SUCCESS) return st;
    if (const uint64_t acked = m.as<ipc::MemoryAck>().size; acked != bytes_)
        return end(NDISSHM_STATUS_PROTOCOL, "host acknowledged " + std::to_string(acked) + " bytes of memory, we gave " +
                                               std::to_string(bytes_));
    last_error_.clear();
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Session::await(MessageType want, int timeout_ms, ipc::Message& out) {
    auto r = channel_->receive(timeout_ms);
    if (!r) {
        if (r.error().err == ETIMEDOUT)
            return end(NDIS_STATUS_FAILURE, "handshake: the host did not answer within " +
                                                 std::to_string(timeout_ms) + " ms");
        return receive_failed(r.error());
    }
    if (r->type() != want) return ended_by_host(*r);
    out = std::move(*r);
    return NDIS_STATUS_SUCCESS;
}

NDIS_STATUS Session::receive_failed(const Error& e) {
    switch (e.err) {
        case ETIMEDOUT: return NDISSHM_STATUS_TIMEOUT;
        case ECONNRESET: return end(NDISSHM_STATUS_HOST_GONE, "host closed the connection without BYE (host gone)");
        case EPROTO: return end(NDISSHM_STATUS_PROTOCOL, "host sent a malformed message: " + e.detail);
        default: return end(NDIS_STATUS_FAILURE, e.message());
    }
}

NDIS_STATUS Session::send_failed(const Error& e) {
    if (e.err != EPIPE && e.err != ECONNRESET) return end(NDIS_STATUS_FAILURE, e.message());
    // The host closed first. Read what it left queued: a BYE or an ERROR
    // explains the close; end of stream means it just went away.
    for (;;) {
        auto r = channel_->receive(0);
        if (!r) {
            if (r.error().err == ETIMEDOUT)  // hung up, nothing left, yet no end seen: treat as gone
                return end(NDISSHM_STATUS_HOST_GONE, "host closed the connection without BYE (host gone)");
            return receive_failed(r.error());
        }
        const auto t = r->type();
        if (t == MessageType::Bye || t == MessageType::Error) return ended_by_host(*r);
    }
}

NDIS_STATUS Session::ended_by_host(const ipc::Message& m) {
    switch (m.type()) {
        case MessageType::Bye: return end(NDISSHM_STATUS_HOST_BYE, "host closed the connection (BYE)");
        case MessageType::Error: {
            const auto e = m.as<ipc::ErrorMessage>();  // reason NUL-terminated: validated on receipt
            char code[16];
            std::snprintf(code, sizeof(code), "0x%08X", e.code);
            return end(NDISSHM_STATUS_REFUSED, std::string("host refused: ") + e.reason + " (status " + code + ")");
        }
        default:
            return end(NDISSHM_STATUS_PROTOCOL, "unexpected " + type_text(m.header.type) + " from the host (#" +
                                                   std::to_string(m.header.sequence) + ")");
    }
}

NDIS_STATUS Session::poll(int timeout_ms) {
    if (!channel_) {
        last_error_ = used_ ? "no session: it has ended (" + end_reason_ + ")" : "no session: connect first";
        return NDIS_STATUS_FAILURE;
    }
    auto r = channel_->receive(timeout_ms);
    if (!r) return receive_failed(r.error());
    NDIS_STATUS status = handle(*r);
    // Batches already queued behind this one are read now and their
    // descriptors go back with its own in one PACKETS_DONE: one message, and
    // one wake-up of the host's thread, for what arrived together. Bounded,
    // so a host that never pauses cannot keep poll() from returning, and
    // everything read is given back before it returns.
    for (uint32_t more = 0; status == NDIS_STATUS_SUCCESS && !done_.empty() && more < kBatchesPerReturn; ++more) {
        auto next = channel_->receive(0);
        if (!next) {
            if (next.error().err == ETIMEDOUT) break;
            if (auto s = return_done(); s != NDIS_STATUS_SUCCESS) return s;
            return receive_failed(next.error());
        }
        // Anything else than the same queue's packets comes after the return.
        if (next->type() != MessageType::Packets || next->packets_header().queue_id != done_queue_)
            if (status = return_done(&*next); status != NDIS_STATUS_SUCCESS) return status;
        status = handle(*next);
    }
    if (const NDIS_STATUS s = return_done(); status == NDIS_STATUS_SUCCESS) status = s;
    return status;
}

NDIS_STATUS Session::return_done(const ipc::Message* in_hand) {
    if (done_.empty() || !channel_) return NDIS_STATUS_SUCCESS;
    auto s = channel_->send_packets(MessageType::PacketsDone, done_queue_, done_);
    done_.clear();
    if (s) return NDIS_STATUS_SUCCESS;
    // The host hung up after its last words, and we hold them already: they
    // explain the end (send_failed would look for them in the socket).
    const int e = s.error().err;
    if (in_hand != nullptr && (e == EPIPE || e == ECONNRESET) &&
        (in_hand->type() == MessageType::Bye || in_hand->type() == MessageType::Error))
        return ended_by_host(*in_hand);
    return send_failed(s.error());
}

NDIS_STATUS Session::handle(const ipc::Message& m) {
    switch (m.type()) {
        case MessageType::QueueAttached: {
            const auto q = m.as<ipc::QueueAttached>();
            queues_[q.queue_id] = Queue{q.flags, q.lookahead_size};
            ndisshm_guest_event e{};
            e.kind = NDISSHM_GUEST_QUEUE_ATTACHED;
            e.queue_id = q.queue_id;
            e.flags = q.flags;
            e.lookahead_size = q.lookahead_size;
            emit(e);
            return NDIS_STATUS_SUCCESS;
        }
        case MessageType::QueueDetached: on_queue_detached(m.as<ipc::QueueDetached>().queue_id); return NDIS_STATUS_SUCCESS;
        case MessageType::BlockAdded: on_block_added(m.as<ipc::BlockAdded>()); return NDIS_STATUS_SUCCESS;
        case MessageType::BlockRemoved: on_block_removed(m.as<ipc::BlockRemoved>().handle); return NDIS_STATUS_SUCCESS;
        case MessageType::Packets: return on_packets(m);
        default: return ended_by_host(m);  // BYE, ERROR, or a type the host never sends
    }
}

NDIS_STATUS Session::on_packets(const ipc::Message& m) {
    static_assert(NDISSHM_GUEST_MAX_SEGMENTS == ipc::kMaxSegmentsPerPacket);
    const uint32_t queue_id = m.packets_header().queue_id;
    const std::vector<ipc::PacketDescriptor> descriptors = m.packets();
    ++stats_.batches;
    ndisshm_guest_segment segments[ipc::kMaxSegmentsPerPacket];
    for (size_t i = 0; i < descriptors.size();) {
        // The channel let in whole chains of at most kMaxSegmentsPerPacket.
        const size_t n = ipc::chain_length(descriptors, i);
        uint64_t packet_length = 0;
        bool good = true;
        for (size_t k = 0; k < n && good; ++k) {
            const ipc::PacketDescriptor& d = descriptors[i + k];
            const auto it = blocks_.find(d.handle);
            // A segment is read only if it names a block of this queue and
            // lies inside it: the block itself was checked against our memory
            // when it was added, so the read stays inside our mapping.
            good = it != blocks_.end() && it->second.queue_id == queue_id && d.length != 0 &&
                   uint64_t{d.offset} + d.length <= it->second.length;
            if (good)
                segments[k] = {d.handle, d.offset, d.length, memory_ + it->second.guest_offset + d.offset};
            packet_length += d.length;
        }
        good = good && packet_length <= UINT32_MAX;  // four near-4 GiB segments from a lying host
        const ipc::PacketDescriptor& first = descriptors[i];
        i += n;
        // Half a packet is no packet: one bad segment spoils the chain.
        if (!good) {
            stats_.bad_descriptors += n;
            continue;
        }
        ++stats_.packets;
        stats_.bytes += packet_length;
        if (on_packet_ != nullptr) {
            ndisshm_guest_packet p{};
            p.queue_id = queue_id;
            p.length = first.length;
            p.handle = first.handle;
            p.offset = first.offset;
            p.segment_count = static_cast<uint32_t>(n);
            p.data = segments[0].data;
            p.packet_length = static_cast<uint32_t>(packet_length);
            p.segments = segments;
            on_packet_(context_, &p);
        }
    }
    // Every descriptor goes back, the bad ones too: the host owns the buffers
    // and recycles them only when they are returned. poll() sends them, with
    // those of the batches queued behind this one, before it returns.
    if (!done_.empty() &&
        (done_queue_ != queue_id || done_.size() + descriptors.size() > ipc::kMaxPacketsPerMessage))
        if (const NDIS_STATUS s = return_done(); s != NDIS_STATUS_SUCCESS) return s;
    done_queue_ = queue_id;
    done_.insert(done_.end(), descriptors.begin(), descriptors.end());
    return NDIS_STATUS_SUCCESS;
}

void Session::on_block_added(const ipc::BlockAdded& b) {
    const bool inside = b.length > 0 && b.guest_offset <= bytes_ && b.length <= bytes_ - b.guest_offset;
    if (!inside || blocks_.count(b.handle) != 0) {
        ++stats_.bad_blocks;  // never recorded, so no packet can be read from it
        return;
    }
    const Block block{b.guest_offset, b.length, b.queue_id, b.usage};
    blocks_.emplace(b.handle, block);
    emit(block_event(NDISSHM_GUEST_BLOCK_ADDED, b.handle, block));
}

void Session::on_block_removed(uint64_t handle) {
    const auto it = blocks_.find(handle);
    if (it == blocks_.end()) {
        ++stats_.bad_blocks;
        return;
    }
    const Block block = it->second;
    blocks_.erase(it);
    emit(block_event(NDISSHM_GUEST_BLOCK_REMOVED, handle, block));
}

void Session::on_queue_detached(uint32_t queue_id) {
    // The host removes a queue's blocks before the queue; any it did not are
    // forgotten here, so a later descriptor naming them is bad, not read.
    for (auto it = blocks_.begin(); it != blocks_.end();) {
        if (it->second.queue_id != queue_id) {
            ++it;
            continue;
        }
        const auto handle = it->first;
        const Block block = it->second;
        it = blocks_.erase(it);
        emit(block_event(NDISSHM_GUEST_BLOCK_REMOVED, handle, block));
    }
    queues_.erase(queue_id);
    ndisshm_guest_event e{};
    e.kind = NDISSHM_GUEST_QUEUE_DETACHED;
    e.queue_id = queue_id;
    emit(e);
}

ndisshm_guest_event Session::block_event(ndisshm_guest_event_kind kind, uint64_t handle, const Block& b) const {
    ndisshm_guest_event e{};
    e.kind = kind;
    e.queue_id = b.queue_id;
    e.handle = handle;
    e.guest_offset = b.guest_offset;
    e.length = b.length;
    e.usage = b.usage;
    return e;
}

void Session::emit(const ndisshm_guest_event& e) const {
    if (on_event_ != nullptr) on_event_(context_, &e);
}

}  // namespace ndisshm::guest
