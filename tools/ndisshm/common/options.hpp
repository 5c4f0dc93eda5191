// The command line: every subcommand's flags (soak's are in soak/options),
// their ranges and defaults, and the checks that need several flags at once.
// CLI11 lives here, in main.cpp, config_file.cpp and soak/options.cpp only;
// the subcommands get plain option structs.
#pragma once

#include <CLI/CLI.hpp>

#include "commands/guest.hpp"
#include "commands/host.hpp"
#include "commands/stat.hpp"
#include "demo/summary.hpp"
#include "tour/tour.hpp"

namespace ndisshm::cli {

struct Commands {
    bool api_tour = false;  // demo --api-tour: the self-contained API scenario
    TourOptions tour;
    DemoOptions live;
    GuestCommandOptions guest;
    HostOptions host;
    StatOptions stat;
    // Shared by both demos, sorted into tour or live once parsing is done
    // (0: the chosen demo's default).
    uint32_t demo_queues = 0, demo_blocks = 0, demo_block_size = 0;
};

void add_demo(CLI::App& app, Commands& c);
void add_guest(CLI::App& app, GuestCommandOptions& o);
void add_host(CLI::App& app, HostOptions& o);
void add_stat(CLI::App& app, StatOptions& o);

}  // namespace ndisshm::cli
