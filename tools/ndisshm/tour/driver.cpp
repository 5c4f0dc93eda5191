#include "tour/driver.hpp"

#include <ndisshm/host.h>

#include <algorithm>
#include <cstring>

#include "driver_request.hpp"

namespace ndisshm::cli {
namespace {

// 64-bit words carrying the block's serial in the high bits and the word's
// index in the low ones: no two blocks share a word, so overlap shows.
uint64_t pattern_word(uint64_t serial, uint64_t index) {
    return (serial << 40) ^ index ^ 0xA5A5000000ull;
}

void write_pattern(const DriverBlock& b) {
    auto* p = static_cast<unsigned char*>(b.data);
    const size_t words = b.length / 8;
    for (size_t i = 0; i < words; ++i) {
        const uint64_t w = pattern_word(b.serial, i);
        std::memcpy(p + i * 8, &w, 8);
    }
    std::memset(p + words * 8, static_cast<int>(b.serial & 0xFF), b.length - words * 8);
}

bool holds_pattern(const DriverBlock& b) {
    const auto* p = static_cast<const unsigned char*>(b.data);
    const size_t words = b.length / 8;
    for (size_t i = 0; i < words; ++i) {
        uint64_t w;
        std::memcpy(&w, p + i * 8, 8);
        if (w != pattern_word(b.serial, i)) return false;
    }
    for (size_t i = words * 8; i < b.length; ++i)
        if (p[i] != static_cast<unsigned char>(b.serial & 0xFF)) return false;
    return true;
}

std::string label(const std::string& adapter, const PlannedBlock& b) {
    return adapter + " queue " + std::to_string(b.queue) + " " + ndisshm_usage_name(b.usage) + " block of " +
           std::to_string(b.length) + " bytes";
}

}  // namespace

TourDriver::TourDriver(std::string name, NDIS_HANDLE adapter, Ledger& ledger, Scenario& checks)
    : name_(std::move(name)), adapter_(adapter), ledger_(ledger), checks_(checks) {}

NDIS_STATUS TourDriver::allocate(const PlannedBlock& want) {
    // The parameters and the SG buffer are the driver's: one element per
    // page, NumberOfElements set to that room, gone once the call returns.
    support::DriverRequest request(want.length);
    request.shape().QueueId = want.queue;
    request.shape().Usage = want.usage;
    const ULONG capacity = request.capacity();
    NDIS_HANDLE handle = nullptr;
    const NDIS_STATUS status = NdisAllocateSharedMemory(adapter_, request.fresh(), &handle);
    const NDIS_SHARED_MEMORY_PARAMETERS& p = request.last();
    if (status != NDIS_STATUS_SUCCESS) {
        ledger_.on_failure(name_, want.queue, want.usage);
        return status;
    }
    DriverBlock block;
    block.handle = handle;
    block.data = p.VirtualAddress;
    block.length = want.length;
    block.queue = want.queue;
    block.usage = want.usage;
    block.serial = ++serial_;
    check_granted(want, p, handle, capacity, block);
    if (block.data == nullptr) {
        // Nothing to write into; give the block back rather than hold it.
        NdisFreeSharedMemory(adapter_, handle);
        return NDIS_STATUS_FAILURE;
    }
    write_pattern(block);
    ledger_.on_allocate(name_, want.queue, want.usage, want.length, block.provider);
    blocks_.push_back(std::move(block));
    return status;
}

void TourDriver::check_granted(const PlannedBlock& want, const NDIS_SHARED_MEMORY_PARAMETERS& p,
                             NDIS_HANDLE handle, ULONG capacity, DriverBlock& block) {
    const std::string what = label(name_, want);
    checks_.check(handle != nullptr, what + ": NDIS_STATUS_SUCCESS with a NULL allocation handle");
    checks_.check(p.VirtualAddress != nullptr, what + ": VirtualAddress is NULL");
    const ULONG n = p.SGListBuffer->NumberOfElements;
    if (n == 0 || n > capacity) {
        checks_.fail(what + ": SG list has " + std::to_string(n) + " elements, room for " +
                     std::to_string(capacity));
        block.data = nullptr;
        return;
    }
    uint64_t described = 0;
    for (ULONG i = 0; i < n; ++i) described += p.SGListBuffer->Elements[i].Length;
    checks_.check(described >= want.length,
                  what + ": SG list describes " + std::to_string(described) + " bytes");
    // The runtime is created with iova_base 0, and the vswitch hands out
    // addresses the same way: the first element's address is the block's VA.
    const auto first = static_cast<uint64_t>(p.SGListBuffer->Elements[0].Address.QuadPart);
    checks_.check(first == reinterpret_cast<uintptr_t>(p.VirtualAddress),
                  what + ": Elements[0].Address is not the VirtualAddress (IOVA = VA)");
    if (p.VirtualAddress != nullptr) {
        const auto* bytes = static_cast<const unsigned char*>(p.VirtualAddress);
        checks_.check(std::all_of(bytes, bytes + want.length, [](unsigned char c) { return c == 0; }),
                      what + ": block was not zeroed before it was handed out");
    }
    ndisshm_block_info info{};
    if (ndisshm_block_get_info(adapter_, handle, &info) != NDIS_STATUS_SUCCESS) {
        checks_.fail(what + ": the runtime has no record of the block (ndisshm_block_get_info)");
        return;
    }
    const std::string differs = support::record_differences(info, adapter_, p);
    checks_.check(differs.empty(), what + ": the runtime's record of the block differs from what the driver got:" + differs);
    block.provider = info.provider != nullptr ? info.provider : "?";
    // A provider's block is named by its allocation handle; NDIS's own memory has no
    // SharedMemoryHandle at all (NULL, as on Windows).
    if (block.provider == "default")
        checks_.check(p.SharedMemoryHandle == nullptr, what + ": NDIS's own memory has a SharedMemoryHandle");
    else
        checks_.check(p.SharedMemoryHandle == handle, what + ": SharedMemoryHandle is not the allocation handle");
}

std::vector<NDIS_HANDLE> TourDriver::free_queue(NDIS_RECEIVE_QUEUE_ID queue) {
    std::vector<NDIS_HANDLE> freed;
    std::vector<DriverBlock> kept;
    for (auto& b : blocks_) {
        if (b.queue != queue) {
            kept.push_back(std::move(b));
            continue;
        }
        NdisFreeSharedMemory(adapter_, b.handle);
        ledger_.on_free(name_, b.queue, b.usage, b.length);
        ndisshm_block_info info{};
        checks_.check(
            ndisshm_block_get_info(adapter_, b.handle, &info) != NDIS_STATUS_SUCCESS,
            name_ + " queue " + std::to_string(queue) + ": a freed block is still in the runtime's books");
        freed.push_back(b.handle);
    }
    blocks_ = std::move(kept);
    return freed;
}

size_t TourDriver::verify_patterns() {
    for (const auto& b : blocks_)
        checks_.check(holds_pattern(b),
                      name_ + " queue " + std::to_string(b.queue) + " " + ndisshm_usage_name(b.usage) +
                          " block #" + std::to_string(b.serial) +
                          " lost its pattern: it overlaps another block or was written by another");
    return blocks_.size();
}

}  // namespace ndisshm::cli
