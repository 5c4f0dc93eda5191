#include "providers/guest_provider.hpp"

#include <cerrno>

namespace ndisshm::providers {

Result<std::unique_ptr<GuestProvider>> GuestProvider::create(const GuestProviderConfig& config) {
    auto arena = memory::Arena::create(config.host_arena);
    if (!arena) return arena.error();
    return std::unique_ptr<GuestProvider>(new GuestProvider(std::move(*arena), config.listener));
}

GuestProvider::GuestProvider(std::unique_ptr<memory::Arena> arena, BlockListener* listener)
    : arena_(std::move(arena)), listener_(listener) {}

// NDIS frees every block through us before the binding goes; whatever is
// left here was never given back, and its memory goes with us.
GuestProvider::~GuestProvider() = default;

Status GuestProvider::add_guest(uint32_t guest_id, std::shared_ptr<GuestMemory> memory) {
    std::lock_guard lock(mu_);
    if (!guests_.emplace(guest_id, std::move(memory)).second)
        return Error{"add_guest(" + std::to_string(guest_id) + ")", EEXIST, "guest id already in use"};
    return Ok{};
}

void GuestProvider::remove_guest(uint32_t guest_id) {
    std::shared_ptr<GuestMemory> last;  // unmapped, if this was the last reference, after the lock is dropped
    std::lock_guard lock(mu_);
    auto it = guests_.find(guest_id);
    if (it == guests_.end()) return;
    last = std::move(it->second);
    guests_.erase(it);
    std::erase_if(queue_owner_, [&](const auto& q) { return q.second == guest_id; });
}

Status GuestProvider::assign_queue(uint32_t queue_id, uint32_t guest_id) {
    std::lock_guard lock(mu_);
    if (queue_id == 0)
        return Error{"assign_queue(0)", EINVAL, "the default queue always gets host memory"};
    if (guests_.count(guest_id) == 0)
        return Error{"assign_queue(" + std::to_string(queue_id) + ")", ENOENT,
                     "no guest " + std::to_string(guest_id)};
    queue_owner_[queue_id] = guest_id;
    return Ok{};
}

void GuestProvider::unassign_queue(uint32_t queue_id) {
    std::lock_guard lock(mu_);
    queue_owner_.erase(queue_id);
}

std::optional<uint32_t> GuestProvider::guest_of(uint32_t queue_id) const {
    std::lock_guard lock(mu_);
    auto it = queue_owner_.find(queue_id);
    if (it == queue_owner_.end()) return std::nullopt;
    return it->second;
}

ProviderStatus GuestProvider::refuse(ProviderStatus status, Grant& grant, std::string why) {
    std::lock_guard lock(mu_);
    last_error_ = why;
    grant.error = std::move(why);
    return status;
}

ProviderStatus GuestProvider::allocate(const Request& request, SgSink& sg, Grant& grant) {
    auto block = std::make_unique<Block>();
    block->info.queue_id = request.queue_id;
    block->info.usage = request.usage;
    block->info.length = request.length;
    {
        std::lock_guard lock(mu_);
        auto owner = queue_owner_.find(request.queue_id);
        if (owner != queue_owner_.end()) {
            block->guest_id = owner->second;
            block->memory = guests_.at(owner->second);  // assign_queue checked it; remove_guest unassigns
        }
    }
    if (block->memory != nullptr) {
        auto range = block->memory->carve(request.length);
        if (!range)
            return refuse(ProviderStatus::Resources, grant,
                          "queue " + std::to_string(request.queue_id) + ": " + range.error().message());
        block->offset = range->offset;
        block->carved_length = range->length;
        block->info.guest_offset = range->offset;
        grant.virtual_address = range->address;
        // One range of guest memory: one element, whether CONTIGUOUS was asked or not.
        sg.add(range->physical, request.length);
    } else {
        auto b = arena_->allocate(request.length);
        if (!b) return refuse(ProviderStatus::Resources, grant, "host memory: " + b.error().message());
        block->offset = b->offset;
        block->carved_length = b->length;
        grant.virtual_address = b->address;
        sg.add(reinterpret_cast<uintptr_t>(b->address), request.length);  // IOVA = VA, as the default provider
    }
    const uint64_t token = reinterpret_cast<uintptr_t>(block.get());
    grant.token = token;
    std::lock_guard lock(mu_);
    if (block->memory != nullptr) ++guest_blocks_;
    blocks_.emplace(token, std::move(block));
    return ProviderStatus::Success;
}

void GuestProvider::committed(uint64_t token, void* shared_memory_handle) {
    GuestBlock info;
    uint32_t guest_id;
    {
        std::lock_guard lock(mu_);
        auto it = blocks_.find(token);
        if (it == blocks_.end()) return;
        Block& b = *it->second;
        b.info.handle = reinterpret_cast<uintptr_t>(shared_memory_handle);
        if (b.memory == nullptr) return;
        info = b.info;
        guest_id = b.guest_id;
    }
    if (listener_ != nullptr) listener_->block_added(guest_id, info);
}

void GuestProvider::free(uint64_t token) {
    std::unique_ptr<Block> block;
    {
        std::lock_guard lock(mu_);
        auto it = blocks_.find(token);
        if (it == blocks_.end()) {
            refused_frees_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        block = std::move(it->second);
        blocks_.erase(it);
        if (block->memory != nullptr) --guest_blocks_;
    }
    if (block->memory == nullptr) {
        if (!arena_->free(block->offset, block->carved_length)) refused_frees_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // Tell the guest first: it must stop reading the block before its pages
    // can be carved for anything else.
    if (listener_ != nullptr && block->info.handle != 0) listener_->block_removed(block->guest_id, block->info);
    if (!block->memory->release(block->offset, block->carved_length))
        refused_frees_.fetch_add(1, std::memory_order_relaxed);
}

void GuestProvider::detach_queue(uint32_t queue_id) { unassign_queue(queue_id); }

std::string GuestProvider::describe() const {
    const GuestProviderStats s = stats();
    return "guest provider: " + std::to_string(s.guests) + " guests, " + std::to_string(s.assigned_queues) +
           " queues assigned, " + std::to_string(s.guest_blocks) + " blocks in guest memory, " +
           std::to_string(s.host_blocks) + " in host memory";
}

GuestProviderStats GuestProvider::stats() const {
    std::lock_guard lock(mu_);
    GuestProviderStats s;
    s.guests = guests_.size();
    s.assigned_queues = queue_owner_.size();
    s.guest_blocks = guest_blocks_;
    s.host_blocks = blocks_.size() - guest_blocks_;
    s.refused_frees = refused_frees_.load(std::memory_order_relaxed);
    return s;
}

std::string GuestProvider::last_error() const {
    std::lock_guard lock(mu_);
    return last_error_;
}

}  // namespace ndisshm::providers
