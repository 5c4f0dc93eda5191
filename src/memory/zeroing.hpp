// Zeroing: how a block that reuses memory is cleared before it is handed out, so that no byte one user
// of the memory wrote is ever readable by the next (memory never used is zero already: the OS gives
// zeroed pages, and the arena knows which pages were never handed out).
//
// Two ways, chosen by size:
//  - memset: the bytes are written now, at allocation time (by memset, or by a loop of vector stores
//    where that is faster: clear_bytes below).
//  - release: fallocate(PUNCH_HOLE) gives the pages back to the kernel; they read as zero and cost no
//    memory until touched, and then each page faults in zeroed by the kernel.
//
// Measured on the development machine (2 vCPUs, Linux 6.18, memfd of 4 KiB pages, a dirty resident
// range cleared; medians, /tmp throwaway program, numbers in the memory layer's README):
//     bytes      memset     punch    punch + touching every page after
//     4 KiB       44 ns    1.95 us     3.2 us
//     64 KiB     1.3 us    9.7 us     24 us
//     1 MiB       32 us     92 us     330 us
//     2 MiB       71 us    237 us     740 us
//     8 MiB      829 us    839 us     3.2 ms
//     16 MiB     1.66 ms   1.57 ms    7.7 ms
//     64 MiB     7.2 ms    5.5 ms     38 ms
// So: a user that touches every page afterwards always pays less for memset (faulting pages back in
// costs 3-5x a memset), and the punch itself only catches up with memset from about 8-16 MiB. The
// default threshold is therefore 16 MiB: at and above it releasing is no slower for the allocating call
// than memset, it returns the memory to the system while the block is untouched (large blocks are
// typically receive areas that fill slowly or partly), and it does not wipe the CPU's caches with
// megabytes of zeros. Below it memset wins by 1x-45x. Callers with other needs set
// zero_by_release_bytes (UINT64_MAX: always memset).
//
// Huge page arenas always memset: a punched huge page goes back to the system's pool, and if another
// process takes it before the block is touched again, the touch is SIGBUS (hugetlb has no overcommit).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ndisshm::memory {

constexpr uint64_t kDefaultZeroByReleaseBytes = uint64_t{16} << 20;

// The threshold a configuration asks for: 0 means the measured default, UINT64_MAX never releases.
constexpr uint64_t resolve_zero_by_release(uint64_t configured) {
    return configured == 0 ? kDefaultZeroByReleaseBytes : configured;
}

enum class ZeroMethod { Memset, Release };

// Whether the block is likely in this CPU's caches: it was freed on this CPU a moment ago (a hit in
// the arena's per-CPU cache), not fetched from the arena, where it may have sat for long.
enum class Warmth { Cold, Warm };

// The bytes of a warm block at most this long are written with 32-byte vector stores, not memset:
// glibc 2.36's memset uses `rep stosb` from 2 KiB up, whose start-up and pace on AMD Zen lose to a
// plain loop on lines in cache (2026-12-06, 2-vCPU AMD EPYC with AVX-512, a /tmp throwaway loop,
// each block cleared then touched once per 4 KiB page, as bench/ does):
//     bytes   warm: memset  AVX2 loop    cold (256 MiB span): memset  AVX2 loop
//     4 KiB          36 ns      19 ns                     190-235 ns     128 ns
//     16 KiB        128 ns      79 ns                         524-571    570
//     32 KiB        248 ns     157 ns
//     64 KiB        530 ns     448 ns                      1725-1977   2040-2080
//     2 MiB        24.5 us      28 us
// So: a loop for warm blocks up to 64 KiB (the sizes the per-CPU caches hold); memset for the rest,
// since on cold lines `rep stosb` keeps up or wins from 64 KiB on.
// The loop writes the block's two halves in turn, 128 bytes of each, rather than front to back. Same
// stores, but a 64 KiB block, larger than this CPU's L1 data cache, then loses fewer of its lines from
// L1 to each sweep over it (2026-12-06, same machine, a warm buffer cleared over and over, no touch):
//     bytes   memset  one stream  two halves
//     4 KiB     33 ns      18.5        17.7
//     32 KiB   225        148         147
//     48 KiB   329        216         222
//     64 KiB   477        405         291
// In the cross-owner pair (bench/, a 64 KiB block every call) the pair went from 1.14x to 1.05x of the
// memset beside it. Other sizes neither gain nor lose.
constexpr uint64_t kVectorClearMaxBytes = uint64_t{64} << 10;

// Writes zeros over [p, p + length): memset, or the vector loop where `warmth` and length say it is
// faster (see above) and the CPU has AVX2. p and length must be multiples of 128 bytes for the loop
// (blocks are whole pages); anything else is cleared by memset.
void clear_bytes(std::byte* p, uint64_t length, Warmth warmth);

// Clears [offset, offset + length) of the memfd `fd`, mapped at base: by release when `may_release`
// and length >= release_from, else (or if the kernel refuses the punch) by clear_bytes. Returns how.
ZeroMethod zero_block(int fd, std::byte* base, uint64_t offset, uint64_t length, uint64_t release_from,
                      bool may_release, Warmth warmth = Warmth::Cold);

}  // namespace ndisshm::memory
