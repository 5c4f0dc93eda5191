#include "common/signals.hpp"

#include <signal.h>

#include <csignal>

namespace ndisshm::cli {
namespace {

std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void on_signal(int sig) {
    if (g_stop.exchange(true)) {
        // The second Ctrl-C: the default action, now.
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_signal = sig;
}

}  // namespace

const std::atomic<bool>& stop_on_signals() {
    static const bool installed = [] {
        struct sigaction sa {};
        sa.sa_handler = &on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, nullptr);
        sigaction(SIGTERM, &sa, nullptr);
        return true;
    }();
    (void)installed;
    return g_stop;
}

int stop_signal() { return g_signal; }

}  // namespace ndisshm::cli
