#include "memory/zeroing.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "os/os.hpp"

namespace ndisshm::memory {
namespace {

#if defined(__x86_64__)
// Two streams, one in each half of the block, 128 bytes of each a turn (four 32-byte aligned stores);
// p and n are multiples of 128. Why two: see kVectorClearMaxBytes in zeroing.hpp.
[[gnu::target("avx2"), gnu::always_inline]] inline void clear_128(std::byte* q) {
    const __m256i zero = _mm256_setzero_si256();
    _mm256_store_si256(reinterpret_cast<__m256i*>(q), zero);
    _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32), zero);
    _mm256_store_si256(reinterpret_cast<__m256i*>(q + 64), zero);
    _mm256_store_si256(reinterpret_cast<__m256i*>(q + 96), zero);
}

[[gnu::target("avx2")]] void clear_avx2(std::byte* p, uint64_t n) {
    const uint64_t half = (n / 2) & ~uint64_t{127};
    std::byte* const second = p + half;
    for (uint64_t off = 0; off != half; off += 128) {
        clear_128(p + off);
        clear_128(second + off);
    }
    if (half * 2 != n) clear_128(p + half * 2);  // an odd number of 128-byte pieces: the last one
}

bool have_avx2() {
    static const bool yes = [] {
        __builtin_cpu_init();  // may run before the constructors that would otherwise have done it
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return yes;
}
#endif

}  // namespace

void clear_bytes(std::byte* p, uint64_t length, Warmth warmth) {
#if defined(__x86_64__)
    if (warmth == Warmth::Warm && length <= kVectorClearMaxBytes &&
        ((reinterpret_cast<uintptr_t>(p) | length) & 127) == 0 && have_avx2()) {
        clear_avx2(p, length);
        return;
    }
#endif
    std::memset(p, 0, length);
}

ZeroMethod zero_block(int fd, std::byte* base, uint64_t offset, uint64_t length, uint64_t release_from,
                      bool may_release, Warmth warmth) {
    // A punch can only fail for reasons that do not apply to a memfd we made (EOPNOTSUPP on other file
    // systems, EPERM on sealed files): clearing by stores is the answer that is always right.
    if (may_release && length >= release_from && os::punch_hole(fd, offset, length))
        return ZeroMethod::Release;
    clear_bytes(base + offset, length, warmth);
    return ZeroMethod::Memset;
}

}  // namespace ndisshm::memory
