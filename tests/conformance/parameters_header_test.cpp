// The parameter checks of NdisAllocateSharedMemory (spec section 3, ndis_shm.h): every malformed call is
// refused with the documented status, one violation, and nothing allocated, counted or handed to the
// provider. (The constants themselves: constants_test.cpp.)
#include <sys/mman.h>
#include <unistd.h>

#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

constexpr ULONG kMaxBlock = 1u << 20;

class ParametersHeader : public NdisTest {
protected:
    void configure(ndisshm_runtime_config& c) override { c.max_block_bytes = kMaxBlock; }
    void SetUp() override {
        NdisTest::SetUp();
        provider_ = &provide(adapter_);
    }

    // Calls NdisAllocateSharedMemory(adapter_, p, out) and checks that it was refused with `status` and
    // exactly one violation of `kind`, and that nothing reached the provider or the books.
    void expect_refused(PNDIS_SHARED_MEMORY_PARAMETERS p, PNDIS_HANDLE out, NDIS_STATUS status,
                        ndisshm_violation_kind kind) {
        log_.clear();
        const auto before = stats(adapter_);
        EXPECT_EQ(NdisAllocateSharedMemory(adapter_, p, out), status) << ndisshm_status_name(status);
        const Violation v = only_violation(log_, kind, "NdisAllocateSharedMemory");
        EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
        EXPECT_EQ(v.adapter, adapter_);
        const auto after = stats(adapter_);
        EXPECT_EQ(after.total.blocks, before.total.blocks);
        EXPECT_EQ(after.total.allocations, before.total.allocations);
        EXPECT_EQ(after.total.failures, before.total.failures + 1);
        EXPECT_TRUE(provider_->alloc_calls().empty());
    }

    // Calls NdisAllocateSharedMemory with one field changed by `change` and checks that it succeeded
    // as on Windows, with exactly one `lenient` finding whose message names `field`, the provider
    // called, and the block counted and freed.
    template <class Change>
    void expect_lenient(Change change, const char* field) {
        log_.clear();
        auto sg = SgBuffer::for_elements(1);
        auto p = make_params(PAGE_SIZE, sg);
        change(p);
        const size_t calls = provider_->alloc_calls().size();
        NDIS_HANDLE h = nullptr;
        ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
        const Violation v = only_violation(log_, NDISSHM_VIOLATION_LENIENT, "NdisAllocateSharedMemory");
        EXPECT_THAT(v.message, testing::HasSubstr(field));
        EXPECT_THAT(v.message, testing::HasSubstr("as Windows does"));
        EXPECT_EQ(provider_->alloc_calls().size(), calls + 1);
        EXPECT_EQ(stats(adapter_).total.blocks, 1u);
        NdisFreeSharedMemory(adapter_, h);
        EXPECT_EQ(stats(adapter_).total.blocks, 0u);
    }

    TestProvider* provider_ = nullptr;
};

TEST_F(ParametersHeader, NullParametersIsInvalidParameter) {
    NDIS_HANDLE h = nullptr;
    expect_refused(nullptr, &h, NDIS_STATUS_INVALID_PARAMETER, NDISSHM_VIOLATION_BAD_PARAMETERS);
}

TEST_F(ParametersHeader, NullAllocationHandlePointerIsInvalidParameter) {
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(PAGE_SIZE, sg);
    expect_refused(&p, nullptr, NDIS_STATUS_INVALID_PARAMETER, NDISSHM_VIOLATION_BAD_PARAMETERS);
}

TEST_F(ParametersHeader, NullSgBufferIsInvalidParameter) {
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(PAGE_SIZE, sg);
    p.SGListBuffer = nullptr;
    NDIS_HANDLE h = nullptr;
    expect_refused(&p, &h, NDIS_STATUS_INVALID_PARAMETER, NDISSHM_VIOLATION_BAD_PARAMETERS);
}

// ndis.sys does not check the Header (spec section 7): any Type, Revision or
// Size, zeros included, is accepted, and the verifier says so (a finding of
// its own kind, `lenient`) so a developer still learns of it.
TEST_F(ParametersHeader, HeaderIsNotCheckedAsOnWindowsButTheVerifierSaysSo) {
    const struct {
        UCHAR type, revision;
        USHORT size;
    } cases[] = {{0, 0, 0},
                 {0x81, 1, 0x40},
                 {NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, 1, 0x40},
                 {NDIS_OBJECT_TYPE_DEFAULT, 3, 0x48},
                 {NDIS_OBJECT_TYPE_DEFAULT, 1, 0x3F},
                 {NDIS_OBJECT_TYPE_DEFAULT, 2, 0x43}};
    for (auto c : cases) {
        SCOPED_TRACE(testing::Message() << "Type " << int(c.type) << " Revision " << int(c.revision) << " Size "
                                        << c.size);
        expect_lenient([&](NDIS_SHARED_MEMORY_PARAMETERS& p) {
            p.Header.Type = c.type;
            p.Header.Revision = c.revision;
            p.Header.Size = c.size;
        }, "Header.");
    }
}

