#include "core/irql.hpp"

#include <atomic>
#include <string>
#include <thread>

#include "core/verifier.hpp"

namespace ndisshm::core {
namespace {
// initial-exec: read on every NDIS call; the general model would call __tls_get_addr
// (perf: 2.5% of a same-owner pair). The library is linked, not dlopen'ed late.
[[gnu::tls_model("initial-exec")]] thread_local KIRQL t_irql = PASSIVE_LEVEL;
}
KIRQL current_irql() { return t_irql; }
}  // namespace ndisshm::core

using ndisshm::core::t_irql;
using ndisshm::core::Verifier;

extern "C" {

KIRQL KeGetCurrentIrql(void) { return t_irql; }

VOID KeRaiseIrql(KIRQL NewIrql, PKIRQL OldIrql) {
    if (NewIrql < t_irql || NewIrql > HIGH_LEVEL) {
        Verifier::global().report(NDISSHM_VIOLATION_IRQL, "KeRaiseIrql", nullptr, nullptr, {},
                                  "cannot raise from IRQL " + std::to_string(t_irql) + " to " +
                                      std::to_string(NewIrql) + "; IRQL unchanged");
        if (OldIrql != nullptr) *OldIrql = t_irql;
        return;
    }
    if (OldIrql != nullptr) *OldIrql = t_irql;
    t_irql = NewIrql;
}

VOID KeLowerIrql(KIRQL NewIrql) {
    if (NewIrql > t_irql) {
        Verifier::global().report(NDISSHM_VIOLATION_IRQL, "KeLowerIrql", nullptr, nullptr, {},
                                  "cannot lower from IRQL " + std::to_string(t_irql) + " to " +
                                      std::to_string(NewIrql) + "; IRQL unchanged");
        return;
    }
    t_irql = NewIrql;
}

VOID NdisAllocateSpinLock(PNDIS_SPIN_LOCK SpinLock) {
    SpinLock->SpinLock = 0;
    SpinLock->OldIrql = PASSIVE_LEVEL;
}

VOID NdisFreeSpinLock(PNDIS_SPIN_LOCK /*SpinLock*/) {}

VOID NdisAcquireSpinLock(PNDIS_SPIN_LOCK SpinLock) {
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    std::atomic_ref<KSPIN_LOCK> word(SpinLock->SpinLock);
    for (;;) {
        KSPIN_LOCK expected = 0;
        if (word.compare_exchange_weak(expected, 1, std::memory_order_acquire)) break;
        while (word.load(std::memory_order_relaxed) != 0) std::this_thread::yield();
    }
    // Written only once the lock is ours: another waiter's level must not
    // overwrite the holder's.
    SpinLock->OldIrql = old;
}

VOID NdisReleaseSpinLock(PNDIS_SPIN_LOCK SpinLock) {
    KIRQL old = SpinLock->OldIrql;
    std::atomic_ref<KSPIN_LOCK>(SpinLock->SpinLock).store(0, std::memory_order_release);
    KeLowerIrql(old);
}

}  // extern "C"
