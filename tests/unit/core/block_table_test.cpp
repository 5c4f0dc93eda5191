// core::BlockTable: records are carved in order from one array; find() names a record only for a
// handle that is exactly a carved record's address.
#include "core/block_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace ndisshm::test {
using namespace ndisshm::core;  // the layer under test
namespace {

// Raw, suitably aligned storage for n records, as the runtime's reserved mapping is.
struct Storage {
    explicit Storage(size_t n)
        : bytes(new (std::align_val_t{alignof(Block)}) unsigned char[n * sizeof(Block)]) {}
    ~Storage() { ::operator delete[](bytes, std::align_val_t{alignof(Block)}); }
    Block* base() const { return reinterpret_cast<Block*>(bytes); }
    unsigned char* bytes;
};

TEST(BlockTable, CarveHandsOutRecordsInOrderUntilFull) {
    Storage s(3);
    BlockTable t(s.base(), 3);
    EXPECT_EQ(t.capacity(), 3u);
    EXPECT_EQ(t.base(), s.base());
    for (uint64_t i = 0; i < 3; ++i) {
        Block* b = t.carve();
        ASSERT_EQ(b, &s.base()[i]);
        EXPECT_EQ(b->state.load(), BlockState::Unused) << "a carved record starts unused";
        EXPECT_EQ(b->adapter, nullptr);
        EXPECT_EQ(t.carved(), i + 1);
    }
    EXPECT_EQ(t.carve(), nullptr);
    EXPECT_EQ(t.carve(), nullptr);
    EXPECT_EQ(t.carved(), 3u);
}

TEST(BlockTable, FindNamesOnlyCarvedRecords) {
    Storage s(4);
    BlockTable t(s.base(), 4);
    EXPECT_EQ(t.find(&s.base()[0]), nullptr) << "nothing carved yet";
    Block* a = t.carve();
    Block* b = t.carve();
    EXPECT_EQ(t.find(a), a);
    EXPECT_EQ(t.find(b), b);
    EXPECT_EQ(t.find(&s.base()[2]), nullptr) << "inside the table but not carved";
    EXPECT_EQ(t.find(&s.base()[4]), nullptr) << "past the table";
}

TEST(BlockTable, FindRefusesMisalignedAndForeignHandles) {
    Storage s(4);
    BlockTable t(s.base(), 4);
    Block* a = t.carve();
    t.carve();
    const auto* p = reinterpret_cast<const unsigned char*>(a);
    for (size_t off : {size_t{1}, size_t{8}, sizeof(Block) - 1, sizeof(Block) + 8})
        EXPECT_EQ(t.find(p + off), nullptr) << off;
    int on_stack = 0;
    EXPECT_EQ(t.find(nullptr), nullptr);
    EXPECT_EQ(t.find(&on_stack), nullptr);
    EXPECT_EQ(t.find(p - sizeof(Block)), nullptr);
    EXPECT_EQ(t.find(reinterpret_cast<void*>(UINTPTR_MAX - 7)), nullptr);
}

TEST(BlockTable, FindStillRefusesPastCapacityAfterTheTableFilledUp) {
    Storage s(2);
    BlockTable t(s.base(), 2);
    ASSERT_NE(t.carve(), nullptr);
    ASSERT_NE(t.carve(), nullptr);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(t.carve(), nullptr);
    EXPECT_EQ(t.find(&s.base()[2]), nullptr);
    EXPECT_EQ(t.find(&s.base()[3]), nullptr);
    EXPECT_EQ(t.find(&s.base()[1]), &s.base()[1]);
}

TEST(BlockTable, ConcurrentCarvesNeverShareOrOverrunARecord) {
    constexpr uint64_t kCapacity = 4000;
    Storage s(kCapacity);
    BlockTable t(s.base(), kCapacity);
    std::vector<std::vector<Block*>> got(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&, i] {
            for (int n = 0; n < 1500; ++n)
                if (Block* b = t.carve()) got[i].push_back(b);
        });
    for (auto& th : threads) th.join();
    std::set<Block*> all;
    for (auto& g : got)
        for (Block* b : g) {
            EXPECT_TRUE(all.insert(b).second) << "record handed out twice";
            EXPECT_LT(b, s.base() + kCapacity);
        }
    EXPECT_EQ(all.size(), kCapacity);
    EXPECT_EQ(t.carved(), kCapacity);
}

// A full table still sees carve() calls (every allocation asks before it falls back on the quarantine).
// Meanwhile find() must never name a record past the end of the table: a garbage handle pointing just
// past it would be dereferenced, outside the table's mapping.
TEST(BlockTable, FindNeverNamesARecordPastCapacityWhileAFullTableIsAskedForMore) {
    constexpr uint64_t kCapacity = 2;
    Storage s(kCapacity + 8);
    BlockTable t(s.base(), kCapacity);
    ASSERT_NE(t.carve(), nullptr);
    ASSERT_NE(t.carve(), nullptr);
    std::atomic<bool> stop{false};
    std::thread carver([&] {
        while (!stop.load(std::memory_order_relaxed)) t.carve();
    });
    uint64_t wrong = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    while (std::chrono::steady_clock::now() < until)
        for (int i = 0; i < 1000; ++i)
            if (t.find(&s.base()[kCapacity]) != nullptr) ++wrong;
    stop = true;
    carver.join();
    EXPECT_EQ(wrong, 0u) << "find() named a record past the table's capacity";
}

}  // namespace
}  // namespace ndisshm::test
