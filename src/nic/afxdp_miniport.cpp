#include "nic/afxdp_miniport.hpp"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "nic/vmq_miniport.hpp"  // allocate_queue_block: one way a driver allocates a queue's block
#include "os/fd_checks.hpp"

namespace ndisshm::nic {

namespace {
constexpr size_t kBatch = 256;  // rx descriptors taken per poll: one consumer call
constexpr uint32_t kMinFrames = 64, kMaxFrames = 16384;

uint32_t ring_size_for(uint32_t frames) {
    uint32_t r = 64;
    while (r < frames) r <<= 1;
    return r;
}
}  // namespace

struct AfxdpMiniport::Queue {
    enum class Frame : uint8_t { Kernel, Held };
    struct FrameState {
        Frame state = Frame::Kernel;
        uint32_t generation = 0;
        uint32_t offset = 0;  // of the packet in it, while Held
        uint32_t length = 0;
    };

    NDIS_RECEIVE_QUEUE_ID id = 0;
    AfxdpQueueConfig config;
    NDIS_HANDLE block = nullptr;
    std::byte* address = nullptr;
    uint64_t length = 0;
    std::unique_ptr<os::XdpSocket> xsk;
    std::unique_ptr<os::WakeFd> wake;
    std::thread rx;
    std::atomic<bool> stopping{false};

    std::mutex mu;  // frames, the fill ring (one producer at a time), stats, running
    bool running = true;
    std::vector<FrameState> frames;
    AfxdpQueueStats stats;

