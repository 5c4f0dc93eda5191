// NdisSetOptionalHandlers (spec sections 3 and 7): how a provider registers, and what it then serves.
// A binding's provider serves the queues that binding allocated; a provider registered with the miniport
// adapter's own handle serves queue 0 and every queue no providing binding owns; anything else gets NDIS's
// own memory. ndis.sys checks the header's Type, not its Revision or Size (accepted, with a `lenient`
// finding); a handle that is none of NDIS's is NOT_SUPPORTED; a missing handler is INVALID_PARAMETER; a
// re-registration with blocks outstanding is FAILURE; a refused registration changes nothing.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

constexpr NDIS_RECEIVE_QUEUE_ID kOwned = 7;

class Registration : public NdisTest {
protected:
    void SetUp() override {
        NdisTest::SetUp();
        binding_ = new_binding(adapter_, "vswitch");
        // The binding allocates a queue (OID_RECEIVE_FILTER_ALLOCATE_QUEUE): it owns it.
        ASSERT_EQ(ndisshm_queue_create(binding_, kOwned), NDIS_STATUS_SUCCESS);
    }
    NDIS_STATUS set(NDIS_HANDLE handle, NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS* c) {
        return NdisSetOptionalHandlers(handle, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(c));
    }
    // Every queue still allocates from NDIS's own memory and `p` was never called.
    void expect_not_registered(const TestProvider& p) {
        EXPECT_EQ(stats(adapter_).has_provider, 0);
        for (NDIS_RECEIVE_QUEUE_ID q : {NDIS_RECEIVE_QUEUE_ID{0}, kOwned}) {
            Alloc a = allocate(adapter_, PAGE_SIZE, q);
            ASSERT_TRUE(a.ok());
            EXPECT_EQ(provider_of(adapter_, a.handle), "default");
            NdisFreeSharedMemory(adapter_, a.handle);
        }
        EXPECT_TRUE(p.alloc_calls().empty());
    }

    NDIS_HANDLE binding_ = nullptr;
};

TEST_F(Registration, ABindingsProviderServesTheQueuesItOwnsAndNoOther) {
    TestProvider& p = new_provider();
    auto c = p.characteristics();
    ASSERT_EQ(set(binding_, &c), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats(adapter_).has_provider, 1);
    Alloc owned = allocate(adapter_, PAGE_SIZE, kOwned);
    ASSERT_TRUE(owned.ok());
    EXPECT_EQ(provider_of(adapter_, owned.handle), "vswitch");
    EXPECT_EQ(p.alloc_calls().size(), 1u);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 8), NDIS_STATUS_SUCCESS);  // the miniport's own queue
    for (NDIS_RECEIVE_QUEUE_ID q : {NDIS_RECEIVE_QUEUE_ID{0}, NDIS_RECEIVE_QUEUE_ID{8}}) {
        Alloc a = allocate(adapter_, PAGE_SIZE, q);
        ASSERT_TRUE(a.ok());
        EXPECT_EQ(provider_of(adapter_, a.handle), "default") << "queue " << q;
        NdisFreeSharedMemory(adapter_, a.handle);
    }
    EXPECT_EQ(p.alloc_calls().size(), 1u);
    NdisFreeSharedMemory(adapter_, owned.handle);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Registration, DefaultQueueOfAnAdapterWhoseOnlyProviderIsABindingsGetsNdisMemory) {
    TestProvider& p = new_provider();
    ASSERT_EQ(p.register_on(binding_), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, NDIS_DEFAULT_RECEIVE_QUEUE_ID);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a.params.SharedMemoryHandle, nullptr) << "NDIS's own memory: SharedMemoryHandle stays NULL";
    EXPECT_NE(a.handle, nullptr) << "the allocation handle is still NDIS's record of the block";
    EXPECT_EQ(a.sg.list()->NumberOfElements, 1u) << "physically contiguous: one element";
    EXPECT_TRUE(p.alloc_calls().empty());
    NdisFreeSharedMemory(adapter_, a.handle);
}

