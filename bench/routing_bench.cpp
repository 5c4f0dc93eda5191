// What NDIS's routing costs: a pair into a registered provider that does
// nothing (it returns a fixed block, one SG element and a non-null context,
// and frees nothing), against calling that provider's two handlers directly.
// The difference is the core's work per pair: validation, provider choice,
// the check of what the provider returned, the block record and its three
// list links, the books, and the free's handle check and unlink.
//
//   routing/direct                  the two handlers through function pointers
//   routing/ndis                    NdisAllocateSharedMemory + NdisFreeSharedMemory, verifier on
//   routing/ndis_verifier_off       the same, verifier off
//   routing/ndis_long_binding_name  verifier on, the binding's name longer than
//                                   std::string's inline buffer (15 bytes)
//
// Every variant fills fresh driver-style parameters, so the two sides differ by
// the routing alone. No variant writes to the block: it is the same block for
// every caller, and two threads writing it would measure a cache line going
// back and forth between cores, not routing.
#include <memory>
#include <string>

#include "bench_support.hpp"
#include "testbed.hpp"

namespace bench {
namespace {

constexpr ULONG kLength = 4096;

alignas(4096) unsigned char g_block[kLength];
int g_provider_context;  // its address is the provider's context and every block's

NDIS_STATUS NoopAllocate(NDIS_HANDLE provider_context, PNDIS_SHARED_MEMORY_PARAMETERS p,
                         PNDIS_HANDLE block_context) {
    if (p->Length > sizeof(g_block)) return NDIS_STATUS_RESOURCES;
    if (p->SGListBufferLength < NDISSHM_SG_LIST_BYTES(1)) return NDIS_STATUS_BUFFER_TOO_SHORT;
    p->VirtualAddress = g_block;
    PSCATTER_GATHER_LIST list = p->SGListBuffer;
    list->NumberOfElements = 1;
    list->Elements[0].Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(g_block));
    list->Elements[0].Length = p->Length;
    list->Elements[0].Reserved = 0;
    *block_context = provider_context;
    return NDIS_STATUS_SUCCESS;
}

VOID NoopFree(NDIS_HANDLE /*provider_context*/, NDIS_HANDLE /*block_context*/) {}

NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS noop_characteristics() {
    NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS c;
    NdisZeroMemory(&c, sizeof(c));
    c.Header.Type = NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS;
    c.Header.Revision = NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
    c.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1;
    c.ProviderContext = &g_provider_context;
    c.AllocateSharedMemoryHandler = NoopAllocate;
    c.FreeSharedMemoryHandler = NoopFree;
    return c;
}

const NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS kNoop = noop_characteristics();

Shared<Testbed> g_bed;

struct Route {
    bool verifier;
    const char* binding_name;
};

void BM_RoutingNdis(benchmark::State& state, Route route) {
    Testbed& bed = g_bed.setup(state, key_of(state, route.binding_name, {route.verifier ? 1 : 0}), [&] {
        TestbedOptions o;
        o.verifier = route.verifier;
        o.binding_name = route.binding_name;
        o.provider = &kNoop;
        return std::make_unique<Testbed>(o);
    });
    const NDIS_HANDLE adapter = bed.adapter();
    DriverRequest req(kLength);
    req.shape().QueueId = bed.queue();  // the binding's queue: its provider serves it
    for (auto _ : state) {
        NDIS_HANDLE block = nullptr;
        PNDIS_SHARED_MEMORY_PARAMETERS p = req.fresh();
        if (NdisAllocateSharedMemory(adapter, p, &block) != NDIS_STATUS_SUCCESS) {
            state.SkipWithError("NdisAllocateSharedMemory failed");
            break;
        }
        benchmark::DoNotOptimize(p->VirtualAddress);
        NdisFreeSharedMemory(adapter, block);
    }
    state.SetItemsProcessed(state.iterations());
    fail_on_violations(state, bed);
    g_bed.teardown(state);
}

void BM_RoutingDirect(benchmark::State& state) {
    const NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS chars = kNoop;
    DriverRequest req(kLength);
    for (auto _ : state) {
        // Opaque to the compiler, so each call stays an indirect call, as NDIS makes it.
        ALLOCATE_SHARED_MEMORY_HANDLER allocate = chars.AllocateSharedMemoryHandler;
        FREE_SHARED_MEMORY_HANDLER free = chars.FreeSharedMemoryHandler;
        NDIS_HANDLE context = chars.ProviderContext;
        benchmark::DoNotOptimize(allocate);
        benchmark::DoNotOptimize(free);
        benchmark::DoNotOptimize(context);
        NDIS_HANDLE block = nullptr;
        PNDIS_SHARED_MEMORY_PARAMETERS p = req.fresh();
        if (allocate(context, p, &block) != NDIS_STATUS_SUCCESS) {
            state.SkipWithError("provider allocate failed");
            break;
        }
        benchmark::DoNotOptimize(p->VirtualAddress);
        free(context, block);
    }
    state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_RoutingDirect)->Name("routing/direct")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_RoutingNdis, on, Route{true, "noop"})
    ->Name("routing/ndis")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_RoutingNdis, off, Route{false, "noop"})
    ->Name("routing/ndis_verifier_off")
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_RoutingNdis, long_name, Route{true, "vswitch-extension-filter"})
    ->Name("routing/ndis_long_binding_name")
    ->Threads(1)
    ->UseRealTime();

}  // namespace
}  // namespace bench
