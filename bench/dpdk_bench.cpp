// The same pairs with DPDK 22.11 (Debian's libdpdk-dev), the allocator the
// issue measures us against: rte_memzone_reserve + rte_memzone_free, and
// rte_malloc + rte_free. Same sizes, same outstanding counts, same
// one-byte-per-page touch as alloc_free_bench.cpp.
//
//   pair/rte_memzone/bytes:B/outstanding:N/real_time/threads:T
//   pair/rte_malloc/bytes:B/outstanding:N/real_time/threads:T
//
// The EAL starts once, lazily, in the setup of the first DPDK benchmark that
// runs, this file's or memif_bench.cpp's (a filter without one never starts
// it; dpdk_eal.hpp), with
//   --no-huge --no-pci -m 1024 --no-shconf --no-telemetry -l A,B --log-level=*:error
// --no-huge: no hugetlbfs here, so the EAL's 1 GiB is anonymous memory (and
// implies legacy memory, which --in-memory refuses, hence --no-shconf).
// A,B: the first two CPUs this process may run on (two lcores). rte_eal_init
// pins its calling thread to lcore A; the benchmark thread's affinity is put
// back afterwards, or every later figure (and every thread spawned from it)
// would run on one CPU.
//
// Like-for-like notes:
// * rte_free zeroes the block (DPDK keeps its heap zeroed, so rte_zmalloc is
//   cheap), so both DPDK pairs pay for zeroing, as ndisshm and calloc do.
// * A memzone needs a unique name. Each thread writes "t<thread>.<counter>" in
//   hex by hand (no snprintf): tens of ns against microseconds per pair.
// * 2 MiB blocks are measured with 0 outstanding only: 1000 x 2 MiB is twice
//   the EAL's -m 1024 (511 fit).
// * The second thread of a threads:2 run is a non-EAL thread (lcore id
//   LCORE_ID_ANY). rte_malloc and rte_memzone_* take their locks (a spinlock
//   per heap, the memzone rwlock) from any thread; no registration is needed.
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_memzone.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "dpdk_eal.hpp"

namespace bench {
namespace {

enum class Api { Memzone, Malloc };

// "t<thread>.<counter>", both in hex, unique for the life of the process.
class ZoneNamer {
public:
    ZoneNamer() : thread_(next_thread_.fetch_add(1, std::memory_order_relaxed)) {}

    const char* next() {
        char* p = name_;
        *p++ = 't';
        p = hex(p, thread_);
        *p++ = '.';
        p = hex(p, counter_++);
        *p = '\0';
        return name_;
    }

private:
    static char* hex(char* p, uint64_t v) {
        char tmp[16];
        int n = 0;
        do {
            tmp[n++] = "0123456789abcdef"[v & 0xf];
            v >>= 4;
        } while (v != 0);
        while (n > 0) *p++ = tmp[--n];
        return p;
    }

    static inline std::atomic<uint32_t> next_thread_{0};
    uint32_t thread_;
    uint64_t counter_ = 0;
    char name_[RTE_MEMZONE_NAMESIZE];  // 32: "t" + 8 + "." + 16 hex digits + NUL at most
};
static_assert(RTE_MEMZONE_NAMESIZE >= 1 + 8 + 1 + 16 + 1);

ZoneNamer& namer() {
    thread_local ZoneNamer n;
    return n;
}

// One block either way: the memzone (to free it) or the rte_malloc pointer.
struct Block {
    const rte_memzone* zone = nullptr;
    void* addr = nullptr;
};

inline Block take(Api api, size_t bytes) {
    Block b;
    if (api == Api::Memzone) {
        b.zone = rte_memzone_reserve(namer().next(), bytes, SOCKET_ID_ANY, 0);
        if (b.zone != nullptr) b.addr = b.zone->addr;
    } else {
        b.addr = rte_malloc(nullptr, bytes, 0);
    }
    return b;
}

inline void give(Api api, const Block& b) {
    if (api == Api::Memzone) rte_memzone_free(b.zone);
    else rte_free(b.addr);
}

// Blocks held through the run, like the testbed's outstanding blocks (never touched).
class Held {
public:
    Held(Api api, size_t bytes, int64_t count) : api_(api) {
        blocks_.reserve(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) {
            Block b = take(api, bytes);
            if (b.addr == nullptr) {
                error_ = "outstanding allocation " + std::to_string(i) + " failed: " + rte_strerror(rte_errno);
                break;
            }
            blocks_.push_back(b);
        }
    }
    ~Held() {
        for (const Block& b : blocks_) give(api_, b);
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

    const std::string& error() const { return error_; }

private:
    Api api_;
    std::vector<Block> blocks_;
    std::string error_;
};

struct DpdkState {
    std::string eal_error;
    std::unique_ptr<Held> held;
};

Shared<DpdkState> g_dpdk;

void BM_DpdkPair(benchmark::State& state, Api api) {
    const auto bytes = static_cast<size_t>(state.range(0));
    const int64_t outstanding = state.range(1);
    DpdkState& s = g_dpdk.setup(state, key_of(state, "dpdk", {static_cast<int64_t>(api), state.range(0), outstanding}),
                                [&] {
                                    auto d = std::make_unique<DpdkState>();
                                    const dpdk::Eal& e = dpdk::eal();
                                    if (!e.ok) d->eal_error = e.error;
                                    else d->held = std::make_unique<Held>(api, bytes, outstanding);
                                    return d;
                                });
    std::string error = !s.eal_error.empty() ? s.eal_error : s.held->error();
    if (error.empty()) {
        for (auto _ : state) {
            const Block b = take(api, bytes);
            if (b.addr == nullptr) {
                error = std::string(api == Api::Memzone ? "rte_memzone_reserve" : "rte_malloc") +
                        " failed: " + rte_strerror(rte_errno);
                break;
            }
            touch_pages(b.addr, bytes);
            give(api, b);
        }
    }
    if (!error.empty()) state.SkipWithError(error.c_str());
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
    g_dpdk.teardown(state);
}

#define DPDK_PAIR(tag, api)                                             \
    BENCHMARK_CAPTURE(BM_DpdkPair, tag, api)                            \
        ->Name("pair/" #tag)                                            \
        ->ArgNames({"bytes", "outstanding"})                            \
        ->ArgsProduct({{4 * kKiB, 64 * kKiB}, {0, 1000}})               \
        ->Args({2 * kMiB, 0})                                           \
        ->Threads(1)                                                    \
        ->Threads(2)                                                    \
        ->UseRealTime()

DPDK_PAIR(rte_memzone, Api::Memzone);
DPDK_PAIR(rte_malloc, Api::Malloc);

}  // namespace
}  // namespace bench
