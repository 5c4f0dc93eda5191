// What the demo's miniport allocates, and where: the same plan on every
// adapter, so that only the provider differs between them.
//
// Per adapter, the way VMQ miniports do it (spec sections 4 and 6):
//   queue 0 (default)   transmit and ring blocks, one of each non-receive usage
//                       (Undefined, Xmit, XmitHeader, XmitData, Other)
//   queue 1, 4, 7, ...  Receive blocks
//   queue 2, 5, 8, ...  lookahead split: ReceiveLookahead + ReceivePostLookahead per buffer
//   queue 3, 6, 9, ...  header-data split: ReceiveHeader + ReceiveData per buffer
// so three queues or more use every NDIS_SHARED_MEMORY_USAGE value.
#pragma once

#include <ndis/ndis_shm.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ndisshm::cli {

struct Workload {
    static constexpr uint32_t kMaxQueues = 32;
    static constexpr uint32_t kMaxBlocksPerQueue = 1024;
    static constexpr uint32_t kMaxBlockSize = 16u << 20;
    // What the demo may hold at once, over every adapter.
    static constexpr uint64_t kMaxBytes = uint64_t{1} << 30;

    uint32_t queues = 3;
    uint32_t blocks_per_queue = 4;
    uint32_t block_size = 65536;
};

struct PlannedBlock {
    NDIS_RECEIVE_QUEUE_ID queue;
    NDIS_SHARED_MEMORY_USAGE usage;
    ULONG length;
};

enum class QueueLayout { Transmit, Receive, LookaheadSplit, HeaderDataSplit };

QueueLayout layout_of(NDIS_RECEIVE_QUEUE_ID queue);
// "lookahead split (ReceiveLookahead + ReceivePostLookahead)"
std::string describe(QueueLayout layout);

// The blocks of one queue, in the order the miniport allocates them.
std::vector<PlannedBlock> plan_queue(const Workload& w, NDIS_RECEIVE_QUEUE_ID queue);
// Every block of one adapter: queue 0 first, then 1..queues.
std::vector<PlannedBlock> plan_adapter(const Workload& w);

// Empty if the workload fits the demo's memory budget on `adapters`
// adapters, else why not, naming the options.
std::string check_budget(const Workload& w, unsigned adapters);

}  // namespace ndisshm::cli
