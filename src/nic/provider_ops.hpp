// A provider of our own (providers::Provider: NDIS-free, testable alone)
// registered on a binding through the public ops table, as any outside
// provider is. The reverse of core/ops_provider: that one adapts C function
// pointers to the provider interface, this one the provider interface to C
// function pointers. It keeps providers/ free of NDIS types while letting
// drivers above the library's C surface (the guest hub, an emulated NIC, a
// vswitch filter) register them with ndisshm_binding_register_provider, as
// any filter driver registers its handlers.
#pragma once

#include <ndisshm/host.h>

#include "providers/provider.hpp"

namespace ndisshm::nic {

// The table's entries call `provider`, which must outlive the registration
// (until ndisshm_binding_destroy returns). SG ranges go into the caller's
// SGListBuffer; more ranges than it holds: the block is freed again and the
// caller gets NDIS_STATUS_BUFFER_TOO_SHORT with NumberOfElements = the count
// needed, as the default provider does.
ndisshm_provider_ops provider_ops(providers::Provider& provider);

}  // namespace ndisshm::nic