TEST_F(ParametersHeader, SizeAtOrAboveItsRevisionIsAccepted) {
    const std::pair<UCHAR, USHORT> cases[] = {
        {1, 0x40}, {1, 0x48}, {2, 0x44}, {2, sizeof(NDIS_SHARED_MEMORY_PARAMETERS)}};
    for (auto [revision, size] : cases) {
        SCOPED_TRACE(testing::Message() << "Revision " << int(revision) << " Size " << size);
        auto sg = SgBuffer::for_elements(1);
        auto p = make_params(PAGE_SIZE, sg);
        p.Header.Revision = revision;
        p.Header.Size = size;
        NDIS_HANDLE h = nullptr;
        ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
        NdisFreeSharedMemory(adapter_, h);
    }
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(ParametersHeader, UnknownFlagBitsAreIgnoredAsOnWindows) {
    for (ULONG flags : {0x2u, 0x80000000u}) {
        SCOPED_TRACE(testing::Message() << "Flags " << flags);
        expect_lenient([&](NDIS_SHARED_MEMORY_PARAMETERS& p) { p.Flags = flags; }, "Flags");
    }
    // CONTIGUOUS among them is still read: one element.
    expect_lenient([&](NDIS_SHARED_MEMORY_PARAMETERS& p) { p.Flags = 0x3u; }, "Flags");
    EXPECT_EQ(provider_->alloc_calls().back().params.Flags, 0x3u) << "the provider gets Flags as they are";
}

// Usage is stored as the raw 32 bits a C caller wrote (memcpy: a C++ enum may not hold them all).
void set_raw_usage(NDIS_SHARED_MEMORY_PARAMETERS& p, uint32_t raw) {
    std::memcpy(&p.Usage, &raw, sizeof(raw));
}

TEST_F(ParametersHeader, UnknownUsageReachesTheProviderAsItIs) {
    for (uint32_t usage : {10u, 11u, 15u}) {
        SCOPED_TRACE(testing::Message() << "Usage " << usage);
        expect_lenient([&](NDIS_SHARED_MEMORY_PARAMETERS& p) { set_raw_usage(p, usage); }, "Usage");
        uint32_t seen = 0;
        std::memcpy(&seen, &provider_->alloc_calls().back().params.Usage, sizeof(seen));
        EXPECT_EQ(seen, usage);
    }
}

// A C driver may store any 32-bit value in Usage. Reading it must not itself be undefined behaviour
// (reading a value outside 0..15 through the C++ enum type is; UBSan stops the process), nor may it
// index the books out of range. Run in a child process, so that such a stop fails this test only.
TEST_F(ParametersHeader, UsageWithHighBitsSetIsAcceptedWithoutUndefinedBehaviour) {
    const auto scenario = [this] {
        for (uint32_t usage : {16u, 0x80000000u, 0xFFFFFFFFu}) {
            auto sg = SgBuffer::for_elements(1);
            auto p = make_params(PAGE_SIZE, sg);
            set_raw_usage(p, usage);
            NDIS_HANDLE h = nullptr;
            if (NdisAllocateSharedMemory(adapter_, &p, &h) != NDIS_STATUS_SUCCESS) std::_Exit(2);
            NdisFreeSharedMemory(adapter_, h);
        }
        if (log_.of(NDISSHM_VIOLATION_LENIENT).size() != 3) std::_Exit(3);
        const auto s = stats(adapter_);
        if (s.total.allocations != 3 || s.by_usage[NdisSharedMemoryUsageUndefined].allocations != 3) std::_Exit(4);
        std::_Exit(0);
    };
    EXPECT_EXIT(scenario(), testing::ExitedWithCode(0), "");
}

TEST_F(ParametersHeader, EveryDefinedUsageIsAccepted) {
    for (int usage = NdisSharedMemoryUsageUndefined; usage < NdisSharedMemoryUsageMax; ++usage) {
        Alloc a = allocate(adapter_, PAGE_SIZE, 0, static_cast<NDIS_SHARED_MEMORY_USAGE>(usage));
        ASSERT_TRUE(a.ok()) << "usage " << usage << ": " << ndisshm_status_name(a.status);
        NdisFreeSharedMemory(adapter_, a.handle);
    }
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(ParametersHeader, ZeroLengthIsInvalidLength) {
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(0, sg);
    NDIS_HANDLE h = nullptr;
    expect_refused(&p, &h, NDIS_STATUS_INVALID_LENGTH, NDISSHM_VIOLATION_BAD_LENGTH);
}

TEST_F(ParametersHeader, LengthAboveTheMaximumIsInvalidLength) {
    for (ULONG length : {kMaxBlock + 1, 0xFFFFFFFFu}) {
        SCOPED_TRACE(testing::Message() << "Length " << length);
        auto sg = SgBuffer::for_elements(1);
        auto p = make_params(length, sg);
        NDIS_HANDLE h = nullptr;
        expect_refused(&p, &h, NDIS_STATUS_INVALID_LENGTH, NDISSHM_VIOLATION_BAD_LENGTH);
    }
    Alloc at_max = allocate(adapter_, kMaxBlock);
    EXPECT_TRUE(at_max.ok()) << ndisshm_status_name(at_max.status);
}

TEST_F(ParametersHeader, UnknownQueueIsInvalidParameter) {
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(PAGE_SIZE, sg, 5);
    NDIS_HANDLE h = nullptr;
    expect_refused(&p, &h, NDIS_STATUS_INVALID_PARAMETER, NDISSHM_VIOLATION_BAD_PARAMETERS);

    ASSERT_EQ(ndisshm_queue_create(adapter_, 5), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
    NdisFreeSharedMemory(adapter_, h);
    ASSERT_EQ(ndisshm_queue_free(adapter_, 5), NDIS_STATUS_SUCCESS);
    log_.clear();
    EXPECT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_BAD_PARAMETERS).size(), 1u);
}

TEST_F(ParametersHeader, PreferredNodeAboveTheHighestIsAnyNode) {
    // The default provider places memory: a node this machine does not have means any node, as on Windows.
    NDIS_HANDLE eth1 = new_adapter("eth1");
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(PAGE_SIZE, sg);
    p.PreferredNode = 4095;
    NDIS_HANDLE h = nullptr;
    ASSERT_EQ(NdisAllocateSharedMemory(eth1, &p, &h), NDIS_STATUS_SUCCESS);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_LENIENT, "NdisAllocateSharedMemory");
    EXPECT_THAT(v.message, testing::HasSubstr("PreferredNode 4095"));
    EXPECT_THAT(v.message, testing::HasSubstr("'eth1'"));
    EXPECT_EQ(stats(eth1).total.blocks, 1u);
    NdisFreeSharedMemory(eth1, h);
    log_.clear();
    for (ULONG node : {0u, MM_ANY_NODE_OK}) {
        p.PreferredNode = node;
        ASSERT_EQ(NdisAllocateSharedMemory(eth1, &p, &h), NDIS_STATUS_SUCCESS) << "node " << node;
        NdisFreeSharedMemory(eth1, h);
    }
    EXPECT_EQ(log_.size(), 0u) << "node 0 and MM_ANY_NODE_OK are no finding";
}