TEST_F(Registration, MiniportAdapterHandleRegistersForTheDefaultQueueAndUnownedQueues) {
    TestProvider& own = new_provider();
    ASSERT_EQ(own.register_on(adapter_), NDIS_STATUS_SUCCESS) << "Windows accepts the miniport adapter handle";
    EXPECT_EQ(log_.size(), 0u);
    TestProvider& vswitch = new_provider();
    ASSERT_EQ(vswitch.register_on(binding_), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(ndisshm_queue_create(adapter_, 8), NDIS_STATUS_SUCCESS);
    Alloc q0 = allocate(adapter_, PAGE_SIZE, 0), q8 = allocate(adapter_, PAGE_SIZE, 8), q7 = allocate(adapter_, PAGE_SIZE, kOwned);
    ASSERT_TRUE(q0.ok() && q8.ok() && q7.ok());
    EXPECT_EQ(provider_of(adapter_, q0.handle), "miniport");
    EXPECT_EQ(provider_of(adapter_, q8.handle), "miniport");
    EXPECT_EQ(provider_of(adapter_, q7.handle), "vswitch") << "the owning binding's provider comes first";
    EXPECT_EQ(own.alloc_calls().size(), 2u);
    EXPECT_EQ(vswitch.alloc_calls().size(), 1u);
    for (Alloc* a : {&q0, &q8, &q7}) NdisFreeSharedMemory(adapter_, a->handle);
}

TEST_F(Registration, SeveralBindingsEachProvideForTheirOwnQueues) {
    NDIS_HANDLE other = new_binding(adapter_, "second");
    ASSERT_EQ(ndisshm_queue_create(other, 9), NDIS_STATUS_SUCCESS);
    TestProvider& first = new_provider();
    TestProvider& second = new_provider();
    ASSERT_EQ(first.register_on(binding_), NDIS_STATUS_SUCCESS);
    ASSERT_EQ(second.register_on(other), NDIS_STATUS_SUCCESS) << "a second binding's provider is no intruder";
    Alloc a = allocate(adapter_, PAGE_SIZE, kOwned), b = allocate(adapter_, PAGE_SIZE, 9);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(provider_of(adapter_, a.handle), "vswitch");
    EXPECT_EQ(provider_of(adapter_, b.handle), "second");
    NdisFreeSharedMemory(adapter_, a.handle);
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(first.free_calls().size(), 1u);
    EXPECT_EQ(second.free_calls().size(), 1u);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Registration, BadHeaderTypeOnSetOptionalHandlersIsInvalidParameter) {
    TestProvider& p = new_provider();
    const USHORT good_size = static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1);
    for (UCHAR type : {UCHAR{NDIS_OBJECT_TYPE_DEFAULT}, UCHAR{0xB1}, UCHAR{0}}) {
        SCOPED_TRACE(int(type));
        log_.clear();
        auto c = p.characteristics();
        c.Header = {type, 1, good_size};
        EXPECT_EQ(set(binding_, &c), NDIS_STATUS_INVALID_PARAMETER);
        const Violation v = only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
        EXPECT_THAT(v.message, testing::HasSubstr("'vswitch'"));
        EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
        EXPECT_EQ(v.handle, binding_);
    }
    log_.clear();
    EXPECT_EQ(NdisSetOptionalHandlers(binding_, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
    expect_not_registered(p);
}

TEST_F(Registration, RevisionAndSizeAreNotCheckedAsOnWindows) {
    struct Case {
        const char* what;
        UCHAR revision;
        USHORT size;
    };
    const Case cases[] = {{"Revision 0 Size 0", 0, 0}, {"Revision 2", 2, 0x20}, {"Size 0x1F", 1, 0x1F}, {"Size 4", 1, 4}};
    for (const Case& k : cases) {
        SCOPED_TRACE(k.what);
        NDIS_HANDLE b = new_binding(adapter_, k.what);
        TestProvider& p = new_provider();
        log_.clear();
        auto c = p.characteristics();
        c.Header.Revision = k.revision;
        c.Header.Size = k.size;
        EXPECT_EQ(set(b, &c), NDIS_STATUS_SUCCESS);
        const Violation v = only_violation(log_, NDISSHM_VIOLATION_LENIENT, "NdisSetOptionalHandlers");
        EXPECT_THAT(v.message, testing::HasSubstr("as Windows does"));
    }
}

TEST_F(Registration, LargerCharacteristicsThanRevision1AreAccepted) {
    TestProvider& p = new_provider();
    struct {
        NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS c;
        uint64_t later_revision_field;
    } bigger{p.characteristics(), 0};
    bigger.c.Header.Size = sizeof(bigger);
    EXPECT_EQ(set(binding_, &bigger.c), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats(adapter_).has_provider, 1);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Registration, ReservedFlagsDoNotPreventRegistration) {
    TestProvider& p = new_provider();
    auto c = p.characteristics();
    c.Flags = NDIS_SHARED_MEMORY_PROVIDER_CHAR_SUPPORTS_PF_VPORTS;
    EXPECT_EQ(set(binding_, &c), NDIS_STATUS_SUCCESS);
}

TEST_F(Registration, RegistrationWithMissingHandlerIsRefused) {
    TestProvider& p = new_provider();
    for (int which = 0; which < 3; ++which) {
        SCOPED_TRACE(which);
        log_.clear();
        auto c = p.characteristics();
        if (which != 1) c.AllocateSharedMemoryHandler = nullptr;
        if (which != 0) c.FreeSharedMemoryHandler = nullptr;
        EXPECT_EQ(set(binding_, &c), NDIS_STATUS_INVALID_PARAMETER);
        only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
    }
    expect_not_registered(p);
}

TEST_F(Registration, ReRegisteringWithBlocksOutstandingFails) {
    TestProvider& first = new_provider();
    ASSERT_EQ(first.register_on(binding_), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, kOwned);
    ASSERT_TRUE(a.ok());
    TestProvider& replacement = new_provider();
    EXPECT_EQ(replacement.register_on(binding_), NDIS_STATUS_FAILURE);
    only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
    NdisFreeSharedMemory(adapter_, a.handle);
    EXPECT_EQ(first.free_calls().size(), 1u) << "the block still went back to the provider that made it";
    EXPECT_TRUE(replacement.free_calls().empty());
}

TEST_F(Registration, ReRegisteringWithoutBlocksReplacesTheProvider) {
    TestProvider& first = new_provider();
    ASSERT_EQ(first.register_on(binding_), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE, kOwned);
    NdisFreeSharedMemory(adapter_, a.handle);
    TestProvider& replacement = new_provider();
    ASSERT_EQ(replacement.register_on(binding_), NDIS_STATUS_SUCCESS);
    Alloc b = allocate(adapter_, PAGE_SIZE, kOwned);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(first.alloc_calls().size(), 1u);
    EXPECT_EQ(replacement.alloc_calls().size(), 1u);
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(replacement.free_calls().size(), 1u);
}

TEST_F(Registration, SetOptionalHandlersWithAHandleThatIsNoneOfNdissIsNotSupported) {
    TestProvider& p = new_provider();
    NDIS_HANDLE gone = new_binding(adapter_, "gone");
    ndisshm_binding_destroy(gone);
    int on_stack = 0;
    for (NDIS_HANDLE bad :
         {NDIS_HANDLE{nullptr}, NDIS_HANDLE(&on_stack), reinterpret_cast<NDIS_HANDLE>(0x1234), gone}) {
        SCOPED_TRACE(hex(bad));
        global_log_.clear();
        EXPECT_EQ(p.register_on(bad), NDIS_STATUS_NOT_SUPPORTED);
        const Violation v = only_violation(global_log_, NDISSHM_VIOLATION_BAD_HANDLE, "NdisSetOptionalHandlers");
        EXPECT_THAT(v.message, testing::HasSubstr(hex(bad)));
    }
    expect_not_registered(p);
}

TEST_F(Registration, HostOpsRegistrationNeedsStructSizeAndBothHandlers) {
    TestProvider& p = new_provider();
    ndisshm_provider_ops ops = p.ops();
    ops.struct_size = sizeof(ops) - 8;
    EXPECT_EQ(ndisshm_binding_register_provider(binding_, &ops), NDIS_STATUS_INVALID_PARAMETER);
    ops = p.ops();
    ops.free = nullptr;
    EXPECT_EQ(ndisshm_binding_register_provider(binding_, &ops), NDIS_STATUS_INVALID_PARAMETER);
    ops = p.ops();
    ops.allocate = nullptr;
    EXPECT_EQ(ndisshm_binding_register_provider(binding_, &ops), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ndisshm_binding_register_provider(binding_, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_BAD_REGISTRATION).size(), 4u);
    expect_not_registered(p);

    ops = p.ops();
    ops.attach_queue = ops.detach_queue = nullptr;  // optional
    EXPECT_EQ(ndisshm_binding_register_provider(binding_, &ops), NDIS_STATUS_SUCCESS);
}

TEST_F(Registration, BindingsOfADestroyedAdapterAreGone) {
    NDIS_HANDLE eth1 = new_adapter("eth1");
    NDIS_HANDLE b = new_binding(eth1, "vswitch1");
    ndisshm_adapter_destroy(eth1);
    TestProvider& p = new_provider();
    EXPECT_EQ(p.register_on(b), NDIS_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(global_log_.of(NDISSHM_VIOLATION_BAD_HANDLE).size(), 1u);
}

}  // namespace
}  // namespace ndisshm::test