    uint64_t handle() const { return reinterpret_cast<uintptr_t>(block); }
    // Under mu: the frame goes back to the kernel. The fill ring holds at
    // least as many entries as there are frames, so it always fits.
    void refill(uint32_t frame) {
        const uint64_t addr = uint64_t{frame} * config.frame_bytes;
        xsk->fill(std::span<const uint64_t>(&addr, 1));
    }
};

AfxdpMiniport::AfxdpMiniport(NDIS_HANDLE adapter, AfxdpIndicate indicate)
    : adapter_(adapter), indicate_(std::move(indicate)) {}

AfxdpMiniport::~AfxdpMiniport() {
    std::vector<NDIS_RECEIVE_QUEUE_ID> ids;
    {
        std::lock_guard lock(mu_);
        for (auto& [id, q] : queues_) ids.push_back(id);
    }
    for (auto id : ids) stop_queue(id);
}

NDIS_STATUS AfxdpMiniport::start_queue(NDIS_RECEIVE_QUEUE_ID queue, const AfxdpQueueConfig& config,
                                       std::string* why) {
    auto fail = [&](NDIS_STATUS s, const std::string& reason) {
        if (why != nullptr) *why = "AF_XDP queue " + std::to_string(queue) + ": " + reason;
        return s;
    };
    if (config.frames < kMinFrames || config.frames > kMaxFrames)
        return fail(NDIS_STATUS_INVALID_PARAMETER, "frames must be 64..16384");
    if (find(queue) != nullptr) return fail(NDIS_STATUS_INVALID_PARAMETER, "already started");
    auto q = std::make_shared<Queue>();
    q->id = queue;
    q->config = config;
    q->length = uint64_t{config.frames} * config.frame_bytes;

    // The UMEM's memory, as a driver allocates receive buffers for a VMQ.
    NDIS_HANDLE handle = nullptr;
    void* address = nullptr;
    if (NDIS_STATUS s = allocate_queue_block(adapter_, queue, NdisSharedMemoryUsageReceive,
                                             static_cast<ULONG>(q->length), &handle, &address);
        s != NDIS_STATUS_SUCCESS)
        return fail(s, "NdisAllocateSharedMemory(" + std::to_string(q->length) + " bytes of UMEM) failed");
    q->block = handle;
    q->address = static_cast<std::byte*>(address);

    // From here a failure frees the block again, after the socket (if any) is gone.
    auto undo = [&](NDIS_STATUS s, const std::string& reason) {
        q->xsk.reset();
        NdisFreeSharedMemory(adapter_, q->block);
        return fail(s, reason);
    };
    os::XdpSocketConfig xc;
    xc.ifname = config.ifname;
    xc.queue = config.nic_queue;
    xc.netns = config.netns;
    xc.frame_bytes = config.frame_bytes;
    xc.ring_size = ring_size_for(config.frames);
    xc.copy_mode = config.copy_mode;
    auto xsk = os::XdpSocket::open(q->address, q->length, xc);
    if (!xsk) return undo(NDIS_STATUS_FAILURE, xsk.error().message());
    q->xsk = std::move(*xsk);
    auto wake = os::WakeFd::create();
    if (!wake) return undo(NDIS_STATUS_RESOURCES, wake.error().message());
    q->wake = std::make_unique<os::WakeFd>(std::move(*wake));

    q->frames.resize(config.frames);
    q->stats.frames = config.frames;
    std::vector<uint64_t> all(config.frames);
    for (uint32_t f = 0; f < config.frames; ++f) all[f] = uint64_t{f} * config.frame_bytes;
    if (q->xsk->fill(all) != all.size())
        return undo(NDIS_STATUS_FAILURE, "the fill ring took fewer frames than it has room for");

    {
        std::lock_guard lock(mu_);
        if (!queues_.emplace(queue, q).second) return undo(NDIS_STATUS_INVALID_PARAMETER, "already started");
    }
    q->rx = std::thread([this, q] { receive_loop(q); });
    return NDIS_STATUS_SUCCESS;
}

void AfxdpMiniport::stop_queue(NDIS_RECEIVE_QUEUE_ID queue) {
    std::shared_ptr<Queue> q;
    {
        std::lock_guard lock(mu_);
        auto it = queues_.find(queue);
        if (it == queues_.end()) return;
        q = std::move(it->second);
        queues_.erase(it);
    }
    q->stopping = true;
    q->wake->signal();
    // The receive thread holds no lock while it waits, so it ends within one
    // poll. Called from the consumer's callback (its own thread), it cannot
    // be joined: it sees `stopping` as soon as the callback returns, before it
    // touches the socket again.
    if (q->rx.get_id() == std::this_thread::get_id())
        q->rx.detach();
    else if (q->rx.joinable())
        q->rx.join();
    {
        std::lock_guard lock(q->mu);
        q->running = false;  // give_back from here on refuses, and never touches the fill ring
    }
    // The order that keeps the kernel out of freed memory: the socket is
    // released (no receive in flight, none to come) before the block goes.
    q->xsk->close();
    NdisFreeSharedMemory(adapter_, q->block);
}

void AfxdpMiniport::receive_loop(const std::shared_ptr<Queue>& q) {
    std::vector<os::XdpPacket> got(kBatch);
    std::vector<AfxdpPacket> batch;
    batch.reserve(kBatch);
    const uint32_t frame_bytes = q->config.frame_bytes;
    while (!q->stopping.load()) {
        os::PollEntry entries[2] = {{q->xsk->fd()}, {q->wake->fd()}};
        auto ready = os::poll_readable(entries, -1);
        if (!ready) break;  // poll itself failed (EBADF, ENOMEM): nothing more can be received
        if (entries[1].readable) q->wake->drain();
        if (q->stopping.load()) break;
        const size_t n = q->xsk->receive(got);
        batch.clear();
        {
            std::lock_guard lock(q->mu);
            for (size_t i = 0; i < n; ++i) {
                const os::XdpPacket& d = got[i];
                const uint64_t frame = d.addr / frame_bytes;
                // The kernel names frames we gave it; anything else would be a
                // kernel or ring bug, and is never indicated.
                if (frame >= q->frames.size() || q->frames[frame].state != Queue::Frame::Kernel ||
                    d.length == 0 || d.addr + d.length > (frame + 1) * frame_bytes) {
                    ++q->stats.bad_descriptors;
                    continue;
                }
                const std::byte* data = q->address + d.addr;
                if (q->config.unicast_filter && std::memcmp(data, q->config.unicast_filter->data(), 6) != 0) {
                    ++q->stats.filtered;
                    q->refill(static_cast<uint32_t>(frame));
                    continue;
                }
                auto& f = q->frames[frame];
                f.state = Queue::Frame::Held;
                f.offset = static_cast<uint32_t>(d.addr);
                f.length = d.length;
                ++q->stats.indicated;
                ++q->stats.outstanding;
                batch.push_back(
                    {q->handle(), f.offset, f.length, (uint64_t{f.generation} << 32) | frame, data});
            }
        }
        if (!batch.empty()) indicate_(q->id, batch);
    }
}

bool AfxdpMiniport::give_back(NDIS_RECEIVE_QUEUE_ID queue, uint64_t handle, uint32_t offset, uint32_t length,
                              uint64_t cookie) {
    auto q = find(queue);
    if (q == nullptr) return false;
    std::lock_guard lock(q->mu);
    const uint64_t frame = cookie & 0xffffffffu;
    if (!q->running || handle != q->handle() || frame >= q->frames.size()) {
        ++q->stats.refused;
        return false;
    }
    auto& f = q->frames[frame];
    if (f.state != Queue::Frame::Held || f.generation != (cookie >> 32) || f.offset != offset ||
        f.length != length) {
        ++q->stats.refused;
        return false;
    }
    f.state = Queue::Frame::Kernel;
    ++f.generation;
    ++q->stats.returned;
    --q->stats.outstanding;
    q->refill(static_cast<uint32_t>(frame));
    return true;
}

std::shared_ptr<AfxdpMiniport::Queue> AfxdpMiniport::find(NDIS_RECEIVE_QUEUE_ID queue) const {
    std::lock_guard lock(mu_);
    auto it = queues_.find(queue);
    return it == queues_.end() ? nullptr : it->second;
}

std::optional<AfxdpUmem> AfxdpMiniport::umem(NDIS_RECEIVE_QUEUE_ID queue) const {
    auto q = find(queue);
    if (q == nullptr) return std::nullopt;
    return AfxdpUmem{q->handle(), q->address, q->length};
}

AfxdpQueueStats AfxdpMiniport::stats(NDIS_RECEIVE_QUEUE_ID queue) const {
    auto q = find(queue);
    if (q == nullptr) return {};
    std::lock_guard lock(q->mu);
    AfxdpQueueStats s = q->stats;
    if (q->running)
        if (auto k = q->xsk->stats(); k) s.kernel = *k;
    return s;
}

}  // namespace ndisshm::nic
