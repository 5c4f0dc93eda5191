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
#include <vector>

#include "commands/guest.hpp"
#include "commands/host.hpp"
#include "commands/stat.hpp"
#include "common/config_file.hpp"
#include "common/options.hpp"
#include "common/suggest.hpp"
#include "demo/demo.hpp"
#include "soak/options.hpp"
#include "tour/tour.hpp"

namespace {

constexpr int kUsageError = 2;

// The long flags people may type on `app` ("--guests"), hidden ones left out.
std::vector<std::string> long_flags(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::Option* o : app.get_options())
        if (!o->get_group().empty())
            for (const auto& n : o->get_lnames()) names.push_back("--" + n);
    return names;
}

// After a parse error: for each word CLI11 could not place, the subcommand
// or flag it was most likely meant to be, on stderr.
void suggest(const CLI::App& app) {
    std::vector<const CLI::App*> parsed;
    for (const CLI::App* sub : app.get_subcommands()) parsed.push_back(sub);
    std::vector<std::string> commands;
    for (const CLI::App* sub : app.get_subcommands({})) commands.push_back(sub->get_name());
    std::vector<std::string> flags = long_flags(app);
    for (const CLI::App* sub : parsed) {
        const auto more = long_flags(*sub);
        flags.insert(flags.end(), more.begin(), more.end());
    }
    std::vector<std::string> words = app.remaining();
    for (const CLI::App* sub : parsed) {
        const auto more = sub->remaining();
        words.insert(words.end(), more.begin(), more.end());
    }
    for (std::string word : words) {
        std::string guess;
        if (word.rfind("--", 0) == 0) {
            word = word.substr(0, word.find('='));
            guess = ndisshm::cli::closest(word, flags);
        } else if (parsed.empty()) {
            guess = ndisshm::cli::closest(word, commands);
        }
        if (!guess.empty() && guess != word) std::fprintf(stderr, "ndisshm: %s: did you mean %s?\n", word.c_str(), guess.c_str());
    }
}

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
        if (rc != 0) suggest(app);
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
