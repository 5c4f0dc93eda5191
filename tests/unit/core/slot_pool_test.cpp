// core::SlotPool: handles are slot addresses; find() recognises a live object's handle from range,
// stride and live flag alone, and refuses everything else without dereferencing it.
#include "core/slot_pool.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ndisshm::test {
using namespace ndisshm::core;  // the layer under test
namespace {

struct Obj {
    static inline int alive = 0;
    explicit Obj(std::string n) : name(std::move(n)) { ++alive; }
    ~Obj() { --alive; }
    uint64_t tag = 7;
    std::string name;  // not at offset 0
};

using Pool = SlotPool<Obj, 4>;

TEST(SlotPool, CreateGivesLiveObjectsThatFindReturns) {
    auto pool = std::make_unique<Pool>();
    Obj* a = pool->create("a");
    Obj* b = pool->create("b");
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(a->name, "a");
    EXPECT_EQ(pool->find(a), a);
    EXPECT_EQ(pool->find(b), b);
    pool->destroy(a);
    pool->destroy(b);
}

TEST(SlotPool, FindRefusesOutOfRangeHandles) {
    auto pool = std::make_unique<Pool>();
    Obj* a = pool->create("a");
    Obj* b = pool->create("b");
    const auto stride = reinterpret_cast<char*>(b) - reinterpret_cast<char*>(a);
    ASSERT_GT(stride, 0);
    int on_stack = 0;
    EXPECT_EQ(pool->find(nullptr), nullptr);
    EXPECT_EQ(pool->find(&on_stack), nullptr);
    EXPECT_EQ(pool->find(reinterpret_cast<char*>(a) - stride), nullptr);      // before the first slot
    EXPECT_EQ(pool->find(reinterpret_cast<char*>(a) + 4 * stride), nullptr);  // one past the last
    EXPECT_EQ(pool->find(reinterpret_cast<void*>(UINTPTR_MAX)), nullptr);
    pool->destroy(a);
    pool->destroy(b);
}

TEST(SlotPool, FindRefusesMisalignedHandles) {
    auto pool = std::make_unique<Pool>();
    Obj* a = pool->create("a");
    for (int off : {1, 4, 8, 16, 63}) EXPECT_EQ(pool->find(reinterpret_cast<char*>(a) + off), nullptr) << off;
    EXPECT_EQ(pool->find(&a->name), nullptr) << "a member's address is not the handle";
    pool->destroy(a);
}

TEST(SlotPool, FindRefusesDeadAndNeverUsedSlots) {
    auto pool = std::make_unique<Pool>();
    Obj* a = pool->create("a");
    Obj* b = pool->create("b");
    const auto stride = reinterpret_cast<char*>(b) - reinterpret_cast<char*>(a);
    EXPECT_EQ(pool->find(reinterpret_cast<char*>(b) + stride), nullptr) << "slot never used";
    pool->destroy(a);
    EXPECT_EQ(pool->find(a), nullptr) << "slot dead";
    EXPECT_EQ(pool->find(b), b);
    pool->destroy(b);
    EXPECT_EQ(pool->find(b), nullptr);
}

TEST(SlotPool, DestroyRunsTheDestructor) {
    auto pool = std::make_unique<Pool>();
    const int before = Obj::alive;
    Obj* a = pool->create("a");
    EXPECT_EQ(Obj::alive, before + 1);
    pool->destroy(a);
    EXPECT_EQ(Obj::alive, before);
}

TEST(SlotPool, CreateReturnsNullWhenFull) {
    auto pool = std::make_unique<Pool>();
    Obj* objs[4];
    for (auto& o : objs) ASSERT_NE(o = pool->create("x"), nullptr);
    EXPECT_EQ(pool->create("fifth"), nullptr);
    pool->destroy(objs[2]);
    Obj* again = pool->create("again");
    EXPECT_EQ(again, objs[2]) << "the only free slot";
    for (auto* o : {objs[0], objs[1], again, objs[3]}) pool->destroy(o);
}

TEST(SlotPool, DestroyedSlotsAreReusedAsLateAsPossible) {
    auto pool = std::make_unique<Pool>();
    Obj* a = pool->create("a");
    pool->destroy(a);
    Obj* b = pool->create("b");
    EXPECT_NE(b, a) << "a stale handle must stay dead while other slots are free";
    Obj* c = pool->create("c");
    Obj* d = pool->create("d");
    EXPECT_NE(c, a);
    EXPECT_NE(d, a);
    Obj* e = pool->create("e");  // wraps around to the first slot
    EXPECT_EQ(e, a);
    EXPECT_EQ(pool->find(a)->name, "e");
    for (auto* o : {b, c, d, e}) pool->destroy(o);
}

}  // namespace
}  // namespace ndisshm::test
