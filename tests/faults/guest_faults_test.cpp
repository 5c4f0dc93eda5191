// The kernel refusing the host/guest conversation, at every call site in
// turn: each socket, bind, listen, accept4, connect, sendmsg, recvmsg, poll,
// eventfd, fcntl, fstat, memfd_create, ftruncate and mmap that a guest's life
// makes (on the host's side or the guest's: both run in this process) fails
// once with ENOMEM, EINTR, EAGAIN and EPIPE (guest_scenario.hpp has the life).
//
// After each fault: an interrupted call asked again, a recvmsg that found
// nothing polled again and a failed poll on the hub thread (waited out, then
// polled again) changed nothing; any other fault either changed
// nothing visible or ended what it hit (the hub's start, the guest's session)
// with a reason naming the operation and errno's text; then the host served
// a new guest from start to end, and when it stopped no block, queue,
// session, mapping or fd was left and the verifier saw no violation.
#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "faults/fault_support.hpp"
#include "faults/guest_scenario.hpp"

namespace ndisshm::test {
namespace {

// A fault the code absorbs by design: nothing may change.
bool absorbed(const std::string& op, int err) {
    if (err == EINTR && retries_eintr(op)) return true;
    if (op == "recvmsg" && err == EAGAIN) return true;  // the channel polls again
    if (op == "accept4" && err == EAGAIN) return true;  // the connection waits in the backlog
    return false;
}

// Whether the reason given names what failed: the call and errno's text. A
// send's EAGAIN (the peer's socket is full) and EPIPE (the peer is gone) may be
// named for what they mean instead: that is all they can mean.
bool names_the_fault(const std::string& text, const std::string& op, int err) {
    if (op == "sendmsg" && err == EAGAIN && text.find("not reading") != std::string::npos) return true;
    if (op == "sendmsg" && err == EPIPE && text.find("closed the connection") != std::string::npos) return true;
    return text.find(op) != std::string::npos && text.find(std::strerror(err)) != std::string::npos;
}

void fault_once(const std::string& op, uint64_t nth, int err, GuestRun::Ending ending) {
    SCOPED_TRACE(op + " call " + std::to_string(nth) + " fails with " + errno_name(err) +
                 (ending == GuestRun::Ending::GuestSaysBye ? ", guest ends" : ", host ends"));
    GuestRun run;
    ASSERT_TRUE(fault::arm(op, nth, err));
    const GuestRun::Outcome o = run.execute(ending);
    const uint64_t injected = fault::injected();
    fault::disarm();
    Tally::get().add("guest", op, injected, 1);
    // A failed poll on the hub thread is waited out: the session it was serving carries on untouched, so
    // the run must end as if nothing had failed (and the same hub serves the next guest below).
    if (run.hub_poll_failed()) {
        Tally::get().add("guest, hub poll failed and served on:", op, 1, 1);
        EXPECT_TRUE(o.clean) << "the hub did not serve on after a failed poll\n" << run.text();
    }
    if (injected != 0 && absorbed(op, err)) {
        EXPECT_TRUE(o.clean) << "an absorbed fault changed the outcome\n" << run.text();
    } else if (injected != 0 && !o.clean) {
        EXPECT_TRUE(names_the_fault(run.text(), op, err)) << "no reason names the fault:\n" << run.text();
    }
    run.expect_recovers();
    run.expect_clean_end();
}

void every_call_site(GuestRun::Ending ending, const std::vector<std::string>& only = {}) {
    Disarm disarm;
    std::map<std::string, uint64_t> calls;
    {
        GuestRun run;
        fault::count_only();
        const GuestRun::Outcome o = run.execute(ending);
        for (const auto& op : fault::operations())
            if (fault::calls(op) != 0) calls[op] = fault::calls(op);
        fault::disarm();
        ASSERT_TRUE(o.clean) << run.text();
        run.expect_clean_end();
    }
    for (const auto& [op, n] : calls) {
        if (!only.empty() && std::find(only.begin(), only.end(), op) == only.end()) continue;
        for (uint64_t nth = 1; nth <= n; ++nth) {
            for (int err : kSocketErrnos) {
                if (err == EPIPE && op != "sendmsg") continue;  // only a send has a peer to lose
                fault_once(op, nth, err, ending);
                if (::testing::Test::HasFatalFailure()) return;
            }
        }
    }
}

TEST(GuestFaults, GuestEndsEveryCallSiteEveryErrno) { every_call_site(GuestRun::Ending::GuestSaysBye); }
TEST(GuestFaults, HostEndsEveryCallSiteEveryErrno) { every_call_site(GuestRun::Ending::HostStops); }

}  // namespace
}  // namespace ndisshm::test
