// core::QueueMap: an adapter's queues by id, ids below kDirect through an
// array as well as the map; both ways must agree on every add and erase.
#include "core/queue_map.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace ndisshm::test {
using namespace ndisshm::core;  // the layer under test
namespace {

struct Q {
    explicit Q(NDIS_RECEIVE_QUEUE_ID i) : id(i) {}
    NDIS_RECEIVE_QUEUE_ID id;
};
using Map = QueueMap<Q>;

TEST(QueueMap, FindsNothingItWasNotGiven) {
    Map m;
    EXPECT_EQ(m.find(0), nullptr);
    EXPECT_EQ(m.find(Map::kDirect - 1), nullptr);
    EXPECT_EQ(m.find(Map::kDirect), nullptr);
    EXPECT_EQ(m.find(0xFFFFFFFFu), nullptr);
    EXPECT_EQ(m.size(), 0u);
}

TEST(QueueMap, IdsInsideAndOutsideTheDirectRangeAreFoundUntilErased) {
    Map m;
    const NDIS_RECEIVE_QUEUE_ID ids[] = {0, 1, Map::kDirect - 1, Map::kDirect, 1000, 0xFFFFFFFFu};
    for (NDIS_RECEIVE_QUEUE_ID id : ids) {
        Q& q = m.add(id, std::make_unique<Q>(id));
        EXPECT_EQ(q.id, id);
    }
    EXPECT_EQ(m.size(), std::size(ids));
    for (NDIS_RECEIVE_QUEUE_ID id : ids) {
        ASSERT_NE(m.find(id), nullptr) << id;
        EXPECT_EQ(m.find(id)->id, id);
        EXPECT_TRUE(m.contains(id));
    }
    EXPECT_EQ(m.find(2), nullptr) << "a neighbour of a queue is not a queue";
    size_t seen = 0;
    for (const auto& [id, q] : m) {
        EXPECT_EQ(q->id, id);
        ++seen;
    }
    EXPECT_EQ(seen, std::size(ids));
    for (NDIS_RECEIVE_QUEUE_ID id : ids) {
        m.erase(id);
        EXPECT_EQ(m.find(id), nullptr) << id << " is still found after erase";
        EXPECT_FALSE(m.contains(id));
    }
    EXPECT_EQ(m.size(), 0u);
}

TEST(QueueMap, AnIdAddedAgainAfterEraseIsTheNewQueue) {
    Map m;
    Q& first = m.add(5, std::make_unique<Q>(5));
    first.id = 50;
    m.erase(5);
    m.erase(5);  // nothing there: no effect
    Q& second = m.add(5, std::make_unique<Q>(5));
    EXPECT_EQ(m.find(5), &second);
    EXPECT_EQ(m.find(5)->id, 5u);
}

}  // namespace
}  // namespace ndisshm::test
