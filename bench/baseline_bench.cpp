// What the same pairs cost without ndisshm, as yardsticks measured in the same
// run: glibc malloc/free, glibc calloc/free (zeroed memory, as an NDIS block
// is), and anonymous mmap/munmap. Same sizes, same outstanding counts, same
// one-byte-per-page touch as alloc_free_bench.cpp.
//
//   pair/malloc/bytes:B/outstanding:N/real_time/threads:T   (and pair/calloc, pair/mmap)
//   zero/memset/bytes:B/real_time/threads:1
//     the floor under any pair that zeroes its block: memset of one warm B-byte
//     buffer, over and over (the best case: a reused block is as warm as this).
//
// glibc is used with its default tunables: its mmap threshold moves up the
// first time a large mmapped chunk is freed, so from then on 2 MiB blocks come
// from the heap, reused without a page fault.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "bench_support.hpp"

namespace bench {
namespace {

enum class Source { Malloc, Calloc, Mmap };

void* get(Source s, size_t bytes) {
    switch (s) {
        case Source::Malloc: return std::malloc(bytes);
        case Source::Calloc: return std::calloc(1, bytes);
        case Source::Mmap: {
            void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            return p == MAP_FAILED ? nullptr : p;
        }
    }
    return nullptr;
}

void put(Source s, void* p, size_t bytes) {
    if (s == Source::Mmap) ::munmap(p, bytes);
    else std::free(p);
}

// Blocks held through the run, like the testbed's outstanding blocks.
class Held {
public:
    Held(Source s, size_t bytes, int64_t count) : source_(s), bytes_(bytes) {
        blocks_.reserve(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) {
            void* p = get(s, bytes);
            if (p == nullptr) die("outstanding allocation failed");
            blocks_.push_back(p);
        }
    }
    ~Held() {
        for (void* p : blocks_) put(source_, p, bytes_);
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

private:
    Source source_;
    size_t bytes_;
    std::vector<void*> blocks_;
};

Shared<Held> g_held;

void BM_BaselinePair(benchmark::State& state, Source source) {
    const auto bytes = static_cast<size_t>(state.range(0));
    const int64_t outstanding = state.range(1);
    g_held.setup(state, key_of(state, "baseline", {static_cast<int64_t>(source), state.range(0), outstanding}),
                 [&] { return std::make_unique<Held>(source, bytes, outstanding); });
    for (auto _ : state) {
        void* p = get(source, bytes);
        if (p == nullptr) {
            state.SkipWithError("allocation failed");
            break;
        }
        touch_pages(p, bytes);
        put(source, p, bytes);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
    g_held.teardown(state);
}

#define BASELINE(tag, source)                                            \
    BENCHMARK_CAPTURE(BM_BaselinePair, tag, source)                      \
        ->Name("pair/" #tag)                                             \
        ->ArgNames({"bytes", "outstanding"})                             \
        ->ArgsProduct({{4 * kKiB, 64 * kKiB, 2 * kMiB}, {0, 1000}})      \
        ->Threads(1)                                                     \
        ->Threads(2)                                                     \
        ->UseRealTime()

BASELINE(malloc, Source::Malloc);
BASELINE(calloc, Source::Calloc);
BASELINE(mmap, Source::Mmap);

void BM_Memset(benchmark::State& state) {
    const auto bytes = static_cast<size_t>(state.range(0));
    std::vector<unsigned char> buffer(bytes, 1);
    for (auto _ : state) {
        std::memset(buffer.data(), 0, bytes);
        benchmark::DoNotOptimize(buffer.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_Memset)->Name("zero/memset")->ArgName("bytes")->Arg(4 * kKiB)->Arg(64 * kKiB)->Arg(2 * kMiB)->UseRealTime();

}  // namespace
}  // namespace bench
