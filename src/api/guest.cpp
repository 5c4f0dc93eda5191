// include/ndisshm/guest.h mapped onto guest::Session. No exception crosses
// the C boundary: an allocation failure becomes NDIS_STATUS_RESOURCES.
#define NDISSHM_BUILDING_LIBRARY 1
#include <ndisshm/guest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <new>

#include "api/error_buffer.hpp"
#include "guest/session.hpp"

struct ndisshm_guest {
    std::unique_ptr<ndisshm::guest::Session> session;
};

using ndisshm::api::clear_error;
using ndisshm::api::fail;

namespace {

// A session's status with its reason in the caller's buffer.
NDIS_STATUS answer(const ndisshm_guest* g, NDIS_STATUS status, char* error, size_t bytes) {
    if (status == NDIS_STATUS_SUCCESS || status == NDISSHM_STATUS_TIMEOUT)
        clear_error(error, bytes);
    else
        ndisshm::api::put_error(error, bytes, g->session->last_error());
    return status;
}

}  // namespace

extern "C" {

void ndisshm_guest_config_init(ndisshm_guest_config* config) {
    if (config == nullptr) return;
    std::memset(config, 0, sizeof(*config));
    config->struct_size = sizeof(*config);
}

NDIS_STATUS ndisshm_guest_create(const ndisshm_guest_config* config, ndisshm_guest** guest, char* error,
                                 size_t error_bytes) {
    if (guest == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "ndisshm_guest_create: guest is NULL");
    *guest = nullptr;
    if (config == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "ndisshm_guest_create: config is NULL");
    if (config->struct_size != sizeof(ndisshm_guest_config))
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER,
                    "ndisshm_guest_create: config.struct_size is " + std::to_string(config->struct_size) +
                        ", expected " + std::to_string(sizeof(ndisshm_guest_config)) +
                        " (ndisshm_guest_config_init sets it)");
    try {
        auto s = ndisshm::guest::Session::create(*config);
        if (!s)
            return fail(error, error_bytes,
                        s.error().err == EINVAL ? NDIS_STATUS_INVALID_PARAMETER : NDIS_STATUS_RESOURCES,
                        s.error().message());
        *guest = new ndisshm_guest{std::move(*s)};
        clear_error(error, error_bytes);
        return NDIS_STATUS_SUCCESS;
    } catch (const std::bad_alloc&) {
        return fail(error, error_bytes, NDIS_STATUS_RESOURCES, "ndisshm_guest_create: out of memory");
    }
}

NDIS_STATUS ndisshm_guest_connect(ndisshm_guest* g, const char* socket_path, int timeout_ms, char* error,
                                  size_t error_bytes) {
    if (g == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "ndisshm_guest_connect: guest is NULL");
    if (socket_path == nullptr)
        return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "ndisshm_guest_connect: socket_path is NULL");
    try {
        return answer(g, g->session->connect(socket_path, timeout_ms), error, error_bytes);
    } catch (const std::bad_alloc&) {
        return fail(error, error_bytes, NDIS_STATUS_RESOURCES, "ndisshm_guest_connect: out of memory");
    }
}

NDIS_STATUS ndisshm_guest_poll(ndisshm_guest* g, int timeout_ms, char* error, size_t error_bytes) {
    if (g == nullptr) return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "ndisshm_guest_poll: guest is NULL");
    try {
        return answer(g, g->session->poll(timeout_ms), error, error_bytes);
    } catch (const std::bad_alloc&) {
        return fail(error, error_bytes, NDIS_STATUS_RESOURCES, "ndisshm_guest_poll: out of memory");
    }
}

NDIS_STATUS ndisshm_guest_wait(ndisshm_guest* g, int timeout_ms, char* error, size_t error_bytes) {
    if (g == nullptr) return fail(error, error_bytes, NDIS_STATUS_INVALID_PARAMETER, "ndisshm_guest_wait: guest is NULL");
    try {
        return answer(g, g->session->wait(timeout_ms), error, error_bytes);
    } catch (const std::bad_alloc&) {
        return fail(error, error_bytes, NDIS_STATUS_RESOURCES, "ndisshm_guest_wait: out of memory");
    }
}

uint32_t ndisshm_guest_rx_burst(ndisshm_guest* g, ndisshm_guest_packet* packets, uint32_t max) {
    if (g == nullptr || packets == nullptr) return 0;
    try {
        return g->session->rx_burst(packets, max);
    } catch (const std::bad_alloc&) {
        return 0;
    }
}

NDIS_STATUS ndisshm_guest_rx_return(ndisshm_guest* g, const ndisshm_guest_packet* packets, uint32_t count) {
    if (g == nullptr || (packets == nullptr && count != 0)) return NDIS_STATUS_INVALID_PARAMETER;
    return g->session->rx_return(packets, count);
}

int ndisshm_guest_fd(ndisshm_guest* g) { return g == nullptr ? -1 : g->session->fd(); }

void ndisshm_guest_close(ndisshm_guest* g) {
    if (g != nullptr) g->session->close();
}

void ndisshm_guest_destroy(ndisshm_guest* g) { delete g; }

void ndisshm_guest_get_stats(const ndisshm_guest* g, ndisshm_guest_stats* stats) {
    if (stats == nullptr) return;
    *stats = g == nullptr ? ndisshm_guest_stats{} : g->session->stats();
}

void* ndisshm_guest_memory(const ndisshm_guest* g, uint64_t* bytes) {
    if (bytes != nullptr) *bytes = g == nullptr ? 0 : g->session->memory_bytes();
    return g == nullptr ? nullptr : g->session->memory();
}

int ndisshm_guest_memory_fd(const ndisshm_guest* g) { return g == nullptr ? -1 : g->session->memory_fd(); }

}  // extern "C"
