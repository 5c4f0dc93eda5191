#include "providers/address_mode.hpp"

#include <algorithm>
#include <cerrno>
#include <vector>

#include "os/pagemap.hpp"

namespace ndisshm::providers {
namespace {

constexpr const char* kNeedsCapability =
    "physical address mode needs CAP_SYS_ADMIN to read /proc/self/pagemap";

SgResult failure(ProviderStatus status, std::string why) {
    return SgResult{status, std::move(why), 0};
}

// What a pagemap error means to the caller: hidden frame numbers are a configuration this process
// cannot serve, the kernel short of memory (or of fds) is NDIS_STATUS_RESOURCES as anywhere else,
// anything else is the OS failing.
SgResult pagemap_failure(const Error& e) {
    if (e.err == EPERM)
        return failure(ProviderStatus::InvalidParameter,
                       std::string(kNeedsCapability) + " (" + e.message() + ")");
    const bool short_of_memory = e.err == ENOMEM || e.err == EAGAIN || e.err == EMFILE || e.err == ENFILE;
    return failure(short_of_memory ? ProviderStatus::Resources : ProviderStatus::Failure,
                   "physical address mode: " + e.message());
}

struct Run {
    uint64_t address;  // physical
    uint64_t length;
};

// The block's physically contiguous runs, in order, each as long as it can be: a page whose frame
// follows the previous page's extends the run. Pagemap is read in chunks so that a block of any size
// needs one small buffer, not one entry per page.
Result<std::vector<Run>> physical_runs(const SgBlock& block) {
    auto pagemap = os::Pagemap::open();
    if (!pagemap) return pagemap.error();
    const uint64_t page = os::pagemap_page_bytes();
    const uint64_t start = reinterpret_cast<uintptr_t>(block.address);
    const uint64_t end = start + block.length;
    const uint64_t first_page = start / page * page;
    const uint64_t pages = (end - first_page + page - 1) / page;

    constexpr uint64_t kChunk = 512;  // 4 KiB of entries
    uint64_t pfns[kChunk];
    std::vector<Run> runs;
    uint64_t previous_pfn = 0;
    for (uint64_t done = 0; done < pages;) {
        const uint64_t n = std::min(kChunk, pages - done);
        const uint64_t chunk_va = first_page + done * page;
        if (auto s = pagemap->frames(reinterpret_cast<const void*>(chunk_va), n, pfns); !s) return s.error();
        for (uint64_t i = 0; i < n; ++i) {
            const uint64_t va = chunk_va + i * page;
            const uint64_t lo = std::max(va, start), hi = std::min(va + page, end);
            // Only the first page can start mid-page, and a run only continues past a page's end, so
            // extending by [lo, hi) always lands exactly after the run's last byte.
            if (!runs.empty() && pfns[i] == previous_pfn + 1)
                runs.back().length += hi - lo;
            else
                runs.push_back(Run{pfns[i] * page + (lo - va), hi - lo});
            previous_pfn = pfns[i];
        }
        done += n;
    }
    return runs;
}

}  // namespace

Result<SgDescriber> SgDescriber::create(uint32_t mode, uint64_t iova_base) {
    if (mode != kIova && mode != kPhysical && mode != kArenaOffset) {
        return Error{
            "address mode", EINVAL,
            "unknown address mode " + std::to_string(mode) + " (0 IOVA, 1 physical, 2 arena offset)"};
    }
    if (mode == kPhysical) {
        // Only EPERM is the missing capability; anything else is the kernel refusing the probe.
        if (auto s = os::check_physical_frames_readable(); !s)
            return Error{"address mode", s.error().err,
                         (s.error().err == EPERM ? std::string(kNeedsCapability) : "physical address mode") + " (" +
                             s.error().message() + ")"};
    }
    return SgDescriber(mode, iova_base);
}

SgResult SgDescriber::describe(const SgBlock& block, bool contiguous, SgSink& sink) const {
    if (block.length == 0)
        return failure(ProviderStatus::InvalidParameter, "an SG list cannot describe 0 bytes");
    switch (mode_) {
        case kIova: {
            const uint64_t va = reinterpret_cast<uintptr_t>(block.address);
            sink.add(iova_base_ != 0 ? iova_base_ + block.arena_offset : va, block.length);
            return SgResult{ProviderStatus::Success, {}, 1};
        }
        case kArenaOffset:
            sink.add(block.arena_offset, block.length);
            return SgResult{ProviderStatus::Success, {}, 1};
        case kPhysical:
            return describe_physical(block, contiguous, sink);
        default:  // create() admits no other mode
            return failure(ProviderStatus::InvalidParameter, "unknown address mode " + std::to_string(mode_));
    }
}

SgResult SgDescriber::describe_physical(const SgBlock& block, bool contiguous, SgSink& sink) const {
    // Locking first both faults every page in (mlock guarantees residence) and keeps the frames from
    // being swapped out, so the frame numbers read next stay true until release().
    if (auto s = os::lock_pages(block.address, block.length); !s) {
        const int e = s.error().err;
        const bool limit = e == ENOMEM || e == EAGAIN || e == EPERM;
        return failure(limit ? ProviderStatus::Resources : ProviderStatus::Failure,
                       "physical address mode: cannot lock the block's pages: " + s.error().message());
    }
    auto runs = physical_runs(block);
    if (!runs) {
        release(block);
        return pagemap_failure(runs.error());
    }
    if (contiguous && runs->size() > 1) {
        release(block);
        return failure(ProviderStatus::Resources,
                       "CONTIGUOUS needs huge pages in physical mode: the block spans " +
                           std::to_string(runs->size()) + " physical runs");
    }
    for (const Run& r : *runs) sink.add(r.address, r.length);
    return SgResult{ProviderStatus::Success, {}, static_cast<uint32_t>(runs->size())};
}

void SgDescriber::release(const SgBlock& block) const {
    // munlock fails only for an unmapped range (ENOMEM), which for a live arena block means the
    // caller broke the contract; there is nothing to undo then, so there is nothing to report.
    if (mode_ == kPhysical) (void)os::unlock_pages(block.address, block.length);
}

}  // namespace ndisshm::providers