TEST_F(ParametersHeader, NullNdisHandleIsNotSupported) {
    global_log_.clear();
    auto sg = SgBuffer::for_elements(1);
    auto p = make_params(PAGE_SIZE, sg);
    NDIS_HANDLE h = nullptr;
    EXPECT_EQ(NdisAllocateSharedMemory(nullptr, &p, &h), NDIS_STATUS_NOT_SUPPORTED);
    only_violation(global_log_, NDISSHM_VIOLATION_BAD_HANDLE, "NdisAllocateSharedMemory");
    EXPECT_TRUE(provider_->alloc_calls().empty());
}

TEST_F(ParametersHeader, NdisHandleThatIsNoLiveAdapterIsInvalidParameter) {
    NDIS_HANDLE binding = new_binding(adapter_, "filter");
    NDIS_HANDLE gone = new_adapter("gone");
    ndisshm_adapter_destroy(gone);
    int on_stack = 0;
    for (NDIS_HANDLE bad : {NDIS_HANDLE(&on_stack), reinterpret_cast<NDIS_HANDLE>(0x1234), binding, gone}) {
        SCOPED_TRACE(hex(bad));
        global_log_.clear();
        auto sg = SgBuffer::for_elements(1);
        auto p = make_params(PAGE_SIZE, sg);
        NDIS_HANDLE h = nullptr;
        EXPECT_EQ(NdisAllocateSharedMemory(bad, &p, &h), NDIS_STATUS_INVALID_PARAMETER);
        const Violation v =
            only_violation(global_log_, NDISSHM_VIOLATION_BAD_HANDLE, "NdisAllocateSharedMemory");
        EXPECT_THAT(v.message, testing::HasSubstr(hex(bad)));
    }
    EXPECT_TRUE(provider_->alloc_calls().empty());
    EXPECT_EQ(stats(adapter_).total.failures, 0u) << "a call that names no adapter belongs to none";
}

