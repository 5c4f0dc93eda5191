/** @file
 * ndisshm/export.h: the one definition of what every public header of
 * ndisshm shares: NDISSHM_API (the symbols libndisshm.so exports) and the C
 * API's ABI version. Included by <ndis/ndis_shm.h> and every <ndisshm/...>
 * header; there is no need to include it yourself. C11 and C++.
 */
#ifndef NDISSHM_EXPORT_H
#define NDISSHM_EXPORT_H

/** Marks a function of the C API: exported from libndisshm.so with default
 * visibility (everything else of the library is hidden). */
#if defined(__GNUC__)
#define NDISSHM_API __attribute__((visibility("default")))
#else
#define NDISSHM_API
#endif

/** The C API's ABI version, bumped on any incompatible change;
 * ndisshm_abi_version() says which one the library in the process has.
 *
 * 2: one error convention (<ndisshm/status.h>): the guest calls return
 *    NDIS_STATUS with an optional error buffer (ndisshm_guest_status,
 *    ndisshm_guest_status_name and ndisshm_guest_last_error are gone),
 *    ndisshm_guest_create returns the guest through an out parameter,
 *    ndisshm_runtime_create and ndisshm_control_query take an error buffer,
 *    and every config struct has struct_size and an _init function
 *    (ndisshm_guest_config, ndisshm_queue_params and ndisshm_provider_ops
 *    gained them).
 * 1: the first. */
#define NDISSHM_ABI_VERSION 2

#endif /* NDISSHM_EXPORT_H */
