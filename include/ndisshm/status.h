/** @file
 * ndisshm/status.h: the one error convention of ndisshm's C API.
 *
 * Every call that can fail returns an NDIS_STATUS, as NDIS's own calls do:
 * NDIS_STATUS_SUCCESS (0), or a code whose meaning ndisshm_status_text()
 * gives in words. A call whose failure can have a reason the status cannot
 * carry (a path that does not exist, a host that refused a guest, a config
 * field out of range) also takes an optional error buffer, always as its last
 * two parameters:
 *
 * @code
 *   char error[256];
 *   NDIS_STATUS s = ndisshm_guest_connect(guest, path, 5000, error, sizeof error);
 *   if (s != NDIS_STATUS_SUCCESS)
 *       fprintf(stderr, "%s: %s\n", ndisshm_status_text(s), error);
 * @endcode
 *
 * The buffer may be NULL (error_bytes 0); when given, it always holds a
 * NUL-terminated string on return ("" on success), cut at error_bytes - 1.
 * Calls a driver makes on NDIS's side (adapters, queues, bindings, blocks)
 * report misuse through the verifier instead, with the reason, as Windows'
 * Driver Verifier does (<ndisshm/host.h>).
 *
 * Besides NDIS's codes, the guest library returns a few of ndisshm's own,
 * NTSTATUS customer codes (bit 29 set, facility 0xA5D) so they can never be
 * mistaken for a Windows code:
 *   NDISSHM_STATUS_TIMEOUT   success class (>= 0): nothing happened in time, call again;
 *   NDISSHM_STATUS_HOST_BYE  warning class (< 0): the host ended the session cleanly;
 *   NDISSHM_STATUS_HOST_GONE, NDISSHM_STATUS_REFUSED, NDISSHM_STATUS_PROTOCOL
 *                            error class: the session ended, the error buffer says why.
 * So `s >= 0` (NT_SUCCESS) means the session goes on. C11 and C++.
 */
#ifndef NDISSHM_STATUS_H
#define NDISSHM_STATUS_H

#include <ndis/ndis_shm.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Nothing arrived within the timeout; the session goes on (success class). */
#define NDISSHM_STATUS_TIMEOUT ((NDIS_STATUS)0x6A5D0001L)
/** The host said BYE and closed the connection: a clean end (warning class). */
#define NDISSHM_STATUS_HOST_BYE ((NDIS_STATUS)0xAA5D0002L)
/** The host closed the connection without BYE: it died or was killed. */
#define NDISSHM_STATUS_HOST_GONE ((NDIS_STATUS)0xEA5D0003L)
/** The host sent ERROR (memory refused, host full, ...); its reason is in the error buffer. */
#define NDISSHM_STATUS_REFUSED ((NDIS_STATUS)0xEA5D0004L)
/** The peer sent a malformed or unexpected message. */
#define NDISSHM_STATUS_PROTOCOL ((NDIS_STATUS)0xEA5D0005L)

/** The code's name ("NDIS_STATUS_RESOURCES", "NDISSHM_STATUS_HOST_GONE"), or
 * "NDIS_STATUS_0x<hex>" for one neither NDIS nor ndisshm defines.
 * @param status any NDIS_STATUS.
 * @return a static string, never NULL. */
NDISSHM_API const char *ndisshm_status_name(NDIS_STATUS status);

/** What the code means, in words ("out of memory or over a limit"), for
 * messages a person reads; "unknown status" for one neither NDIS nor ndisshm
 * defines.
 * @param status any NDIS_STATUS.
 * @return a static string, never NULL. */
NDISSHM_API const char *ndisshm_status_text(NDIS_STATUS status);

#ifdef __cplusplus
}
#endif

#endif /* NDISSHM_STATUS_H */
