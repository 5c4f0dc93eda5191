// IRQL (spec section 3): NdisAllocateSharedMemory, NdisFreeSharedMemory and NdisSetOptionalHandlers are
// PASSIVE_LEVEL calls, and both provider handlers run at PASSIVE_LEVEL. The IRQL is emulated per thread:
// KeRaiseIrql / KeLowerIrql and NDIS spin locks move it.
#include "conformance/fixture.hpp"

namespace ndisshm::test {
namespace {

class Irql : public NdisTest {
protected:
    void TearDown() override {
        if (KeGetCurrentIrql() != PASSIVE_LEVEL) KeLowerIrql(PASSIVE_LEVEL);
        NdisTest::TearDown();
    }
};

TEST_F(Irql, EveryThreadStartsAtPassiveLevel) {
    EXPECT_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    KIRQL seen = 99;
    std::thread([&] { seen = KeGetCurrentIrql(); }).join();
    EXPECT_EQ(seen, PASSIVE_LEVEL);
}

TEST_F(Irql, IrqlIsPerThread) {
    IrqlGuard guard;
    KIRQL old = 99;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    EXPECT_EQ(old, PASSIVE_LEVEL);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KIRQL other = 99;
    NDIS_STATUS other_status = NDIS_STATUS_PENDING;
    std::thread([&] {
        other = KeGetCurrentIrql();
        Alloc a = allocate(adapter_, PAGE_SIZE);
        other_status = a.status;
        if (a.ok()) NdisFreeSharedMemory(adapter_, a.handle);
    }).join();
    EXPECT_EQ(other, PASSIVE_LEVEL);
    EXPECT_EQ(other_status, NDIS_STATUS_SUCCESS);
    KeLowerIrql(old);
    EXPECT_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
}

TEST_F(Irql, CallsAbovePassiveLevelAreRefused) {
    TestProvider& provider = provide(adapter_);
    Alloc live = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(live.ok());
    const auto before = stats(adapter_);
    for (KIRQL level : {KIRQL{APC_LEVEL}, KIRQL{DISPATCH_LEVEL}, KIRQL{HIGH_LEVEL}}) {
        SCOPED_TRACE(testing::Message() << "IRQL " << int(level));
        log_.clear();
        KIRQL old = 99;
        KeRaiseIrql(level, &old);
        Alloc a = allocate(adapter_, PAGE_SIZE);
        EXPECT_EQ(a.status, NDIS_STATUS_FAILURE);
        NdisFreeSharedMemory(adapter_, live.handle);
        NDIS_HANDLE binding = new_binding(adapter_, "late");
        EXPECT_EQ(new_provider().register_on(binding), NDIS_STATUS_FAILURE);
        KeLowerIrql(old);
        ndisshm_binding_destroy(binding);

        const auto irql = log_.of(NDISSHM_VIOLATION_IRQL);
        ASSERT_EQ(irql.size(), 3u);
        EXPECT_EQ(irql[0].call, "NdisAllocateSharedMemory");
        EXPECT_EQ(irql[1].call, "NdisFreeSharedMemory");
        EXPECT_EQ(irql[1].handle, live.handle);
        EXPECT_EQ(irql[2].call, "NdisSetOptionalHandlers");
        EXPECT_THAT(irql[0].message, testing::HasSubstr("'eth0'"));
        EXPECT_THAT(irql[1].message, testing::HasSubstr("'eth0'"));
        EXPECT_EQ(log_.size(), 3u);
    }
    // Nothing was allocated, freed or handed to the provider.
    EXPECT_EQ(provider.alloc_calls().size(), 1u);
    EXPECT_TRUE(provider.free_calls().empty());
    EXPECT_TRUE(is_live(adapter_, live.handle));
    EXPECT_EQ(stats(adapter_).total.blocks, before.total.blocks);
    EXPECT_EQ(stats(adapter_).has_provider, 1);
    EXPECT_EQ(provider_of(adapter_, live.handle), "miniport");
    // Back at PASSIVE_LEVEL the same calls work.
    NdisFreeSharedMemory(adapter_, live.handle);
    EXPECT_EQ(provider.free_calls().size(), 1u);
}

// Like every report (host.h: "names adapter, handle, site"), the IRQL report of a registration names the
// binding and its adapter, as the allocation and free reports name theirs.
TEST_F(Irql, RegistrationIrqlReportNamesTheBindingAndItsAdapter) {
    NDIS_HANDLE binding = new_binding(adapter_, "late-binding");
    {
        IrqlGuard guard;
        KIRQL old;
        KeRaiseIrql(DISPATCH_LEVEL, &old);
        EXPECT_EQ(new_provider().register_on(binding), NDIS_STATUS_FAILURE);
    }
    const Violation v = only_violation(log_, NDISSHM_VIOLATION_IRQL, "NdisSetOptionalHandlers");
    EXPECT_EQ(v.handle, binding);
    EXPECT_THAT(v.message, testing::HasSubstr("'late-binding'"));
    EXPECT_THAT(v.message, testing::HasSubstr("'eth0'"));
}

TEST_F(Irql, CallsUnderAnNdisSpinLockAreRefused) {
    NDIS_SPIN_LOCK lock;
    NdisAllocateSpinLock(&lock);
    Alloc live = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(live.ok());

    NdisAcquireSpinLock(&lock);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    Alloc a = allocate(adapter_, PAGE_SIZE);
    NdisFreeSharedMemory(adapter_, live.handle);
    NdisReleaseSpinLock(&lock);
    EXPECT_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);

