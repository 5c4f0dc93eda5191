// os::current_cpu: one load from the rseq area glibc registers, where it has
// registered one, and sched_getcpu otherwise; both must name the CPU the
// thread is pinned to.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/rseq.h>

#include "os/os.hpp"

namespace ndisshm::test {
namespace {

// Runs `check(cpu)` pinned to each CPU the thread may use (at most 8), then
// puts the thread's affinity back.
template <class F>
void on_each_cpu(F&& check) {
    cpu_set_t old;
    ASSERT_EQ(sched_getaffinity(0, sizeof(old), &old), 0);
    unsigned tried = 0;
    for (unsigned cpu = 0; cpu < CPU_SETSIZE && tried < 8; ++cpu) {
        if (!CPU_ISSET(cpu, &old)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
        check(cpu);
        ++tried;
    }
    ASSERT_EQ(sched_setaffinity(0, sizeof(old), &old), 0);
    EXPECT_GT(tried, 0u);
}

TEST(CurrentCpu, ReadsTheRseqAreaWhereGlibcRegisteredOne) {
    if (__rseq_size == 0)
        GTEST_SKIP() << "glibc registered no rseq area (GLIBC_TUNABLES=glibc.pthread.rseq=0, or a kernel "
                        "without rseq): current_cpu falls back to sched_getcpu, which the next test checks";
    EXPECT_NE(os::detail::rseq_cpu_id_offset, 0) << "glibc registered rseq, but current_cpu does not read it";
    on_each_cpu([](unsigned cpu) { EXPECT_EQ(os::current_cpu(), cpu); });
}

TEST(CurrentCpu, TheCallAndTheLoadAgreeOnEveryCpu) {
    on_each_cpu([](unsigned cpu) {
        EXPECT_EQ(os::detail::current_cpu_by_call(), cpu);
        EXPECT_EQ(os::current_cpu(), cpu);
    });
}

}  // namespace
}  // namespace ndisshm::test
