#include "tour/workload.hpp"

#include <algorithm>

namespace ndisshm::cli {

QueueLayout layout_of(NDIS_RECEIVE_QUEUE_ID queue) {
    if (queue == NDIS_DEFAULT_RECEIVE_QUEUE_ID) return QueueLayout::Transmit;
    switch (queue % 3) {
        case 1:
            return QueueLayout::Receive;
        case 2:
            return QueueLayout::LookaheadSplit;
        default:
            return QueueLayout::HeaderDataSplit;
    }
}

std::string describe(QueueLayout layout) {
    switch (layout) {
        case QueueLayout::Transmit:
            return "transmit and rings (Undefined, Xmit, XmitHeader, XmitData, Other)";
        case QueueLayout::Receive:
            return "Receive";
        case QueueLayout::LookaheadSplit:
            return "lookahead split (ReceiveLookahead + ReceivePostLookahead)";
        case QueueLayout::HeaderDataSplit:
            return "header-data split (ReceiveHeader + ReceiveData)";
    }
    return "?";
}

std::vector<PlannedBlock> plan_queue(const Workload& w, NDIS_RECEIVE_QUEUE_ID queue) {
    // Lookahead and header parts hold headers only: a page is plenty.
    const ULONG small = std::min<ULONG>(w.block_size, PAGE_SIZE);
    const ULONG big = w.block_size;
    std::vector<PlannedBlock> out;
    switch (layout_of(queue)) {
        case QueueLayout::Transmit:
            for (auto u :
                 {NdisSharedMemoryUsageUndefined, NdisSharedMemoryUsageXmit, NdisSharedMemoryUsageXmitHeader,
                  NdisSharedMemoryUsageXmitData, NdisSharedMemoryUsageOther})
                out.push_back({queue, u, u == NdisSharedMemoryUsageXmitHeader ? small : big});
            break;
        case QueueLayout::Receive:
            for (uint32_t i = 0; i < w.blocks_per_queue; ++i)
                out.push_back({queue, NdisSharedMemoryUsageReceive, big});
            break;
        case QueueLayout::LookaheadSplit:
            for (uint32_t i = 0; i < w.blocks_per_queue; ++i) {
                out.push_back({queue, NdisSharedMemoryUsageReceiveLookahead, small});
                out.push_back({queue, NdisSharedMemoryUsageReceivePostLookahead, big});
            }
            break;
        case QueueLayout::HeaderDataSplit:
            for (uint32_t i = 0; i < w.blocks_per_queue; ++i) {
                out.push_back({queue, NdisSharedMemoryUsageReceiveHeader, small});
                out.push_back({queue, NdisSharedMemoryUsageReceiveData, big});
            }
            break;
    }
    return out;
}

std::vector<PlannedBlock> plan_adapter(const Workload& w) {
    std::vector<PlannedBlock> out;
    for (NDIS_RECEIVE_QUEUE_ID q = 0; q <= w.queues; ++q) {
        auto blocks = plan_queue(w, q);
        out.insert(out.end(), blocks.begin(), blocks.end());
    }
    return out;
}

std::string check_budget(const Workload& w, unsigned adapters) {
    uint64_t bytes = 0;
    for (const auto& b : plan_adapter(w))
        bytes += (uint64_t{b.length} + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
    bytes *= adapters;
    if (bytes <= Workload::kMaxBytes) return {};
    return "--queues " + std::to_string(w.queues) + " with --blocks-per-queue " +
           std::to_string(w.blocks_per_queue) + " and --block-size " + std::to_string(w.block_size) +
           " would hold " + std::to_string(bytes >> 20) + " MiB at once; the demo stays under " +
           std::to_string(Workload::kMaxBytes >> 20) + " MiB";
}

}  // namespace ndisshm::cli