    EXPECT_EQ(a.status, NDIS_STATUS_FAILURE);
    EXPECT_EQ(log_.of(NDISSHM_VIOLATION_IRQL).size(), 2u);
    EXPECT_TRUE(is_live(adapter_, live.handle));
    EXPECT_EQ(stats(adapter_).total.blocks, 1u);

    Alloc b = allocate(adapter_, PAGE_SIZE);
    EXPECT_TRUE(b.ok());
    NdisFreeSharedMemory(adapter_, live.handle);
    EXPECT_FALSE(is_live(adapter_, live.handle));
    NdisFreeSpinLock(&lock);
}

TEST_F(Irql, SpinLockRestoresTheIrqlItWasAcquiredAt) {
    NDIS_SPIN_LOCK lock;
    NdisAllocateSpinLock(&lock);
    KIRQL old = 99;
    KeRaiseIrql(APC_LEVEL, &old);
    NdisAcquireSpinLock(&lock);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    NdisReleaseSpinLock(&lock);
    EXPECT_EQ(KeGetCurrentIrql(), APC_LEVEL);
    KeLowerIrql(old);
    NdisFreeSpinLock(&lock);
}

TEST_F(Irql, NestedSpinLocksRestoreLevelsInReverseOrder) {
    NDIS_SPIN_LOCK a, b;
    NdisAllocateSpinLock(&a);
    NdisAllocateSpinLock(&b);
    NdisAcquireSpinLock(&a);
    NdisAcquireSpinLock(&b);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    NdisReleaseSpinLock(&b);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL) << "a is still held";
    NdisReleaseSpinLock(&a);
    EXPECT_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    EXPECT_EQ(global_log_.size(), 0u);
    NdisFreeSpinLock(&b);
    NdisFreeSpinLock(&a);
}

TEST_F(Irql, ProviderHandlersRunAtPassiveLevel) {
    TestProvider& provider = provide(adapter_);
    Alloc a = allocate(adapter_, PAGE_SIZE);
    Alloc b = allocate(adapter_, PAGE_SIZE);
    ASSERT_TRUE(a.ok() && b.ok());
    NdisFreeSharedMemory(adapter_, a.handle);
    ndisshm_adapter_destroy(adapter_);  // b goes as a leak, through the provider
    adapter_ = nullptr;
    ASSERT_EQ(provider.alloc_calls().size(), 2u);
    ASSERT_EQ(provider.free_calls().size(), 2u);
    for (const auto& c : provider.alloc_calls()) EXPECT_EQ(c.irql, PASSIVE_LEVEL);
    for (const auto& c : provider.free_calls()) EXPECT_EQ(c.irql, PASSIVE_LEVEL);
}

TEST_F(Irql, RaisingBelowOrLoweringAboveTheCurrentLevelIsAViolationAndChangesNothing) {
    IrqlGuard guard;
    KIRQL old = 99;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    global_log_.clear();

    KIRQL ignored = 99;
    KeRaiseIrql(PASSIVE_LEVEL, &ignored);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(HIGH_LEVEL);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeRaiseIrql(HIGH_LEVEL + 1, &ignored);
    EXPECT_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);

    const auto all = global_log_.all();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].kind, NDISSHM_VIOLATION_IRQL);
    EXPECT_EQ(all[0].call, "KeRaiseIrql");
    EXPECT_EQ(all[1].kind, NDISSHM_VIOLATION_IRQL);
    EXPECT_EQ(all[1].call, "KeLowerIrql");
    EXPECT_EQ(all[2].call, "KeRaiseIrql");
    KeLowerIrql(old);
    EXPECT_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
}

}  // namespace
}  // namespace ndisshm::test
