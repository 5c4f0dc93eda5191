// include/ndisshm/guest.h mapped onto guest::Session. No exception crosses
// the C boundary: an allocation failure becomes NDISSHM_GUEST_FAILED.
#include <ndisshm/guest.h>

#include <cstdio>
#include <memory>
#include <new>

#include "guest/session.hpp"

struct ndisshm_guest {
    std::unique_ptr<ndisshm::guest::Session> session;
    std::string error;  // for calls that fail before or outside the session
};

namespace {

void put(char* out, size_t bytes, const std::string& text) {
    if (out != nullptr && bytes > 0) std::snprintf(out, bytes, "%s", text.c_str());
}

}  // namespace

extern "C" {

ndisshm_guest* ndisshm_guest_create(const ndisshm_guest_config* config, char* error, size_t error_bytes) {
    if (config == nullptr) {
        put(error, error_bytes, "ndisshm_guest_create: config is NULL");
        return nullptr;
    }
    try {
        auto s = ndisshm::guest::Session::create(*config);
        if (!s) {
            put(error, error_bytes, s.error().message());
            return nullptr;
        }
        return new ndisshm_guest{std::move(*s), {}};
    } catch (const std::bad_alloc&) {
        put(error, error_bytes, "ndisshm_guest_create: out of memory");
        return nullptr;
    }
}

ndisshm_guest_status ndisshm_guest_connect(ndisshm_guest* g, const char* socket_path, int timeout_ms) {
    if (g == nullptr) return NDISSHM_GUEST_FAILED;
    if (socket_path == nullptr) {
        g->error = "ndisshm_guest_connect: socket_path is NULL";
        return NDISSHM_GUEST_FAILED;
    }
    try {
        g->error.clear();
        return g->session->connect(socket_path, timeout_ms);
    } catch (const std::bad_alloc&) {
        g->error = "ndisshm_guest_connect: out of memory";
        return NDISSHM_GUEST_FAILED;
    }
}

ndisshm_guest_status ndisshm_guest_poll(ndisshm_guest* g, int timeout_ms) {
    if (g == nullptr) return NDISSHM_GUEST_FAILED;
    try {
        g->error.clear();
        return g->session->poll(timeout_ms);
    } catch (const std::bad_alloc&) {
        g->error = "ndisshm_guest_poll: out of memory";
        return NDISSHM_GUEST_FAILED;
    }
}

void ndisshm_guest_close(ndisshm_guest* g) {
    if (g != nullptr) g->session->close();
}

void ndisshm_guest_destroy(ndisshm_guest* g) { delete g; }

const char* ndisshm_guest_last_error(const ndisshm_guest* g) {
    if (g == nullptr) return "guest is NULL";
    return g->error.empty() ? g->session->last_error().c_str() : g->error.c_str();
}

void ndisshm_guest_get_stats(const ndisshm_guest* g, ndisshm_guest_stats* stats) {
    if (stats == nullptr) return;
    *stats = g == nullptr ? ndisshm_guest_stats{} : g->session->stats();
}

void* ndisshm_guest_memory(const ndisshm_guest* g, uint64_t* bytes) {
    if (bytes != nullptr) *bytes = g == nullptr ? 0 : g->session->memory_bytes();
    return g == nullptr ? nullptr : g->session->memory();
}

int ndisshm_guest_memory_fd(const ndisshm_guest* g) { return g == nullptr ? -1 : g->session->memory_fd(); }

const char* ndisshm_guest_status_name(ndisshm_guest_status status) {
    switch (status) {
        case NDISSHM_GUEST_OK: return "OK";
        case NDISSHM_GUEST_TIMEOUT: return "TIMEOUT";
        case NDISSHM_GUEST_HOST_BYE: return "HOST_BYE";
        case NDISSHM_GUEST_HOST_GONE: return "HOST_GONE";
        case NDISSHM_GUEST_REFUSED: return "REFUSED";
        case NDISSHM_GUEST_PROTOCOL: return "PROTOCOL";
        case NDISSHM_GUEST_FAILED: return "FAILED";
    }
    return "UNKNOWN";
}

}  // extern "C"