// A revision-1 caller's struct ends at SGListBuffer (0x40 bytes): NDIS may neither read nor write VPortId
// or anything past it. The struct sits right before an inaccessible page, so any access past 0x40 faults.
TEST_F(ParametersHeader, Revision1CallerStructIsNeverReadOrWrittenPastItsSize) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    void* map = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(map, MAP_FAILED);
    ASSERT_EQ(::mprotect(static_cast<char*>(map) + page, page, PROT_NONE), 0);
    auto* p = reinterpret_cast<PNDIS_SHARED_MEMORY_PARAMETERS>(
        static_cast<char*>(map) + page - NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1);
    auto sg = SgBuffer::for_elements(2);
    std::memset(p, 0, NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1);
    p->Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p->Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_1;
    p->Header.Size = static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1);
    p->PreferredNode = MM_ANY_NODE_OK;
    p->Usage = NdisSharedMemoryUsageReceive;
    p->Length = 3 * PAGE_SIZE;
    p->SGListBufferLength = sg.bytes();
    p->SGListBuffer = sg.list();

    NDIS_HANDLE eth1 = new_adapter("eth1");  // default provider
    NDIS_HANDLE h = nullptr;
    ASSERT_EQ(NdisAllocateSharedMemory(eth1, p, &h), NDIS_STATUS_SUCCESS);
    EXPECT_NE(p->VirtualAddress, nullptr);
    EXPECT_EQ(p->SharedMemoryHandle, nullptr) << "NDIS's own memory";
    EXPECT_EQ(sg.list()->NumberOfElements, 1u);
    NdisFreeSharedMemory(eth1, h);

    // And through a registered provider (ours reads only Header.Size bytes of what it is given).
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, p, &h), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(provider_->alloc_calls().size(), 1u);
    EXPECT_EQ(provider_->alloc_calls()[0].params.Length, 3u * PAGE_SIZE);
    NdisFreeSharedMemory(adapter_, h);
    EXPECT_EQ(log_.size(), 0u);
    ::munmap(map, 2 * page);
}

TEST_F(ParametersHeader, Revision2FieldsReachTheProviderUnchanged) {
    ASSERT_EQ(ndisshm_queue_create(adapter_, 9), NDIS_STATUS_SUCCESS);
    auto sg = SgBuffer::for_elements(3);
    auto p = make_params(5000, sg, 9, NdisSharedMemoryUsageReceiveLookahead,
                         NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS);
    p.PreferredNode = 0;
    p.VPortId = 7;
    NDIS_HANDLE h = nullptr;
    ASSERT_EQ(NdisAllocateSharedMemory(adapter_, &p, &h), NDIS_STATUS_SUCCESS);
    const auto calls = provider_->alloc_calls();
    ASSERT_EQ(calls.size(), 1u);
    const auto& seen = calls[0].params;
    EXPECT_EQ(seen.Header.Type, NDIS_OBJECT_TYPE_DEFAULT);
    EXPECT_EQ(seen.Header.Revision, NDIS_SHARED_MEMORY_PARAMETERS_REVISION_2);
    EXPECT_EQ(seen.Flags, static_cast<ULONG>(NDIS_SHARED_MEM_PARAMETERS_CONTIGUOUS));
    EXPECT_EQ(seen.QueueId, 9u);
    EXPECT_EQ(seen.PreferredNode, 0u);
    EXPECT_EQ(seen.Usage, NdisSharedMemoryUsageReceiveLookahead);
    EXPECT_EQ(seen.Length, 5000u);
    EXPECT_EQ(seen.SGListBufferLength, sg.bytes());
    EXPECT_EQ(seen.SGListBuffer, sg.list()) << "the provider fills the caller's own SG buffer";
    EXPECT_EQ(seen.VPortId, 7u);
    NdisFreeSharedMemory(adapter_, h);
}

}  // namespace
}  // namespace ndisshm::test
