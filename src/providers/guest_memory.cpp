#include "providers/guest_memory.hpp"

#include <cerrno>

#include "os/fd_checks.hpp"

namespace ndisshm::providers {
namespace {

Error refused(const std::string& name, int err, std::string why) {
    return Error{"guest memory of '" + name + "'", err, std::move(why)};
}

std::string mib(uint64_t bytes) {
    return std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 20) + " MiB)";
}

}  // namespace

Result<std::shared_ptr<GuestMemory>> GuestMemory::adopt(os::UniqueFd fd, uint64_t size, uint64_t guest_physical_base,
                                                        const GuestMemoryLimits& limits, const std::string& name) {
    const uint64_t page = os::page_size();
    if (size < limits.min_bytes)
        return refused(name, ERANGE, "region too small: " + mib(size) + ", the host needs at least " + mib(limits.min_bytes));
    if (size > limits.max_bytes)
        return refused(name, ERANGE, "region too large: " + mib(size) + ", the host takes at most " + mib(limits.max_bytes));
    if (size % page != 0)
        return refused(name, EINVAL, "size " + std::to_string(size) + " is not a multiple of the page size " +
                                         std::to_string(page));
    if (guest_physical_base % page != 0 || guest_physical_base + size < guest_physical_base)
        return refused(name, EINVAL, "guest physical base " + std::to_string(guest_physical_base) +
                                         " is not page aligned or base + size overflows");
    auto facts = os::inspect_memory_fd(fd.get());
    if (!facts) return refused(name, facts.error().err, "cannot inspect the fd: " + facts.error().message());
    if (!facts->memfd)
        return refused(name, EINVAL, "fd is not a memfd (it is '" + facts->name + "'): guest memory must be a memfd");
    if (facts->write_sealed)
        return refused(name, EPERM, "memfd is sealed against writing: the host cannot write packets into it");
    if (!facts->shrink_sealed) {
        if (facts->seals_locked)
            return refused(name, EPERM, "memfd not sealed against shrinking (F_SEAL_SHRINK), and F_SEAL_SEAL "
                                        "forbids the host to add that seal");
        if (auto s = os::seal_against_shrinking(fd.get()); !s)
            return refused(name, EPERM, "memfd not sealed against shrinking, and sealing it failed: " + s.error().message());
    }
    // Read the size only now: from the seal on it can grow but never shrink,
    // so what we check is a floor for as long as we keep the mapping.
    auto sealed = os::inspect_memory_fd(fd.get());
    if (!sealed) return refused(name, sealed.error().err, "cannot inspect the fd: " + sealed.error().message());
    if (!sealed->shrink_sealed) return refused(name, EPERM, "memfd not sealed against shrinking after sealing it");
    if (sealed->size != size)
        return refused(name, EINVAL, "size mismatch: SET_MEMORY says " + std::to_string(size) + " bytes, the memfd has " +
                                         std::to_string(sealed->size));
    auto base = os::map_shared(fd.get(), size);  // PROT_READ | PROT_WRITE, MAP_SHARED: never executable
    if (!base) return refused(name, base.error().err, "cannot map the memfd: " + base.error().message());
    return std::shared_ptr<GuestMemory>(
        new GuestMemory(std::move(fd), static_cast<std::byte*>(*base), size, guest_physical_base, name));
}

GuestMemory::GuestMemory(os::UniqueFd fd, std::byte* base, uint64_t size, uint64_t guest_physical_base,
                         std::string name)
    : fd_(std::move(fd)),
      base_(base),
      size_(size),
      guest_physical_base_(guest_physical_base),
      page_(os::page_size()),
      name_(std::move(name)),
      pages_(size / page_) {}

GuestMemory::~GuestMemory() { os::unmap(base_, size_); }

Result<GuestRange> GuestMemory::carve(uint64_t bytes) {
    if (bytes == 0) return Error{"carve in guest memory of '" + name_ + "'", EINVAL, "zero bytes"};
    const uint64_t pages = bytes / page_ + (bytes % page_ != 0 ? 1 : 0);
    std::optional<memory::PageAllocator::Range> r;
    {
        std::lock_guard lock(mu_);
        r = pages_.allocate(pages);
    }
    if (!r)
        return Error{"carve " + std::to_string(bytes) + " bytes in guest memory of '" + name_ + "'", ENOMEM,
                     "no free range that large (" + std::to_string(bytes_in_use()) + " of " + std::to_string(size_) +
                         " bytes in use)"};
    const uint64_t offset = r->first_page * page_;
    return GuestRange{offset, r->pages * page_, base_ + offset, guest_physical_base_ + offset};
}

bool GuestMemory::release(uint64_t offset, uint64_t length) {
    if (offset % page_ != 0 || length % page_ != 0 || length == 0 || !contains(offset, length)) return false;
    std::lock_guard lock(mu_);
    return pages_.free(offset / page_, length / page_);
}

uint64_t GuestMemory::bytes_in_use() const {
    std::lock_guard lock(mu_);
    return pages_.pages_in_use() * page_;
}

uint64_t GuestMemory::ranges_in_use() const {
    std::lock_guard lock(mu_);
    return pages_.blocks_in_use();
}

}  // namespace ndisshm::providers
