#include "memory/zeroing.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "os/os.hpp"

namespace ndisshm::memory {
namespace {

#if defined(__x86_64__)
// Four 32-byte aligned stores a turn; p and n are multiples of 128.
[[gnu::target("avx2")]] void clear_avx2(std::byte* p, uint64_t n) {
    const __m256i zero = _mm256_setzero_si256();
    for (std::byte* const end = p + n; p != end; p += 128) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(p), zero);
        _mm256_store_si256(reinterpret_cast<__m256i*>(p + 32), zero);
        _mm256_store_si256(reinterpret_cast<__m256i*>(p + 64), zero);
        _mm256_store_si256(reinterpret_cast<__m256i*>(p + 96), zero);
    }
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
    if (may_release && length >= release_from && os::punch_hole(fd, offset, length)) return ZeroMethod::Release;
    clear_bytes(base + offset, length, warmth);
    return ZeroMethod::Memset;
}

}  // namespace ndisshm::memory
