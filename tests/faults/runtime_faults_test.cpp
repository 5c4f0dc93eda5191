// The kernel refusing the runtime's memory, at every call site in turn: each
// mmap, memfd_create, fcntl, mbind, madvise, ftruncate and fallocate (and, in
// physical address mode, open, pread, mlock, munlock) that a runtime's life
// makes fails once with ENOMEM, EINTR and EAGAIN, through the public API only.
//
// The life: create the runtime, an adapter and a queue; allocate blocks of
// growing sizes (so the arena's file grows, ftruncate), free some and
// allocate again (reuse: zeroing, fallocate punch hole), free, then destroy
// the adapter with two blocks still out (teardown frees them). After each
// fault: the call that met it answered NDIS_STATUS_RESOURCES (EINTR at a call
// that cannot be interrupted: RESOURCES or FAILURE), and said why on stderr
// (the verifier log) naming the operation and errno's text; a fault the code
// may absorb (an interrupted call asked again, THP advice, a punch hole that
// falls back to memset, munlock) changed nothing; every other call succeeded
// as without the fault; the books matched what the driver holds after every
// step; teardown freed every block; no fd and no mapping was left.
#include <ndis/ndis_shm.h>
#include <ndisshm/host.h>

#include <memory>
#include <string>
#include <vector>

#include "faults/fault_support.hpp"
#include "faults/runtime_scenario.hpp"
#include "common/memory_support.hpp"

namespace ndisshm::test {
namespace {

// The process-wide verifier must log runtime creation failures to stderr:
// loud, whatever the environment says (it reads NDISSHM_QUIET at first use).
const bool kLoud = ::unsetenv("NDISSHM_QUIET") == 0;

// Where an absorbed fault is the right answer, by scenario.
bool absorbed(const RuntimeVariant& v, const std::string& op, int err) {
    if (err == EINTR && retries_eintr(op)) return true;
    if (op == "madvise" || op == "munlock") return true;   // advice; unlocking a block being freed
    if (op == "fallocate" && !v.huge) return true;          // punch hole: memset instead
    return false;
}

void expect_fault_handled(const RuntimeVariant& v, const std::string& op, int err, uint64_t nth) {
    SCOPED_TRACE(v.name + ": " + op + " call " + std::to_string(nth) + " fails with " + errno_name(err));
    ASSERT_TRUE(fault::arm(op, nth, err));
    RuntimeRun run(v);
    run.execute();
    const uint64_t injected = fault::injected();
    fault::disarm();
    Tally::get().add(v.name, op, injected, 1);
    run.expect_clean_end();
    if (injected == 0) return;  // this life made fewer such calls this time: nothing to judge
    ASSERT_EQ(injected, 1u);
    const RuntimeRun::Step* hit = run.step_that_met_the_fault();
    ASSERT_NE(hit, nullptr) << "the fault fell between steps";
    const bool expect_ok = absorbed(v, op, err);
    for (const auto& s : run.steps()) {
        if (&s == hit && !expect_ok) continue;
        EXPECT_EQ(s.status, NDIS_STATUS_SUCCESS) << s.name << ": " << ndisshm_status_name(s.status) << "\n" << s.log;
    }
    if (expect_ok) return;
    if (err == EINTR)
        EXPECT_TRUE(hit->status == NDIS_STATUS_RESOURCES || hit->status == NDIS_STATUS_FAILURE)
            << hit->name << ": " << ndisshm_status_name(hit->status);
    else
        EXPECT_EQ(hit->status, NDIS_STATUS_RESOURCES) << hit->name << ": " << ndisshm_status_name(hit->status);
    EXPECT_NE(hit->log.find(op), std::string::npos) << hit->name << " logged:\n" << hit->log;
    EXPECT_NE(hit->log.find(std::strerror(err)), std::string::npos) << hit->name << " logged:\n" << hit->log;
}

void every_call_site(const RuntimeVariant& v) {
    ASSERT_TRUE(kLoud);
    Disarm disarm;
    // A life without faults, counting each operation's calls.
    fault::count_only();
    std::map<std::string, uint64_t> calls;
    {
        RuntimeRun run(v);
        run.execute();
        for (const auto& op : fault::operations())
            if (fault::calls(op) != 0) calls[op] = fault::calls(op);
        fault::disarm();
        for (const auto& s : run.steps()) ASSERT_EQ(s.status, NDIS_STATUS_SUCCESS) << s.name << "\n" << s.log;
        run.expect_clean_end();
    }
    ASSERT_FALSE(calls.empty());
    for (const auto& [op, n] : calls) {
        for (uint64_t nth = 1; nth <= n; ++nth) {
            for (int err : kMemoryErrnos) {
                expect_fault_handled(v, op, err, nth);
                if (::testing::Test::HasFatalFailure()) return;
            }
        }
    }
}

TEST(RuntimeFaults, BasePagesEveryCallSiteEveryErrno) { every_call_site(RuntimeVariant::base()); }

TEST(RuntimeFaults, PhysicalAddressesEveryCallSiteEveryErrno) {
    if (auto why = RuntimeVariant::physical_unavailable(); !why.empty()) GTEST_SKIP() << why;
    every_call_site(RuntimeVariant::physical());
}

TEST(RuntimeFaults, HugePagesEveryCallSiteEveryErrno) {
    ndisshm::test::HugePageReservation pool(8);
    if (!pool.ok()) GTEST_SKIP() << pool.why();
    every_call_site(RuntimeVariant::huge_pages());
}

// The seam itself: counting, the nth call, several in a row, and disarmed silence.
TEST(RuntimeFaultsSeam, FailsExactlyTheArmedCalls) {
    Disarm disarm;
    EXPECT_FALSE(fault::arm("no-such-call", 1, ENOMEM)) << "a typo must not arm silently";
    ASSERT_TRUE(fault::arm("socketpair", 2, EMFILE, 2));
    EXPECT_TRUE(ndisshm::os::seqpacket_pair().ok());
    for (int i = 0; i < 2; ++i) {
        auto r = ndisshm::os::seqpacket_pair();
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error().err, EMFILE);
        EXPECT_NE(r.error().message().find("socketpair"), std::string::npos) << r.error().message();
    }
    EXPECT_TRUE(ndisshm::os::seqpacket_pair().ok());
    EXPECT_EQ(fault::calls("socketpair"), 4u);
    EXPECT_EQ(fault::injected("socketpair"), 2u);
    EXPECT_EQ(fault::injected(), 2u);
    fault::disarm();
    EXPECT_TRUE(ndisshm::os::seqpacket_pair().ok());
    EXPECT_EQ(fault::calls("socketpair"), 4u) << "disarmed, nothing is counted";
}

}  // namespace
}  // namespace ndisshm::test
