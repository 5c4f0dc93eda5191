// The C API's error convention (<ndisshm/status.h>), its one implementation:
// the reason goes into the caller's optional buffer, NUL-terminated and cut
// to fit, and "" on success so a buffer never holds a stale reason.
#pragma once

#include <ndis/ndis_shm.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace ndisshm::api {

inline void put_error(char* error, size_t bytes, const std::string& why) {
    if (error == nullptr || bytes == 0) return;
    const size_t n = why.size() < bytes - 1 ? why.size() : bytes - 1;
    std::memcpy(error, why.data(), n);
    error[n] = '\0';
}

inline void clear_error(char* error, size_t bytes) {
    if (error != nullptr && bytes > 0) error[0] = '\0';
}

// Returns `status` with `why` in the caller's buffer.
inline NDIS_STATUS fail(char* error, size_t bytes, NDIS_STATUS status, const std::string& why) {
    put_error(error, bytes, why);
    return status;
}

}  // namespace ndisshm::api
