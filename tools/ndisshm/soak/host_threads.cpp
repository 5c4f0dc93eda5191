#include "soak/host_threads.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "driver_request.hpp"

namespace ndisshm::cli::soak {
namespace {

constexpr uint32_t kQueueIdBase = 1000;  // above any guest queue the hub may number
constexpr uint32_t kQueueIdsPerWorker = 32;
constexpr size_t kMaxQueuesPerWorker = 4;
constexpr const char* kSoakProvider = "default";  // NDIS's own memory: no provider serves these queues

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// Index of the first byte that is not `value`, or `bytes` when all are.
size_t first_not(const unsigned char* p, size_t bytes, unsigned char value) {
    size_t i = 0;
    // Eight bytes at a time: a full scan of every block is most of the soak's work.
    uint64_t word;
    std::memset(&word, value, sizeof(word));
    for (; i + 8 <= bytes; i += 8) {
        uint64_t v;
        std::memcpy(&v, p + i, sizeof(v));
        if (v != word) break;
    }
    for (; i < bytes; ++i)
        if (p[i] != value) return i;
    return bytes;
}

}  // namespace

SoakHost::SoakHost(World& world, const SoakOptions& options, ndisshm_runtime* runtime, NDIS_HANDLE adapter,
                   ndisshm::Hub* hub)
    : world_(world), options_(options), runtime_(runtime), adapter_(adapter), hub_(hub) {
    if (hub_ != nullptr) hub_adapter_ = hub_->adapter();
}

SoakHost::~SoakHost() {
    world_.stopping = true;
    join();
}

void SoakHost::start(uint64_t seed) {
    for (uint32_t i = 0; i < options_.threads; ++i) {
        auto w = std::make_unique<Worker>();
        w->index = i;
        w->rng.seed(seed + 0x9E3779B97F4A7C15ull * (i + 1));
        workers_.push_back(std::move(w));
    }
    for (auto& w : workers_) threads_.emplace_back([this, &w] { run(*w); });
}

void SoakHost::join() {
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

void SoakHost::run(Worker& w) {
    while (!world_.stopping.load(std::memory_order_relaxed)) {
        // --ops is a bound, not a target to overshoot by a book check's interval.
        if (options_.ops != 0 && world_.counters.total_ops() >= options_.ops) {
            world_.stopping = true;
            break;
        }
        // The book check waits for no one: a thread lets it in before taking
        // its next turn (rwlocks may favour readers forever otherwise).
        if (check_wanted_.load(std::memory_order_acquire) != 0) {
            std::this_thread::yield();
            continue;
        }
        std::shared_lock lock(world_.books);
        step(w);
    }
    std::shared_lock lock(world_.books);
    release_all(w);
}

void SoakHost::step(Worker& w) {
    const uint32_t r = static_cast<uint32_t>(w.rng() % 100);
    const bool full = w.blocks.size() >= options_.max_outstanding;
    if (r < 3) {
        create_queue(w);
    } else if (r < 5) {
        free_queue(w);
    } else if (r < 52 && !full) {
        allocate(w);
    } else if (!w.blocks.empty()) {
        free_block(w, static_cast<size_t>(w.rng() % w.blocks.size()));
    } else {
        allocate(w);
    }
}

std::string SoakHost::name_of(const Block& b) const {
    return std::string(b.adapter == adapter_ ? "soak0" : "nic0") + " queue " + std::to_string(b.queue) + " " +
           ndisshm_usage_name(static_cast<NDIS_SHARED_MEMORY_USAGE>(b.usage)) + " block " +
           hex(reinterpret_cast<uintptr_t>(b.handle)) + " of " + std::to_string(b.length) + " bytes";
}

void SoakHost::allocate(Worker& w) {
    Block b;
    // Where: a queue of its own, the soak adapter's default queue, or the
    // hub adapter's default queue (NDIS's own memory: no binding owns it).
    const uint32_t where = static_cast<uint32_t>(w.rng() % 10);
    if (where < 5 && !w.queues.empty()) {
        b.adapter = adapter_;
        b.queue = w.queues[w.rng() % w.queues.size()];
    } else if (where >= 8 && hub_adapter_ != nullptr) {
        b.adapter = hub_adapter_;
    } else {
        b.adapter = adapter_;
    }
    // Sizes: mostly under a page, some whole pages, a few large.
    const uint32_t kind = static_cast<uint32_t>(w.rng() % 20);
    if (kind < 10)
        b.length = 1 + static_cast<uint32_t>(w.rng() % 4096);
    else if (kind < 17)
        b.length = 4096 * (1 + static_cast<uint32_t>(w.rng() % 16));
    else
        b.length = 1 + static_cast<uint32_t>(w.rng() % options_.max_block_bytes);
    b.length = std::min(b.length, options_.max_block_bytes);
    b.usage = static_cast<uint32_t>(w.rng() % NdisSharedMemoryUsageMax);

    // Room for one SG element more than its pages: a driver need not size it exactly.
    support::DriverRequest request(b.length, MM_ANY_NODE_OK, 1);
    request.shape().Flags = w.rng() % 8 == 0 ? NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS : 0;
    request.shape().QueueId = b.queue;
    request.shape().Usage = static_cast<NDIS_SHARED_MEMORY_USAGE>(b.usage);

    const NDIS_STATUS s = NdisAllocateSharedMemory(b.adapter, request.fresh(), &b.handle);
    const NDIS_SHARED_MEMORY_PARAMETERS& p = request.last();
    if (s != NDIS_STATUS_SUCCESS) {
        world_.failures.add(name_of(b) + ": NdisAllocateSharedMemory refused: " + ndisshm_status_name(s));
        return;
    }
    world_.counters.op(kAllocate);
    b.data = static_cast<unsigned char*>(p.VirtualAddress);
    if (b.data == nullptr) {
        world_.failures.add(name_of(b) + ": success with no VirtualAddress");
        return;  // nothing to check or free through; the teardown's leak report would show it
    }
    const std::string who = name_of(b);
    // Every queue the threads use is the miniport's own (queue 0, or one they create with the
    // adapter's handle), on soak0 and on nic0 alike: NDIS's own memory serves it, never the hub's
    // provider, which serves only the queues its binding allocated (the guests').
    check_record(b, p, kSoakProvider, who);
    std::string clash;
    bool reused = false;
    const void* freed_by = nullptr;
    if (!world_.ranges.add(reinterpret_cast<uintptr_t>(b.data), b.length, who, &clash, &reused, &freed_by))
        world_.failures.add("live blocks overlap: " + clash);
    world_.counters.check(kOverlap);
    // The default provider may give an adapter back a block that adapter freed as it was (host.h):
    // only its own bytes can be there. Every other block must be zero.
    const bool may_be_as_left = reused && freed_by == b.adapter;
    if (!may_be_as_left) {
        if (const size_t at = first_not(b.data, b.length, 0); at != b.length)
            world_.failures.add(who + " handed out not zeroed: byte " + std::to_string(at) + " is " +
                                hex(b.data[at]) + (reused ? " (memory freed with a pattern before)" : ""));
        world_.counters.check(reused ? kZeroReused : kZero);
    }
    // A pattern unique enough to this block: whoever writes into it, or gets
    // it handed out unzeroed, shows.
    b.pattern = static_cast<unsigned char>(1 + (++w.serial * 37 + w.index) % 255);
    std::memset(b.data, b.pattern, b.length);
    w.blocks.push_back(b);
    if (b.queue != 0) {
        uint64_t n = 0, bytes = 0;
        for (const auto& o : w.blocks)
            if (o.adapter == adapter_ && o.queue == b.queue) ++n, bytes += o.length;
        check_queue_books(adapter_, b.queue, n, bytes, "after an allocation");
    }
}

void SoakHost::check_record(const Block& b, const NDIS_SHARED_MEMORY_PARAMETERS& p, const char* provider,
                            const std::string& who) {
    world_.counters.check(kRecord);
    ndisshm_block_info info{};
    if (NDIS_STATUS s = ndisshm_block_get_info(b.adapter, b.handle, &info); s != NDIS_STATUS_SUCCESS) {
        world_.failures.add(who + ": no record of the block just allocated: " + ndisshm_status_name(s));
        return;
    }
    std::string bad = support::record_differences(info, b.adapter, p);
    if (info.provider == nullptr || (provider != nullptr && std::strcmp(info.provider, provider) != 0) ||
        (provider == nullptr && std::strcmp(info.provider, kSoakProvider) == 0))
        bad += std::string(" provider ") + (info.provider != nullptr ? info.provider : "(none)");
    if (!bad.empty()) world_.failures.add(who + ": the runtime's record differs:" + bad);
}

void SoakHost::free_block(Worker& w, size_t index) {
    const Block b = w.blocks[index];
    w.blocks[index] = w.blocks.back();
    w.blocks.pop_back();
    if (const size_t at = first_not(b.data, b.length, b.pattern); at != b.length)
        world_.failures.add(name_of(b) + " changed while its owner held it: byte " + std::to_string(at) +
                            " is " + hex(b.data[at]) + ", " + hex(b.pattern) + " was written");
    world_.counters.check(kPattern);
    // Out of the live set first: once freed, another thread may get these bytes.
    world_.ranges.remove(reinterpret_cast<uintptr_t>(b.data), true, b.adapter);
    NdisFreeSharedMemory(b.adapter, b.handle);
    world_.counters.op(kFree);
    if (b.queue != 0) {
        uint64_t n = 0, bytes = 0;
        for (const auto& o : w.blocks)
            if (o.adapter == adapter_ && o.queue == b.queue) ++n, bytes += o.length;
        check_queue_books(adapter_, b.queue, n, bytes, "after a free");
    }
}

void SoakHost::check_queue_books(NDIS_HANDLE adapter, uint32_t queue, uint64_t blocks, uint64_t bytes,
                                 const char* where) {
    world_.counters.check(kBooks);
    ndisshm_usage_stats s{};
    if (NDIS_STATUS st = ndisshm_queue_get_stats(adapter, queue, &s); st != NDIS_STATUS_SUCCESS) {
        world_.failures.add("queue " + std::to_string(queue) + " " + where +
                            ": ndisshm_queue_get_stats: " + ndisshm_status_name(st));
        return;
    }
    if (s.blocks != blocks || s.bytes != bytes || s.allocations - s.frees != s.blocks)
        world_.failures.add("queue " + std::to_string(queue) + " " + where + ": books say " +
                            std::to_string(s.blocks) + " blocks, " + std::to_string(s.bytes) + " bytes (" +
                            std::to_string(s.allocations) + " allocations, " + std::to_string(s.frees) +
                            " frees); its owner holds " + std::to_string(blocks) + " blocks, " +
                            std::to_string(bytes) + " bytes");
}

void SoakHost::create_queue(Worker& w) {
    if (w.queues.size() >= kMaxQueuesPerWorker) return;
    uint32_t id = 0;
    for (uint32_t tries = 0; tries < kQueueIdsPerWorker && id == 0; ++tries) {
        const uint32_t candidate =
            kQueueIdBase + w.index * kQueueIdsPerWorker + (w.next_queue++ % kQueueIdsPerWorker);
        if (std::find(w.queues.begin(), w.queues.end(), candidate) == w.queues.end()) id = candidate;
    }
    NDIS_STATUS s;
    if (w.rng() % 2 == 0) {
        s = ndisshm_queue_create(adapter_, id);
    } else {
        // The two-step VMQ life cycle, with lookahead split now and then.
        ndisshm_queue_params params{sizeof(ndisshm_queue_params), 0, 0};
        if (w.rng() % 2 == 0) params = {sizeof(ndisshm_queue_params), NDISSHM_QUEUE_LOOKAHEAD_SPLIT, 128};
        s = ndisshm_queue_allocate(adapter_, id, &params);
        if (s == NDIS_STATUS_SUCCESS) s = ndisshm_queue_allocation_complete(adapter_, id);
    }
    if (s != NDIS_STATUS_SUCCESS) {
        world_.failures.add("queue " + std::to_string(id) + ": creation refused: " + ndisshm_status_name(s));
        return;
    }
    world_.counters.op(kQueueCreate);
    w.queues.push_back(id);
    check_queue_books(adapter_, id, 0, 0, "just created");
}

void SoakHost::free_queue(Worker& w) {
    if (w.queues.empty()) return;
    const size_t qi = static_cast<size_t>(w.rng() % w.queues.size());
    const uint32_t id = w.queues[qi];
    // Its blocks first, as a driver must: a queue freed with blocks is a verifier finding.
    for (size_t i = w.blocks.size(); i-- > 0;)
        if (w.blocks[i].adapter == adapter_ && w.blocks[i].queue == id) free_block(w, i);
    if (NDIS_STATUS s = ndisshm_queue_free(adapter_, id); s != NDIS_STATUS_SUCCESS) {
        world_.failures.add("queue " + std::to_string(id) +
                            ": ndisshm_queue_free: " + ndisshm_status_name(s));
        return;
    }
    world_.counters.op(kQueueFree);
    w.queues[qi] = w.queues.back();
    w.queues.pop_back();
    // Gone from the books as well.
    ndisshm_usage_stats st{};
    world_.counters.check(kBooks);
    if (ndisshm_queue_get_stats(adapter_, id, &st) != NDIS_STATUS_INVALID_PARAMETER)
        world_.failures.add("queue " + std::to_string(id) + " still has books after ndisshm_queue_free");
}

void SoakHost::release_all(Worker& w) {
    while (!w.blocks.empty()) free_block(w, w.blocks.size() - 1);
    while (!w.queues.empty()) free_queue(w);
}

void SoakHost::swap_hub(const std::function<ndisshm::Hub*()>& restart) {
    check_wanted_.fetch_add(1, std::memory_order_acq_rel);
    std::unique_lock lock(world_.books);
    check_wanted_.fetch_sub(1, std::memory_order_acq_rel);
    for (auto& w : workers_)
        for (size_t i = w->blocks.size(); i-- > 0;)
            if (w->blocks[i].adapter == hub_adapter_) free_block(*w, i);
    hub_ = restart();
    hub_adapter_ = hub_ != nullptr ? hub_->adapter() : nullptr;
}

bool SoakHost::check_books() {
    check_wanted_.fetch_add(1, std::memory_order_acq_rel);
    std::unique_lock lock(world_.books);
    check_wanted_.fetch_sub(1, std::memory_order_acq_rel);
    world_.counters.check(kBooks);

    uint64_t blocks = 0, bytes = 0, q0_blocks = 0, q0_bytes = 0, hub_blocks = 0, hub_bytes = 0, queues = 0;
    std::map<uint32_t, std::pair<uint64_t, uint64_t>> by_queue;
    for (const auto& w : workers_) {
        queues += w->queues.size();
        for (uint32_t q : w->queues) by_queue[q];
        for (const auto& b : w->blocks) {
            if (b.adapter == adapter_) {
                ++blocks, bytes += b.length;
                if (b.queue == 0) ++q0_blocks, q0_bytes += b.length;
                auto& [n, sz] = by_queue[b.queue];
                ++n, sz += b.length;
            } else {
                ++hub_blocks, hub_bytes += b.length;
            }
        }
    }
    ndisshm_adapter_stats a{};
    if (ndisshm_adapter_get_stats(adapter_, &a) != NDIS_STATUS_SUCCESS) {
        world_.failures.add("soak0: ndisshm_adapter_get_stats failed");
    } else if (a.total.blocks != blocks || a.total.bytes != bytes ||
               a.total.allocations - a.total.frees != blocks || a.total.failures != 0 ||
               a.queues != queues + 1) {
        world_.failures.add("soak0's books say " + std::to_string(a.total.blocks) + " blocks, " +
                            std::to_string(a.total.bytes) + " bytes, " + std::to_string(a.total.allocations) +
                            " allocations - " + std::to_string(a.total.frees) + " frees, " +
                            std::to_string(a.total.failures) + " failures, " + std::to_string(a.queues) +
                            " queues; the threads hold " + std::to_string(blocks) + " blocks, " +
                            std::to_string(bytes) + " bytes, " + std::to_string(queues) +
                            " queues + the default");
    }
    if (by_queue.count(0) == 0) by_queue[0];
    for (const auto& [q, held] : by_queue)
        check_queue_books(adapter_, q, held.first, held.second, "at a book check");
    // NDIS's own memory serves soak0 and nic0's queue 0 (the hub's provider serves its guests' queues
    // only, from memory of its own).
    ndisshm_memory_stats m{};
    if (ndisshm_runtime_get_memory_stats(runtime_, &m) == NDIS_STATUS_SUCCESS && m.blocks_in_use != blocks + hub_blocks)
        world_.failures.add("the default provider has " + std::to_string(m.blocks_in_use) +
                            " blocks in use; the threads hold " + std::to_string(blocks) + " on soak0 and " +
                            std::to_string(hub_blocks) + " on nic0's queue 0");
    return hub_ == nullptr || check_hub_books(hub_blocks, hub_bytes);
}

// The hub's adapter: queue 0 holds the threads' blocks, each guest queue its
// guest's receive buffers, and the adapter's total is their sum. Guests come
// and go on the hub's thread meanwhile, so the queues are listed before and
// after the adapter's books are read, and compared only when both lists agree.
bool SoakHost::check_hub_books(uint64_t q0_blocks, uint64_t q0_bytes) {
    check_queue_books(hub_adapter_, 0, q0_blocks, q0_bytes, "(nic0's default queue) at a book check");
    auto list = [this] { return hub_->queues(); };
    auto same = [](const std::vector<ndisshm_hub_queue_info>& x,
                   const std::vector<ndisshm_hub_queue_info>& y) {
        if (x.size() != y.size()) return false;
        for (size_t i = 0; i < x.size(); ++i)
            if (x[i].queue_id != y[i].queue_id || x[i].guest_id != y[i].guest_id ||
                x[i].books.blocks != y[i].books.blocks || x[i].books.bytes != y[i].books.bytes)
                return false;
        return true;
    };
    for (int attempt = 0; attempt < 5; ++attempt) {
        const auto before = list();
        ndisshm_adapter_stats a{};
        if (ndisshm_adapter_get_stats(hub_adapter_, &a) != NDIS_STATUS_SUCCESS) {
            world_.failures.add("nic0: ndisshm_adapter_get_stats failed");
            return true;
        }
        const auto after = list();
        // A guest's queue exists on the adapter a moment before the hub lists
        // it (its blocks being allocated) and after (being freed): compared
        // only when every queue of the adapter is listed.
        if (!same(before, after) || a.queues != after.size()) continue;
        uint64_t blocks = 0, bytes = 0;
        for (const auto& q : after) blocks += q.books.blocks, bytes += q.books.bytes;
        if (a.total.blocks != blocks || a.total.bytes != bytes ||
            a.total.allocations - a.total.frees != blocks)
            world_.failures.add("nic0's books say " + std::to_string(a.total.blocks) + " blocks, " +
                                std::to_string(a.total.bytes) + " bytes, " + std::to_string(a.queues) +
                                " queues; its queues' books add up to " + std::to_string(blocks) +
                                " blocks, " + std::to_string(bytes) + " bytes over " +
                                std::to_string(after.size()) + " queues");
        return true;
    }
    return false;
}

}  // namespace ndisshm::cli::soak
