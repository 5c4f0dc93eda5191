// Fuzz target: arbitrary bytes drive a driver and a filter through the NDIS
// calls (NdisAllocateSharedMemory, NdisFreeSharedMemory,
// NdisSetOptionalHandlers, KeRaiseIrql/KeLowerIrql) and the host's (adapters,
// bindings, queues, limits), with headers, sizes, flags, usages, queue ids, SG
// buffer lengths, handles and call order all taken from the input. After every
// call the books must match ndis_model.hpp's picture; after teardown every
// provider must have had each block back exactly once (common/test_provider.hpp);
// LeakSanitizer sees whatever else was lost.
//
// Caller structures are heap buffers of exactly the size their header claims,
// so AddressSanitizer catches a read past what a revision-1 caller passed.
// Each input gets its own small runtime: inputs never share state.
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz/fuzz_support.hpp"
#include "fuzz/ndis_driver.hpp"

namespace ndisshm_fuzz {
namespace {

constexpr uint32_t kMaxBlockBytes = 1u << 20;
constexpr size_t kMaxOps = 256;
constexpr ULONG kRev1 = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1;
constexpr ULONG kRev2 = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_2;

bool header_ok(const NDIS_SHARED_MEMORY_PARAMETERS& p) {
    return p.Header.Type == NDIS_OBJECT_TYPE_DEFAULT &&
           ((p.Header.Revision == 1 && p.Header.Size >= kRev1) || (p.Header.Revision == 2 && p.Header.Size >= kRev2));
}

}  // namespace

void Driver::step() {
    switch (in_.below(12)) {
        case 0: case 1: case 2: allocate(); break;
        case 3: case 4: free_block(); break;
        case 5: adapter_op(); break;
        case 6: binding_op(); break;
        case 7: register_provider(); break;
        case 8: queue_op(); break;
        case 9: irql_op(); break;
        case 10: limit_op(); break;
        default: query(); break;
    }
    m_.check(rt_);
    for (const auto& p : m_.providers) check_provider(*p, "after a call");
}

void Driver::allocate() {
    NDIS_HANDLE h = adapter_handle();
    const int ai = adapter_index(h);
    NDIS_SHARED_MEMORY_PARAMETERS full;
    std::memset(&full, 0xCC, sizeof(full));  // outputs start as garbage: NDIS must set them
    full.Header.Type = in_.below(16) != 0 ? NDIS_OBJECT_TYPE_DEFAULT : in_.byte();
    full.Header.Revision = in_.below(16) != 0 ? static_cast<UCHAR>(1 + in_.below(2)) : in_.byte();
    full.Header.Size = static_cast<USHORT>(full.Header.Revision == 1 ? kRev1 : kRev2);
    if (in_.below(16) == 0) full.Header.Size = in_.below(0x50);
    full.Flags = in_.below(8) != 0 ? in_.below(2) : in_.take<uint32_t>();
    full.QueueId = queue_id(ai >= 0 ? ai : live_adapter());
    full.PreferredNode = in_.below(4) != 0 ? MM_ANY_NODE_OK : in_.flag() ? 0 : in_.take<uint32_t>();
    const uint32_t usage = in_.below(8) != 0 ? in_.below(NdisSharedMemoryUsageMax) : in_.take<uint32_t>();
    std::memcpy(&full.Usage, &usage, sizeof(usage));  // any 32-bit value, as a C caller may store it
    full.Length = in_.below(16) != 0 ? 1 + in_.size(kMaxBlockBytes - 1) : in_.take<uint32_t>();
    const ULONG want = in_.below(5);
    const ULONG sg_bytes = in_.below(8) != 0 ? NDISSHM_SG_LIST_BYTES(want) : in_.below(200);
    std::unique_ptr<unsigned char[]> sg(new unsigned char[sg_bytes + 1]);  // exactly sg_bytes usable
    full.SGListBufferLength = sg_bytes;
    full.SGListBuffer = in_.below(32) != 0 ? reinterpret_cast<PSCATTER_GATHER_LIST>(sg.get()) : nullptr;
    full.VPortId = in_.take<uint32_t>();
    // The caller's structure, exactly as big as its header says, but never smaller than revision 1:
    // ndis.sys does not check the Header and reads and writes revision 1's fields whatever it says
    // (spec section 7), so a smaller structure is a caller's bug on Windows too. ASan still catches a
    // read of VPortId from a structure whose header says revision 1.
    const size_t bytes = std::max<size_t>(full.Header.Size, kRev1);
    std::unique_ptr<unsigned char[]> buf(new unsigned char[bytes]);
    std::memcpy(buf.get(), &full, std::min(bytes, sizeof(full)));
    if (bytes > sizeof(full)) std::memset(buf.get() + sizeof(full), 0, bytes - sizeof(full));
    auto* p = in_.below(32) != 0 ? reinterpret_cast<PNDIS_SHARED_MEMORY_PARAMETERS>(buf.get()) : nullptr;
    NDIS_HANDLE out = reinterpret_cast<NDIS_HANDLE>(uintptr_t{0xDEAD});
    const bool out_null = in_.below(32) == 0;

    const int bi = ai >= 0 ? m_.serving(ai, full.QueueId) : -1;
    TestProvider* prov = bi >= 0 ? m_.bindings[bi].provider : nullptr;
    if (prov != nullptr) {
        const auto mode = in_.below(4) != 0
                              ? Misbehave::Honest
                              : static_cast<Misbehave>(in_.below(static_cast<uint32_t>(Misbehave::kCount)));
        const NDIS_STATUS status = in_.take<int32_t>();
        prov->misbehave(mode, status);
        prov->elements = 1 + in_.below(4);
        // Contexts unique among the live ones (n < 2^19 in kMaxOps calls), otherwise as odd as the
        // fuzzer likes: NDIS must treat them as opaque.
        const uintptr_t salt = in_.take<uint16_t>();
        prov->context_for = [salt](uintptr_t n) { return (salt << 20) ^ (n << 1) ^ 1; };
    }
    const size_t live_before = prov != nullptr ? prov->live() : 0;
    const NDIS_STATUS s = NdisAllocateSharedMemory(h, p, out_null ? nullptr : &out);
    FUZZ_CHECK(s != NDIS_STATUS_PENDING, "NdisAllocateSharedMemory returned PENDING");
    if (s != NDIS_STATUS_SUCCESS) {
        // Nothing was allocated: a context the provider handed out has gone back to it already.
        if (prov != nullptr) FUZZ_CHECK(prov->live() == live_before, "a refused allocation kept the provider's block");
        return;
    }
    FUZZ_CHECK(ai >= 0, "allocation succeeded on %p, which is no live adapter", h);
    FUZZ_CHECK(p != nullptr && !out_null, "allocation succeeded with a NULL pointer");
    FUZZ_CHECK(!verifier_ || KeGetCurrentIrql() == PASSIVE_LEVEL, "allocation succeeded above PASSIVE_LEVEL");
    NDIS_SHARED_MEMORY_PARAMETERS got;
    std::memcpy(&got, buf.get(), std::min(bytes, sizeof(got)));
    // Any Header is accepted (ndis.sys does not check it): the verifier says so, the call goes on.
    (void)header_ok(got);
    // A provider's block is named by its handle; NDIS's own memory has no SharedMemoryHandle.
    FUZZ_CHECK(out != nullptr && got.SharedMemoryHandle == (bi >= 0 ? out : nullptr), "SharedMemoryHandle %p, handle %p",
               got.SharedMemoryHandle, out);
    if (prov != nullptr)
        FUZZ_CHECK(!prov->misbehaving(), "provider misbehaved and the call succeeded");
    check_granted(ai, got, out, bi);
}

void Driver::check_granted(int ai, const NDIS_SHARED_MEMORY_PARAMETERS& p, NDIS_HANDLE handle, int bi) {
    uint32_t usage;
    std::memcpy(&usage, &p.Usage, sizeof(usage));
    FUZZ_CHECK(p.Length >= 1 && p.Length <= kMaxBlockBytes, "Length %u accepted", p.Length);
    const auto& qs = m_.adapters[ai].queues;
    auto q = qs.find(p.QueueId);
    FUZZ_CHECK(q != qs.end() && q->second.complete, "queue %u (unknown or not completed) accepted", p.QueueId);
    FUZZ_CHECK(m_.find_block(handle) == nullptr, "handle %p handed out twice", handle);
    FUZZ_CHECK(p.VirtualAddress != nullptr, "no VirtualAddress");
    const ULONG capacity = NDISSHM_SG_LIST_CAPACITY(p.SGListBufferLength);
    const ULONG n = p.SGListBuffer->NumberOfElements;
    FUZZ_CHECK(n >= 1 && n <= capacity, "%u SG elements in a buffer for %u", n, capacity);
    FUZZ_CHECK(!(p.Flags & NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS) || n == 1, "CONTIGUOUS block in %u elements", n);
    uint64_t total = 0;
    for (ULONG i = 0; i < n; ++i) total += p.SGListBuffer->Elements[i].Length;
    FUZZ_CHECK(total == p.Length, "SG elements describe %llu bytes of %u", static_cast<unsigned long long>(total),
               p.Length);
    auto* mem = static_cast<unsigned char*>(p.VirtualAddress);
    if (bi < 0) {
        // The default provider's blocks are zeroed, unless one comes back to the adapter that freed it,
        // which may get it as it left it (host.h): then only this driver's 0xEE may be there. Scribble on
        // them so a reuse would show.
        auto was = m_.freed_by.find(p.VirtualAddress);
        const bool own = was != m_.freed_by.end() && was->second == ai;
        const ULONG head = std::min<ULONG>(p.Length, 512);
        for (ULONG i = 0; i < head; ++i)
            FUZZ_CHECK(mem[i] == 0 || (own && mem[i] == 0xEE), "byte %u of a fresh block is %#x", i, mem[i]);
        FUZZ_CHECK(mem[p.Length - 1] == 0 || (own && mem[p.Length - 1] == 0xEE), "last byte of a fresh block is %#x",
                   mem[p.Length - 1]);
        std::memset(mem, 0xEE, head);
    }
    mem[p.Length - 1] = 0xEE;
    m_.blocks.push_back(ModelBlock{handle, ai, bi, p.QueueId, usage, p.Length, p.VirtualAddress});
}

void Driver::free_block() {
    NDIS_HANDLE h = adapter_handle();
    const int ai = adapter_index(h);
    NDIS_HANDLE bh = block_handle();
    const ModelBlock* mb = m_.find_block(bh);
    const bool frees = ai >= 0 && mb != nullptr && mb->adapter == ai &&
                       !(verifier_ && KeGetCurrentIrql() != PASSIVE_LEVEL);
    const uint64_t before = violations_;
    NdisFreeSharedMemory(h, bh);
    if (frees) {
        m_.drop_blocks([&](const ModelBlock& b) { return b.handle == bh; });
    } else if (ai >= 0 && verifier_ && bh != nullptr) {  // NULL: a silent no-op, as on Windows
        FUZZ_CHECK(violations_ > before, "a refused free of %p was not reported", bh);
    }
}

void Driver::create_adapter() {
    char name[12];
    std::snprintf(name, sizeof(name), "eth%u", in_.below(100));
    NDIS_HANDLE a = nullptr;
    const NDIS_STATUS s = ndisshm_adapter_create(rt_, in_.below(8) != 0 ? name : nullptr, &a);
    if (s != NDIS_STATUS_SUCCESS) return;
    FUZZ_CHECK(a != nullptr && adapter_index(a) < 0, "adapter handle %p", a);
    ModelAdapter added;
    added.handle = a;
    m_.adapters.push_back(added);
}

void Driver::adapter_op() {
    const int a = live_adapter();
    if (m_.adapters.size() < 4 && (a < 0 || in_.flag())) return create_adapter();
    if (a >= 0) destroy_adapter(a);
}

void Driver::binding_op() {
    const int b = live_binding();
    if (b >= 0 && in_.below(3) == 0) return destroy_binding(b);
    if (in_.below(8) == 0) return ndisshm_binding_destroy(garbage());  // reported, nothing else
    if (m_.bindings.size() >= 8) return;
    NDIS_HANDLE h = adapter_handle();
    const int ai = adapter_index(h);
    NDIS_HANDLE nb = nullptr;
    const NDIS_STATUS s = ndisshm_binding_create(h, in_.flag() ? "vswitch" : nullptr, &nb);
    FUZZ_CHECK((s == NDIS_STATUS_SUCCESS) == (ai >= 0), "binding_create on %p: %s", h, ndisshm_status_name(s));
    if (s == NDIS_STATUS_SUCCESS) m_.bindings.push_back(ModelBinding{nb, ai, nullptr});
}

void Driver::register_provider() {
    NDIS_HANDLE h = binding_handle();
    const int bi = binding_index(h);
    auto prov = std::make_unique<TestProvider>();
    prov->fill = 0x5A;
    NDIS_STATUS s;
    if (in_.flag()) {
        // The characteristics, as big as their header says but never smaller than revision 1 (ndis.sys
        // reads revision 1's fields whatever Size says: smaller is the caller's bug on Windows too); any
        // field may be off.
        auto c = prov->characteristics();
        if (in_.below(4) == 0) c.Header.Type = in_.byte();
        if (in_.below(4) == 0) c.Header.Revision = in_.byte();
        if (in_.below(4) == 0) c.Header.Size = in_.below(0x28);
        if (in_.below(8) == 0) c.AllocateSharedMemoryHandler = nullptr;
        if (in_.below(8) == 0) c.FreeSharedMemoryHandler = nullptr;
        const size_t bytes = std::max<size_t>(c.Header.Size, sizeof(c));
        std::unique_ptr<unsigned char[]> buf(new unsigned char[bytes]);
        std::memcpy(buf.get(), &c, std::min(bytes, sizeof(c)));
        if (bytes > sizeof(c)) std::memset(buf.get() + sizeof(c), 0, bytes - sizeof(c));
        auto* handlers = in_.below(16) != 0 ? reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(buf.get()) : nullptr;
        s = NdisSetOptionalHandlers(h, handlers);
    } else {
        auto ops = prov->ops();
        if (in_.below(8) == 0) ops.struct_size = in_.byte();
        if (in_.below(8) == 0) ops.free = nullptr;
        s = ndisshm_binding_register_provider(h, in_.below(16) != 0 ? &ops : nullptr);
    }
    if (s != NDIS_STATUS_SUCCESS) return;
    // A binding registers for its queues; the adapter's own handle for queue 0 and the rest.
    int entry = bi;
    if (bi < 0) {
        const int ai = adapter_index(h);
        FUZZ_CHECK(ai >= 0, "a provider registered through %p, which is neither a binding nor an adapter", h);
        if (m_.adapters[ai].own < 0) {
            m_.bindings.push_back(ModelBinding{nullptr, ai, nullptr, true});
            m_.adapters[ai].own = static_cast<int>(m_.bindings.size()) - 1;
        }
        entry = m_.adapters[ai].own;
    }
    FUZZ_CHECK(!verifier_ || KeGetCurrentIrql() == PASSIVE_LEVEL, "registration succeeded above PASSIVE_LEVEL");
    for (const ModelBlock& blk : m_.blocks) FUZZ_CHECK(blk.binding != entry, "re-registered with blocks outstanding");
    ModelBinding& b = m_.bindings[entry];
    b.provider = prov.get();
    m_.providers.push_back(std::move(prov));
}

void Driver::queue_op() {
    NDIS_HANDLE h = adapter_handle();
    int ai = adapter_index(h);
    const uint32_t op = in_.below(4);
    // A queue is made by the miniport (the adapter's handle) or by a binding, which then owns it.
    int owner = -1;
    NDIS_HANDLE maker = h;
    if (op <= 1) {
        if (in_.flag()) maker = binding_handle();
        // adapter_handle() gives a binding's now and then too: either way a binding that makes a queue owns it.
        owner = binding_index(maker);
        ai = owner >= 0 ? m_.bindings[owner].adapter : adapter_index(maker);
    }
    const NDIS_RECEIVE_QUEUE_ID q = queue_id(ai);
    NDIS_STATUS s;
    switch (op) {
        case 0:
            s = ndisshm_queue_create(maker, q);
            if (s == NDIS_STATUS_SUCCESS) m_.adapters[ai].queues[q] = ModelQueue{true, owner};
            break;
        case 1: {
            const ndisshm_queue_params params{sizeof(ndisshm_queue_params),
                                              in_.below(4) != 0 ? in_.below(4) : in_.take<uint32_t>(), in_.size(0)};
            s = ndisshm_queue_allocate(maker, q, in_.flag() ? &params : nullptr);
            if (s == NDIS_STATUS_SUCCESS) m_.adapters[ai].queues[q] = ModelQueue{false, owner};
            break;
        }
        case 2:
            s = ndisshm_queue_allocation_complete(h, q);
            if (s == NDIS_STATUS_SUCCESS) {
                FUZZ_CHECK(ai >= 0 && m_.adapters[ai].queues.count(q) && !m_.adapters[ai].queues[q].complete,
                           "completed");
                m_.adapters[ai].queues[q].complete = true;
            }
            break;
        default:
            s = ndisshm_queue_free(h, q);
            if (s == NDIS_STATUS_SUCCESS) {
                FUZZ_CHECK(ai >= 0 && q != 0 && m_.adapters[ai].queues.erase(q) == 1, "freed queue %u", q);
                m_.drop_blocks([&](const ModelBlock& b) { return b.adapter == ai && b.queue == q; });
            }
            break;
    }
    if (s == NDIS_STATUS_SUCCESS) FUZZ_CHECK(ai >= 0, "queue call succeeded on %p, which is no live adapter", h);
}

void Driver::irql_op() {
    const KIRQL before = KeGetCurrentIrql();
    const KIRQL level = in_.below(4) != 0 ? static_cast<KIRQL>(in_.below(3)) : in_.byte();
    if (in_.flag()) {
        KIRQL old = 0xFF;
        KeRaiseIrql(level, &old);
        FUZZ_CHECK(old == before, "KeRaiseIrql gave old IRQL %u, was %u", old, before);
        if (level >= before && level <= HIGH_LEVEL) FUZZ_CHECK(KeGetCurrentIrql() == level, "raise to %u", level);
        else FUZZ_CHECK(KeGetCurrentIrql() == before, "a refused raise (to %u) changed the IRQL", level);
    } else {
        KeLowerIrql(level);
        if (level <= before) FUZZ_CHECK(KeGetCurrentIrql() == level, "lower to %u", level);
        else FUZZ_CHECK(KeGetCurrentIrql() == before, "a lower to a higher level changed the IRQL");
    }
}

void Driver::limit_op() {
    NDIS_HANDLE h = adapter_handle();
    const uint64_t cap = in_.flag() ? 0 : in_.size(0);
    if (in_.flag()) (void)ndisshm_adapter_set_limit(h, cap);
    else (void)ndisshm_queue_set_limit(h, queue_id(adapter_index(h)), cap);
}

void Driver::query() {
    // Lookups with any handle answer or refuse; none may change a thing (check() runs next).
    NDIS_HANDLE h = adapter_handle();
    NDIS_HANDLE bh = block_handle();
    ndisshm_block_info info{};
    const NDIS_STATUS s = ndisshm_block_get_info(h, bh, in_.flag() ? &info : nullptr);
    if (s == NDIS_STATUS_SUCCESS) {
        const ModelBlock* mb = m_.find_block(bh);
        FUZZ_CHECK(mb != nullptr && m_.adapters[mb->adapter].handle == h, "info for %p, no live block of %p", bh, h);
    }
    ndisshm_adapter_stats st{};
    (void)ndisshm_adapter_get_stats(h, in_.flag() ? &st : nullptr);
    ndisshm_queue_params qp{};
    int complete = 0;
    (void)ndisshm_queue_get_params(h, queue_id(adapter_index(h)), &qp, &complete);
}

void Driver::teardown() {
    if (KeGetCurrentIrql() != PASSIVE_LEVEL) KeLowerIrql(PASSIVE_LEVEL);
    m_.check(rt_);
    for (int i = 0; i < static_cast<int>(m_.bindings.size()); ++i)
        if (m_.bindings[i].handle != nullptr && in_.flag()) destroy_binding(i);
    for (int i = 0; i < static_cast<int>(m_.adapters.size()); ++i)
        if (m_.adapters[i].handle != nullptr && in_.flag()) destroy_adapter(i);
    m_.check(rt_);
    ndisshm_runtime_destroy(rt_);
    for (const auto& p : m_.providers) {
        check_provider(*p, "after teardown");
        FUZZ_CHECK(p->live() == 0, "after teardown: %zu block(s) never freed through their provider", p->live());
        FUZZ_CHECK(p->handed_out() == p->freed(), "after teardown: handed out %llu, freed %llu",
                   static_cast<unsigned long long>(p->handed_out()), static_cast<unsigned long long>(p->freed()));
        FUZZ_CHECK(p->attached().empty(), "a provider still has %zu queue(s) attached after teardown",
                   p->attached().size());
    }
}

}  // namespace ndisshm_fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Violations are the point here: the process-wide verifier stays off stderr.
    ::setenv("NDISSHM_QUIET", "1", 1);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace ndisshm_fuzz;
    ByteReader in(data, size);
    ndisshm_runtime_config c;
    ndisshm_runtime_config_init(&c);
    c.report_to_stderr = 0;
    c.verifier = in.below(4) != 0 ? 1 : 0;  // off too: only the checks that keep the books safe remain
    c.page_mode = NDISSHM_PAGES_BASE;
    c.max_block_bytes = kMaxBlockBytes;
    c.arena_capacity_bytes = uint64_t{16} << 20;  // small enough to run out of
    c.max_blocks = 16 + in.below(64);             // and of book-keeping records
    c.address_mode = in.flag() ? NDISSHM_ADDRESS_ARENA_OFFSET : NDISSHM_ADDRESS_IOVA;
    c.iova_base = in.flag() ? uint64_t{in.take<uint32_t>()} << 12 : 0;
    if (in.below(4) == 0) c.adapter_limit_bytes = in.size(0);
    if (in.below(4) == 0) c.queue_limit_bytes = in.size(0);
    c.zero_by_release_bytes = in.flag() ? 0 : UINT64_MAX;
    ndisshm_runtime* rt = nullptr;
    const NDIS_STATUS s = ndisshm_runtime_create(&c, &rt, nullptr, 0);
    FUZZ_CHECK(s == NDIS_STATUS_SUCCESS, "runtime: %s", ndisshm_status_name(s));
    Driver d(in, rt, c.verifier != 0);
    d.create_adapter();
    for (size_t i = 0; i < kMaxOps && !in.empty(); ++i) d.step();
    d.teardown();
    return 0;
}
