// ndisshm: the command-line tool. This file only wires the command line
// (CLI11; the flags are in common/options.cpp and soak/options.cpp) to the
// subcommands; each lives in a folder of its own (README.md).
//
// Exit status: 0 success, 1 a check failed or the library refused, 2 bad
// usage (CLI11's message names the flag); `guest` adds 3: the host vanished.
#include <ndisshm/host.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "commands/guest.hpp"
#include "commands/host.hpp"
#include "commands/stat.hpp"
#include "common/config_file.hpp"
#include "common/options.hpp"
#include "demo/demo.hpp"
#include "soak/options.hpp"
#include "tour/tour.hpp"

namespace {

constexpr int kUsageError = 2;

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "ndisshm: Windows' NDIS shared memory API (NdisAllocateSharedMemory, NdisFreeSharedMemory, "
        "NdisSetOptionalHandlers) in Linux user space.",
        "ndisshm"};
    app.set_version_flag("--version", std::string("ndisshm ") + ndisshm_version(),
                         "Print the version and exit");
    app.require_subcommand(1);
    // --config is the main app's (CLI11 reads config files there only);
    // fallthrough lets it follow the subcommand too: `ndisshm demo --config f`.
    app.fallthrough();
    app.set_config("--config", "", "JSON file of flags for the subcommand: {\"flag-name\": value, ...}")
        ->check(CLI::ExistingFile);
    app.config_formatter(std::make_shared<ndisshm::cli::JsonConfig>(&app));
    app.footer(
        "Sizes in bytes take K, M, G, T (powers of 1024) and fractions: 64K, 1.5G.\n"
        "Exit status: 0 success, 1 a check failed, 2 bad usage (guest: 3 the host vanished).");

    ndisshm::cli::Commands c;
    ndisshm::cli::add_demo(app, c);
    ndisshm::cli::add_guest(app, c.guest);
    ndisshm::cli::add_host(app, c.host);
    ndisshm::cli::add_stat(app, c.stat);
    ndisshm::cli::SoakOptions soak;
    ndisshm::cli::add_soak(app, soak);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : kUsageError;
    }
    try {
        if (app.got_subcommand("demo"))
            return c.api_tour ? ndisshm::cli::run_tour(c.tour) : ndisshm::cli::run_demo(c.live);
        if (app.got_subcommand("guest")) return ndisshm::cli::run_guest(c.guest);
        if (app.got_subcommand("host")) return ndisshm::cli::run_host(c.host);
        if (app.got_subcommand("stat")) return ndisshm::cli::run_stat(c.stat);
        if (app.got_subcommand("soak")) return ndisshm::cli::run_soak(soak);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ndisshm: %s\n", e.what());
        return 1;
    }
    return kUsageError;  // unreachable while require_subcommand(1) holds
}
