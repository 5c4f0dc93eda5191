// The C++ API in one page: a runtime, an adapter with two VMQ queues, a
// provider of our own registered through a binding, and RAII allocations.
// Exits 0 when every check holds.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <map>
#include <ndisshm/ndisshm.hpp>

namespace {

// Serves each block from aligned heap memory and remembers what it gave.
class HeapProvider final : public ndisshm::Provider {
public:
    NDIS_STATUS allocate(NDIS_SHARED_MEMORY_PARAMETERS& p, NDIS_HANDLE& context) override {
        if (NDISSHM_SG_LIST_CAPACITY(p.SGListBufferLength) < 1) return NDIS_STATUS_BUFFER_TOO_SHORT;
        size_t bytes = (p.Length + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        void* mem = std::aligned_alloc(PAGE_SIZE, bytes);
        if (mem == nullptr) return NDIS_STATUS_RESOURCES;
        std::memset(mem, 0, bytes);
        p.VirtualAddress = mem;
        p.SGListBuffer->NumberOfElements = 1;
        p.SGListBuffer->Elements[0].Address.QuadPart = static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(mem));
        p.SGListBuffer->Elements[0].Length = p.Length;
        context = mem;
        live_[mem] = p.QueueId;
        return NDIS_STATUS_SUCCESS;
    }
    void free(NDIS_HANDLE context) override {
        if (live_.erase(context) != 1) std::abort();  // a context freed twice or never given
        std::free(context);
        ++frees_;
    }
    void attach_queue(NDIS_RECEIVE_QUEUE_ID) override { ++attached_; }
    std::string describe() const override { return "heap provider (" + std::to_string(live_.size()) + " live)"; }

    std::map<void*, NDIS_RECEIVE_QUEUE_ID> live_;
    int frees_ = 0;
    int attached_ = 0;
};

int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what);
        ++failures;
    }
}

}  // namespace

int main() {
    HeapProvider provider;
    {
        ndisshm::Runtime rt;
        ndisshm::Adapter nic(rt, "nic0");
        auto vswitch = std::make_optional<ndisshm::ProviderBinding>(nic, "vswitch");
        // The switch allocates the VMQ queues, so its provider serves them (the default queue stays NDIS's).
        ndisshm::ReceiveQueue q1(nic, 1, vswitch->handle()), q2(nic, 2, vswitch->handle());
        {
            vswitch->register_provider(provider);
            expect(provider.attached_ == 2, "its existing queues attached to the new provider");
            {
                ndisshm::Allocation a(nic, {.length = 64 * 1024, .queue = 1});
                ndisshm::Allocation b(nic, {.length = 4096, .usage = NdisSharedMemoryUsageReceiveLookahead, .queue = 2});
                expect(provider.live_.size() == 2, "the registered provider served both blocks");
                expect(a.elements().size() == 1 && a.elements()[0].length == 64 * 1024, "SG list describes the block");
                std::memset(a.data(), 0xAB, a.size());
                expect(nic.stats().total.blocks == 2 && q1.stats().blocks == 1, "books count the blocks");
            }
            expect(provider.frees_ == 2 && provider.live_.empty(), "RAII freed each block through its provider");
        }
        vswitch.reset();
        // The binding is gone: its queues are the miniport's now, served by NDIS's own memory.
        ndisshm::Allocation c(nic, {.length = 8192, .queue = 2});
        expect(provider.live_.empty() && c.data() != nullptr, "default provider after the binding detached");
        expect(c.elements()[0].address == reinterpret_cast<uintptr_t>(c.data()), "default SG address is IOVA = VA");

        ndisshm::Allocation bad;
        NDIS_STATUS s = bad.try_allocate(nic, {.length = 4096, .queue = 7});
        expect(s == NDIS_STATUS_INVALID_PARAMETER && !bad, "unknown queue refused");
        expect(rt.violations(NDISSHM_VIOLATION_BAD_PARAMETERS) == 1, "and reported once");
    }
    std::printf("cxx_api: %s\n", failures == 0 ? "all checks passed" : "FAILED");
    return failures == 0 ? 0 : 1;
}
