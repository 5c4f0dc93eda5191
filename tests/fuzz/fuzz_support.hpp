// What every fuzz target shares: reading typed values from the fuzzer's bytes,
// and checks that stop the run.
//
// Our own reader rather than libFuzzer's FuzzedDataProvider: the same targets
// are also built with g++ as replay tests (replay_main.cpp), where clang's
// header is not on the include path. Running out of bytes yields zeros, so
// every input, however short, is a valid (if dull) program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// A failed invariant: say which and where, then abort, which libFuzzer (and
// the replay test) reports as a crash with this input saved.
#define FUZZ_CHECK(cond, ...)                                                        \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                       \
            std::fprintf(stderr, "\n");                                              \
            std::abort();                                                            \
        }                                                                            \
    } while (0)

namespace ndisshm_fuzz {

class ByteReader {
public:
    ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    bool empty() const { return pos_ >= size_; }
    size_t left() const { return size_ - pos_; }

    template <class T>
    T take() {
        T v{};
        const size_t n = sizeof(T) < left() ? sizeof(T) : left();
        std::memcpy(&v, data_ + pos_, n);  // little-endian, zero-padded at the end
        pos_ += n;
        return v;
    }
    uint8_t byte() { return take<uint8_t>(); }
    bool flag() { return (byte() & 1) != 0; }
    // Uniform enough in [0, n) for n <= 256; 0 when n is 0.
    uint32_t below(uint32_t n) { return n == 0 ? 0 : byte() % n; }
    // A size that is mostly small (where the interesting boundaries are),
    // sometimes large: one byte picks the scale.
    uint32_t size(uint32_t max) {
        const uint8_t scale = byte();
        uint32_t v = 0;
        if (scale < 160) v = byte();                          // 0..255
        else if (scale < 230) v = take<uint16_t>();           // 0..64 Ki
        else v = take<uint32_t>();                            // anything
        return max == 0 ? v : v % (max + 1);
    }
    // The rest of the input, or the next n bytes.
    const uint8_t* bytes(size_t n, size_t* got) {
        *got = n < left() ? n : left();
        const uint8_t* p = data_ + pos_;
        pos_ += *got;
        return p;
    }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

}  // namespace ndisshm_fuzz
