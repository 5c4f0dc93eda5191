// NdisSetOptionalHandlers (spec section 3, ndis_shm.h): how a provider registers through its binding.
// A bad header or handler is INVALID_PARAMETER; a second provider on the same adapter, or a
// re-registration with blocks outstanding, is FAILURE; a refused registration changes nothing.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

class Registration : public NdisTest {
protected:
    void SetUp() override {
        NdisTest::SetUp();
        binding_ = new_binding(adapter_, "vswitch");
    }
    NDIS_STATUS set(NDIS_HANDLE handle, NDIS_SHARED_MEMORY_PROVIDER_CHARACTERISTICS* c) {
        return NdisSetOptionalHandlers(handle, reinterpret_cast<PNDIS_DRIVER_OPTIONAL_HANDLERS>(c));
    }
    // The adapter still allocates from the default provider and `p` was never called.
    void expect_not_registered(const TestProvider& p) {
        EXPECT_EQ(stats(adapter_).has_provider, 0);
        Alloc a = allocate(adapter_, PAGE_SIZE);
        ASSERT_TRUE(a.ok());
        EXPECT_EQ(provider_of(adapter_, a.handle), "default");
        EXPECT_TRUE(p.alloc_calls().empty());
        NdisFreeSharedMemory(adapter_, a.handle);
    }

    NDIS_HANDLE binding_ = nullptr;
};

TEST_F(Registration, WellFormedCharacteristicsRegisterTheProvider) {
    TestProvider& p = new_provider();
    auto c = p.characteristics();
    ASSERT_EQ(set(binding_, &c), NDIS_STATUS_SUCCESS);
    EXPECT_EQ(stats(adapter_).has_provider, 1);
    Alloc a = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(p.alloc_calls().size(), 1u);
    EXPECT_EQ(log_.size(), 0u);
}

TEST_F(Registration, BadHeaderOnSetOptionalHandlersIsInvalidParameter) {
    TestProvider& p = new_provider();
    struct Case {
        const char* what;
        UCHAR type, revision;
        USHORT size;
    };
    const USHORT good_size =
        static_cast<USHORT>(NDIS_SIZEOF_SHARED_MEMORY_PROVIDER_CHARACTERISTICS_REVISION_1);
    const Case cases[] = {
        {"Type DEFAULT", NDIS_OBJECT_TYPE_DEFAULT, 1, good_size},
        {"Type 0xB1", 0xB1, 1, good_size},
        {"Type 0", 0, 1, good_size},
        {"Revision 0", NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, 0, good_size},
        {"Revision 2", NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, 2, good_size},
        {"Size 0x1F", NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, 1, 0x1F},
        {"Size 4", NDIS_OBJECT_TYPE_SHARED_MEMORY_PROVIDER_CHARACTERISTICS, 1, 4},
    };
    for (const Case& k : cases) {
        SCOPED_TRACE(k.what);
        log_.clear();
        auto c = p.characteristics();
        c.Header = {k.type, k.revision, k.size};
        EXPECT_EQ(set(binding_, &c), NDIS_STATUS_INVALID_PARAMETER);
        const Violation v =
            only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
        EXPECT_THAT(v.message, testing::HasSubstr("'vswitch'"));
        EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
        EXPECT_EQ(v.handle, binding_);
    }
    log_.clear();
    EXPECT_EQ(NdisSetOptionalHandlers(binding_, nullptr), NDIS_STATUS_INVALID_PARAMETER);
    only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
    expect_not_registered(p);
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

TEST_F(Registration, SecondBindingRegisteringWhileOneProvidesFails) {
    TestProvider& first = new_provider();
    ASSERT_EQ(first.register_on(binding_), NDIS_STATUS_SUCCESS);
    NDIS_HANDLE other = new_binding(adapter_, "intruder");
    TestProvider& second = new_provider();
    EXPECT_EQ(second.register_on(other), NDIS_STATUS_FAILURE);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_BAD_REGISTRATION, "NdisSetOptionalHandlers");
    EXPECT_THAT(v.message, testing::HasSubstr("'intruder'"));
    EXPECT_THAT(v.message, testing::HasSubstr("'vswitch'"));

    Alloc a = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(provider_of(adapter_, a.handle), "vswitch");
    EXPECT_EQ(first.alloc_calls().size(), 1u);
    EXPECT_TRUE(second.alloc_calls().empty());
}

TEST_F(Registration, ReRegisteringWithBlocksOutstandingFails) {
    TestProvider& first = new_provider();
    ASSERT_EQ(first.register_on(binding_), NDIS_STATUS_SUCCESS);
    Alloc a = allocate(adapter_, PAGE_SIZE);
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
    Alloc a = allocate(adapter_, PAGE_SIZE);
    NdisFreeSharedMemory(adapter_, a.handle);
    TestProvider& replacement = new_provider();
    ASSERT_EQ(replacement.register_on(binding_), NDIS_STATUS_SUCCESS);
    Alloc b = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(first.alloc_calls().size(), 1u);
    EXPECT_EQ(replacement.alloc_calls().size(), 1u);
    NdisFreeSharedMemory(adapter_, b.handle);
    EXPECT_EQ(replacement.free_calls().size(), 1u);
}

TEST_F(Registration, SetOptionalHandlersWithAnAdapterHandleIsInvalidParameter) {
    TestProvider& p = new_provider();
    EXPECT_EQ(p.register_on(adapter_), NDIS_STATUS_INVALID_PARAMETER);
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_BAD_HANDLE, "NdisSetOptionalHandlers");
    EXPECT_EQ(v.adapter, adapter_);
    EXPECT_EQ(v.handle, adapter_);
    EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
    expect_not_registered(p);
}

TEST_F(Registration, SetOptionalHandlersWithAGarbageHandleIsInvalidParameter) {
    TestProvider& p = new_provider();
    NDIS_HANDLE gone = new_binding(adapter_, "gone");
    ndisshm_binding_destroy(gone);
    int on_stack = 0;
    for (NDIS_HANDLE bad :
         {NDIS_HANDLE{nullptr}, NDIS_HANDLE(&on_stack), reinterpret_cast<NDIS_HANDLE>(0x1234), gone}) {
        SCOPED_TRACE(hex(bad));
        global_log_.clear();
        EXPECT_EQ(p.register_on(bad), NDIS_STATUS_INVALID_PARAMETER);
        const Violation v =
            only_violation(global_log_, NDISSHM_VIOLATION_BAD_HANDLE, "NdisSetOptionalHandlers");
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
    EXPECT_EQ(p.register_on(b), NDIS_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(global_log_.of(NDISSHM_VIOLATION_BAD_HANDLE).size(), 1u);
}

}  // namespace
}  // namespace ndisshm::test
