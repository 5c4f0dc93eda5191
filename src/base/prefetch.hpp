// prefetch_for_write: ask for a cache line in the state a store needs
// (PREFETCHW on x86-64), ahead of the store.
//
// Why: a store to a line another core holds (a guest's packet buffer, a ring
// entry it has read) waits for that core to give the line up, and stores
// leave the store buffer in order, so every later store waits too: the NIC's
// thread filled its store buffer within three packets and spent its time
// waiting on one line at a time. A prefetch asks for the line without taking
// a store buffer entry, so many lines are on their way at once.
//
// __builtin_prefetch(p, 1) emits PREFETCHW only where the compiler is told
// the CPU has it (-mprfchw); the instruction itself is safe everywhere on
// x86-64 (CPUs without it decode it as a no-op), so it is written out here.
// Elsewhere the builtin's best effort.
#pragma once

namespace ndisshm::base {

inline void prefetch_for_write(const void* p) {
#if defined(__x86_64__)
    asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

}  // namespace ndisshm::base
