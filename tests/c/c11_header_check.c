/* Compiled as strict C11 with -pedantic -Werror in every build: the public
 * headers must stay valid C for driver code. The layout asserts inside
 * ndis_shm.h run here as C's _Static_assert. */
#include <ndis/ndis_shm.h>
#include <ndisshm/guest.h>
#include <ndisshm/status.h>
#include <ndisshm/export.h>
#include <ndisshm/host.h>
#include <ndisshm/afxdp.h>
#include <ndisshm/hub.h>

_Static_assert(sizeof(SCATTER_GATHER_LIST) == 16, "C sees the 16-byte list header");
_Static_assert(BYTES_TO_PAGES(1) == 1 && BYTES_TO_PAGES(4096) == 1 && BYTES_TO_PAGES(4097) == 2, "BYTES_TO_PAGES");

int ndisshm_c11_header_check(void) { return NDISSHM_ABI_VERSION; }

/* ndis.h's physical address spellings, as a C driver types them: a constant
 * initializer at file scope, the pointer type, the get/set macros. */
static const NDIS_PHYSICAL_ADDRESS ndisshm_c11_no_address = NDIS_PHYSICAL_ADDRESS_CONST(0xFFFFFFFF, -1);
_Static_assert(sizeof(NDIS_PHYSICAL_ADDRESS) == 8, "NDIS_PHYSICAL_ADDRESS is a PHYSICAL_ADDRESS");
_Static_assert(sizeof(((SCATTER_GATHER_ELEMENT *)0)->Address) == sizeof(NDIS_PHYSICAL_ADDRESS), "SG Address");

int ndisshm_c11_physical_address_check(PNDIS_PHYSICAL_ADDRESS address)
{
    NdisSetPhysicalAddressHigh(*address, NdisGetPhysicalAddressHigh(ndisshm_c11_no_address));
    NdisSetPhysicalAddressLow(*address, NdisGetPhysicalAddressLow(ndisshm_c11_no_address));
    return address->QuadPart == -1;
}
