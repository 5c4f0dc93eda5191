/* A program outside the tree, built against the installed ndisshm. */
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>
#include <stdio.h>

int main(void) {
    ndisshm_runtime *rt;
    NDIS_HANDLE nic, block;
    SCATTER_GATHER_ELEMENT storage[2];
    PSCATTER_GATHER_LIST sg = (PSCATTER_GATHER_LIST)(void *)storage;
    NDIS_SHARED_MEMORY_PARAMETERS p;
    NDIS_STATUS s;
    if (ndisshm_abi_version() != NDISSHM_ABI_VERSION) return 1;
    if (ndisshm_runtime_create(NULL, &rt, NULL, 0) != NDIS_STATUS_SUCCESS) return 1;
    if (ndisshm_adapter_create(rt, "consumer", &nic) != NDIS_STATUS_SUCCESS) return 1;
    NdisZeroMemory(&p, sizeof(p));
    p.Header.Type = NDIS_OBJECT_TYPE_DEFAULT;
    p.Header.Revision = NDIS_SHARED_MEMORY_PARAMETERS_REVISION_1;
    p.Header.Size = NDIS_SIZEOF_SHARED_MEMORY_PARAMETERS_REVISION_1;
    p.Usage = NdisSharedMemoryUsageReceive;
    p.PreferredNode = MM_ANY_NODE_OK;
    p.Length = 4096;
    p.SGListBuffer = sg;
    p.SGListBufferLength = NDISSHM_SG_LIST_BYTES(1);
    s = NdisAllocateSharedMemory(nic, &p, &block);
    if (s != NDIS_STATUS_SUCCESS || p.VirtualAddress == NULL || sg->NumberOfElements != 1) return 1;
    NdisFreeSharedMemory(nic, block);
    ndisshm_runtime_destroy(rt);
    printf("consumer: ndisshm %s, one block allocated and freed\n", ndisshm_version());
    return 0;
}
