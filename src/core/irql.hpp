// Per-thread IRQL emulation: each thread has its own level, PASSIVE_LEVEL at
// birth, raised and lowered by KeRaiseIrql/KeLowerIrql and NDIS spin locks,
// so the verifier can refuse calls that Windows only allows at PASSIVE_LEVEL.
#pragma once

#include <ndis/ndis_shm.h>

namespace ndisshm::core {
KIRQL current_irql();
}
