// A fixed pool of objects whose addresses are handles that can be checked.
//
// NDIS handles are raw pointers that drivers pass back to us; a driver with a
// bug passes garbage. An object in this pool is found from a handle by range,
// stride and a live flag alone, so a garbage handle is recognised without
// ever dereferencing it, and never crashes us.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>

namespace ndisshm::core {

template <class T, size_t N>
class SlotPool {
public:
    // nullptr when all N slots are taken.
    template <class... Args>
    T* create(Args&&... args) {
        std::lock_guard lock(mu_);
        for (size_t i = 0; i < N; ++i) {
            size_t idx = (next_ + i) % N;
            Slot& s = slots_[idx];
            if (!s.live.load(std::memory_order_relaxed)) {
                T* obj = new (s.storage) T(std::forward<Args>(args)...);
                s.live.store(true, std::memory_order_release);
                // Round-robin, so a destroyed object's address is reused as
                // late as possible and stale handles are caught meanwhile.
                next_ = idx + 1;
                return obj;
            }
        }
        return nullptr;
    }

    // The live object whose handle this is, or nullptr.
    T* find(const void* handle) const {
        const auto p = reinterpret_cast<uintptr_t>(handle);
        const auto base = reinterpret_cast<uintptr_t>(&slots_[0]);
        if (p < base || p >= base + sizeof(slots_) || (p - base) % sizeof(Slot) != 0) return nullptr;
        const Slot& s = slots_[(p - base) / sizeof(Slot)];
        if (!s.live.load(std::memory_order_acquire)) return nullptr;
        return std::launder(reinterpret_cast<T*>(const_cast<unsigned char*>(s.storage)));
    }

    void destroy(T* obj) {
        std::lock_guard lock(mu_);
        const auto p = reinterpret_cast<uintptr_t>(obj);
        Slot& s = slots_[(p - reinterpret_cast<uintptr_t>(&slots_[0])) / sizeof(Slot)];
        s.live.store(false, std::memory_order_release);
        obj->~T();
    }

private:
    struct alignas(64) Slot {
        alignas(T) unsigned char storage[sizeof(T)];  // first: the handle is the slot's address
        std::atomic<bool> live{false};
    };
    std::array<Slot, N> slots_{};
    std::mutex mu_;
    size_t next_ = 0;
};

}  // namespace ndisshm::core
