// core::Verifier: counts every violation per kind, and when enabled hands each one to the callback (and
// stderr when asked), with everything the report carries.
#include "core/verifier.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace ndisshm::test {
using namespace ndisshm::core;  // the layer under test
namespace {

struct Seen {
    ndisshm_violation_kind kind;
    std::string kind_name, call, message;
    NDIS_HANDLE adapter, handle;
    std::string file;
    int line;
};

void collect(void* context, const ndisshm_violation* v) {
    static_cast<std::vector<Seen>*>(context)->push_back({v->kind, v->kind_name, v->call, v->message,
                                                         v->adapter, v->handle,
                                                         v->alloc_file ? v->alloc_file : "", v->alloc_line});
}

TEST(Verifier, ReportReachesTheCallbackWithEverything) {
    Verifier v(/*enabled=*/true, /*to_stderr=*/false);
    std::vector<Seen> seen;
    v.set_callback(&collect, &seen);
    int adapter = 0, handle = 0;
    v.report(NDISSHM_VIOLATION_DOUBLE_FREE, "NdisFreeSharedMemory", &adapter, &handle, {"drv.c", 42},
             "double free of block");
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].kind, NDISSHM_VIOLATION_DOUBLE_FREE);
    EXPECT_EQ(seen[0].kind_name, "double-free");
    EXPECT_EQ(seen[0].call, "NdisFreeSharedMemory");
    EXPECT_EQ(seen[0].message, "double free of block");
    EXPECT_EQ(seen[0].adapter, &adapter);
    EXPECT_EQ(seen[0].handle, &handle);
    EXPECT_EQ(seen[0].file, "drv.c");
    EXPECT_EQ(seen[0].line, 42);
}

TEST(Verifier, CountsPerKindAndInTotal) {
    Verifier v(true, false);
    v.report(NDISSHM_VIOLATION_LEAK, "x", nullptr, nullptr, {}, "a");
    v.report(NDISSHM_VIOLATION_LEAK, "x", nullptr, nullptr, {}, "b");
    v.report(NDISSHM_VIOLATION_IRQL, "x", nullptr, nullptr, {}, "c");
    EXPECT_EQ(v.count(NDISSHM_VIOLATION_LEAK), 2u);
    EXPECT_EQ(v.count(NDISSHM_VIOLATION_IRQL), 1u);
    EXPECT_EQ(v.count(NDISSHM_VIOLATION_BAD_HANDLE), 0u);
    EXPECT_EQ(v.total(), 3u);
    EXPECT_EQ(v.count(static_cast<ndisshm_violation_kind>(0)), 0u);
    EXPECT_EQ(v.count(NDISSHM_VIOLATION_KIND_COUNT), 0u);
}

TEST(Verifier, OutOfRangeKindsAreNotCounted) {
    Verifier v(true, false);
    v.report(static_cast<ndisshm_violation_kind>(0), "x", nullptr, nullptr, {}, "zero");
    v.report(NDISSHM_VIOLATION_KIND_COUNT, "x", nullptr, nullptr, {}, "past the end");
    v.report(static_cast<ndisshm_violation_kind>(-3), "x", nullptr, nullptr, {}, "negative");
    EXPECT_EQ(v.total(), 0u);
}

TEST(Verifier, DisabledVerifierCountsButCallsNobody) {
    Verifier v(/*enabled=*/false, /*to_stderr=*/true);
    std::vector<Seen> seen;
    v.set_callback(&collect, &seen);
    testing::internal::CaptureStderr();
    v.report(NDISSHM_VIOLATION_GARBAGE_HANDLE, "NdisFreeSharedMemory", nullptr, nullptr, {}, "garbage");
    v.log("call", "a log line");
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
    EXPECT_TRUE(seen.empty());
    EXPECT_FALSE(v.enabled());
    EXPECT_EQ(v.count(NDISSHM_VIOLATION_GARBAGE_HANDLE), 1u);
}

TEST(Verifier, StderrGetsOneLineNamingCallKindAndMessage) {
    Verifier v(true, /*to_stderr=*/true);
    testing::internal::CaptureStderr();
    v.report(NDISSHM_VIOLATION_BAD_LENGTH, "NdisAllocateSharedMemory", nullptr, nullptr, {},
             "Length 0 is outside");
    const std::string out = testing::internal::GetCapturedStderr();
    EXPECT_THAT(out, testing::HasSubstr("NdisAllocateSharedMemory"));
    EXPECT_THAT(out, testing::HasSubstr("bad-length"));
    EXPECT_THAT(out, testing::HasSubstr("Length 0 is outside"));
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);

    Verifier quiet(true, false);
    testing::internal::CaptureStderr();
    quiet.report(NDISSHM_VIOLATION_BAD_LENGTH, "NdisAllocateSharedMemory", nullptr, nullptr, {}, "quiet");
    quiet.log("call", "quiet");
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Verifier, ClearingTheCallbackStopsCallsButNotCounts) {
    Verifier v(true, false);
    std::vector<Seen> seen;
    v.set_callback(&collect, &seen);
    v.report(NDISSHM_VIOLATION_LEAK, "x", nullptr, nullptr, {}, "one");
    v.set_callback(nullptr, nullptr);
    v.report(NDISSHM_VIOLATION_LEAK, "x", nullptr, nullptr, {}, "two");
    EXPECT_EQ(seen.size(), 1u);
    EXPECT_EQ(v.count(NDISSHM_VIOLATION_LEAK), 2u);
}

TEST(Verifier, EveryKindHasADistinctName) {
    std::set<std::string> names;
    for (int k = NDISSHM_VIOLATION_BAD_HANDLE; k < NDISSHM_VIOLATION_KIND_COUNT; ++k) {
        const std::string name = violation_kind_name(static_cast<ndisshm_violation_kind>(k));
        EXPECT_NE(name, "unknown") << "kind " << k;
        names.insert(name);
    }
    EXPECT_EQ(names.size(), static_cast<size_t>(NDISSHM_VIOLATION_KIND_COUNT - 1));
    EXPECT_STREQ(violation_kind_name(NDISSHM_VIOLATION_KIND_COUNT), "unknown");
}

TEST(Verifier, GlobalVerifierIsOneProcessWideInstance) {
    EXPECT_EQ(&Verifier::global(), &Verifier::global());
    EXPECT_TRUE(Verifier::global().enabled());
}

}  // namespace
}  // namespace ndisshm::test
