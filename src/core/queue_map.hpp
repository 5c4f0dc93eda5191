// QueueMap: an adapter's receive queues by QueueId.
//
// Every NdisAllocateSharedMemory looks its QueueId up here, under one book
// lock. A hash map's find divides by its bucket count and follows a node:
// perf put it at 8% of a 64 KiB same-owner pair (11 ns of 144). Miniports
// number their queues from 1 up (NDIS's own default queue is 0, and a VMQ
// NIC has tens of queues), so ids below kDirect are also kept in a plain
// array that one load reads; the map holds every queue and owns it, and is
// the only way to the rare id at or above kDirect.
//
// Not thread-safe by itself: the adapter's books say who may write (every
// book locked) and who may read (any one book locked).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include <ndis/ndis_shm.h>

namespace ndisshm::core {

template <class Q>
class QueueMap {
public:
    static constexpr NDIS_RECEIVE_QUEUE_ID kDirect = 64;
    using Map = std::unordered_map<NDIS_RECEIVE_QUEUE_ID, std::unique_ptr<Q>>;

    // The queue `id`, or nullptr when the adapter has none of that id.
    Q* find(NDIS_RECEIVE_QUEUE_ID id) const {
        if (id < kDirect) return direct_[id];
        auto it = all_.find(id);
        return it == all_.end() ? nullptr : it->second.get();
    }
    bool contains(NDIS_RECEIVE_QUEUE_ID id) const { return find(id) != nullptr; }

    // Adds `queue` as `id`, which must not be here yet; returns it.
    Q& add(NDIS_RECEIVE_QUEUE_ID id, std::unique_ptr<Q> queue) {
        Q& q = *queue;
        all_.emplace(id, std::move(queue));
        if (id < kDirect) direct_[id] = &q;
        return q;
    }
    // Removes and destroys the queue `id`, if there is one.
    void erase(NDIS_RECEIVE_QUEUE_ID id) {
        if (id < kDirect) direct_[id] = nullptr;
        all_.erase(id);
    }

    size_t size() const { return all_.size(); }
    // Every queue, as (id, owner) pairs, in no particular order.
    typename Map::const_iterator begin() const { return all_.begin(); }
    typename Map::const_iterator end() const { return all_.end(); }

private:
    Map all_;
    std::array<Q*, kDirect> direct_{};
};

}  // namespace ndisshm::core
