#include "soak/options.hpp"

#include "common/checks.hpp"

namespace ndisshm::cli {

void add_soak(CLI::App& app, SoakOptions& o) {
    CLI::App* soak = app.add_subcommand(
        "soak", "Random allocate/free/queue/guest operations across threads, invariants checked all along");
    soak->footer(
        "Threads allocate and free blocks (NDIS's own memory, on both adapters) and create and free\n"
        "queues; guest processes connect to a hub, get queues in their own memory, receive checked packets\n"
        "and are killed with SIGKILL at random moments, then replaced. Checked all along: every live block\n"
        "belongs to the queue and provider it was asked of (the runtime's record), no two live blocks "
        "overlap\n"
        "(host addresses, guest memory offsets), every block is zero when handed out (memory written before\n"
        "it was freed included) and still holds what its owner wrote when freed, the runtime's books equal\n"
        "what the threads hold, a killed guest's queue and blocks go. With guests, the host is restarted\n"
        "now and then (--host-restart-every): the hub stops (BYE), its books must be empty, a new one starts\n"
        "on the same socket and every running guest must reconnect, get a new queue and verify the new\n"
        "stream. At the end: nothing left, no fd or mapping leaked, no verifier finding. The run stops at\n"
        "--seconds or --ops, whichever comes first.\n"
        "Exit status: 0 no failure and no leak; 1 a check failed (listed on stderr); 2 bad usage.");
    soak->add_option("--seconds", o.seconds, "Run this long (0: until --ops)")
        ->check(in_range(0.0, 1e7))
        ->capture_default_str();
    soak->add_option("--ops", o.ops,
                     "Stop after this many operations, all kinds together (0: until --seconds)")
        ->check(a_number<decltype(o.ops)>())
        ->capture_default_str();
    soak->add_option("--threads", o.threads, "Threads allocating and freeing host memory")
        ->check(in_range(1u, 64u))
        ->capture_default_str();
    soak->add_option("--guests", o.guests,
                     "Guest processes alive at once, each killed and replaced in turn (0: none)")
        ->check(in_range(0u, 16u))
        ->capture_default_str();
    soak->add_option("--seed", o.seed, "Seed of the random choices (0: from the clock; the summary shows it)")
        ->check(a_number<decltype(o.seed)>())
        ->capture_default_str();
    sized_option(soak->add_option("--max-block-size", o.max_block_bytes, "Largest block a thread allocates, in bytes"))
        ->check(in_range(64u, 16u << 20))
        ->capture_default_str();
    soak->add_option("--max-outstanding", o.max_outstanding, "Blocks one thread holds at most")
        ->check(in_range(1u, 100'000u))
        ->capture_default_str();
    soak->add_option("--kill-after", o.kill_after_ms,
                     "A guest is SIGKILLed at a random moment within this many milliseconds of its start")
        ->check(in_range(1u, 600'000u))
        ->capture_default_str();
    soak->add_option("--host-restart-every", o.host_restart_ms,
                     "With guests: restart the host at random moments about this many milliseconds apart (0: never)")
        ->check(in_range(0u, 3'600'000u))
        ->capture_default_str();
    soak->add_flag("--json", o.json, "Print the summary as JSON on stdout");
    soak->add_flag("--quiet,-q", o.quiet, "No progress lines on stderr");
    // The guest processes the soak starts (`ndisshm soak --guest-worker PATH`): not for people.
    soak->add_option("--guest-worker", o.guest_worker)->group("");
    soak->add_option("--guest-name", o.guest_name)->group("");
    soak->add_option("--guest-memory", o.guest_memory)->group("");
    soak->add_option("--guest-base", o.guest_base)->group("");
    soak->add_option("--guest-reconnect", o.guest_reconnect_ms)->group("");
    soak->callback([&o] {
        if (o.guest_worker.empty() && o.seconds == 0 && o.ops == 0)
            throw CLI::ValidationError("--seconds", "0 needs --ops: the soak must be bounded");
    });
}

}  // namespace ndisshm::cli
