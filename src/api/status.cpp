// <ndisshm/status.h>: the names and meanings of every status the C API
// returns, NDIS's and ndisshm's own.
#define NDISSHM_BUILDING_LIBRARY 1
#include <ndisshm/status.h>

#include <cstdio>

namespace {

struct Known {
    NDIS_STATUS status;
    const char* name;
    const char* text;
};

constexpr Known kKnown[] = {
    {NDIS_STATUS_SUCCESS, "NDIS_STATUS_SUCCESS", "success"},
    {NDIS_STATUS_PENDING, "NDIS_STATUS_PENDING", "the operation will complete later"},
    {NDIS_STATUS_FAILURE, "NDIS_STATUS_FAILURE", "the operation failed"},
    {NDIS_STATUS_INVALID_PARAMETER, "NDIS_STATUS_INVALID_PARAMETER", "a parameter or handle is not valid"},
    {NDIS_STATUS_RESOURCES, "NDIS_STATUS_RESOURCES", "out of memory or over a limit"},
    {NDIS_STATUS_NOT_SUPPORTED, "NDIS_STATUS_NOT_SUPPORTED", "not supported for this handle or request"},
    {NDIS_STATUS_INVALID_LENGTH, "NDIS_STATUS_INVALID_LENGTH", "a length is out of range"},
    {NDIS_STATUS_INVALID_DATA, "NDIS_STATUS_INVALID_DATA", "the data is not valid"},
    {NDIS_STATUS_BUFFER_TOO_SHORT, "NDIS_STATUS_BUFFER_TOO_SHORT", "a buffer is too small for the result"},
    {NDISSHM_STATUS_TIMEOUT, "NDISSHM_STATUS_TIMEOUT", "nothing arrived in time; the session goes on"},
    {NDISSHM_STATUS_HOST_BYE, "NDISSHM_STATUS_HOST_BYE", "the host ended the session cleanly (BYE)"},
    {NDISSHM_STATUS_HOST_GONE, "NDISSHM_STATUS_HOST_GONE", "the host closed the connection without BYE"},
    {NDISSHM_STATUS_REFUSED, "NDISSHM_STATUS_REFUSED", "the host refused (its reason is in the error buffer)"},
    {NDISSHM_STATUS_PROTOCOL, "NDISSHM_STATUS_PROTOCOL", "the peer broke the host/guest protocol"},
};

const Known* find(NDIS_STATUS s) {
    for (const Known& k : kKnown)
        if (k.status == s) return &k;
    return nullptr;
}

}  // namespace

extern "C" {

const char* ndisshm_status_name(NDIS_STATUS s) {
    if (const Known* k = find(s)) return k->name;
    static thread_local char buf[32];
    std::snprintf(buf, sizeof(buf), "NDIS_STATUS_0x%08X", static_cast<unsigned>(s));
    return buf;
}

const char* ndisshm_status_text(NDIS_STATUS s) {
    const Known* k = find(s);
    return k != nullptr ? k->text : "unknown status";
}

}  // extern "C"
