// Fuzz target: `ndisshm <subcommand> --config FILE` with the input as FILE.
//
// The CLI is built exactly as main.cpp builds it (the same options.cpp, the
// same JsonConfig parser from config_file.cpp), then parses a command line
// naming the input as its config. Refusing the file is fine: CLI11 reports it
// as a ParseError, which main() turns into exit status 2. Anything else that
// escapes parse() (a JSON exception, a std::out_of_range from a conversion)
// would terminate the real tool, so here it crashes the run.
#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "common/config_file.hpp"
#include "fuzz/fuzz_support.hpp"
#include "common/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // One memfd for the whole run, rewritten per input: no disk, no clean-up.
    static const int fd = ::memfd_create("ndisshm-fuzz-config", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0, "memfd_create");
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (size == 0) return 0;
    // The first byte picks the subcommand; the rest is the file.
    static const char* const subs[] = {"demo", "guest", "host", "stat"};
    const char* sub = subs[data[0] % 4];
    FUZZ_CHECK(::ftruncate(fd, 0) == 0, "ftruncate");
    FUZZ_CHECK(::pwrite(fd, data + 1, size - 1, 0) == static_cast<ssize_t>(size - 1), "pwrite");

    CLI::App app{"ndisshm", "ndisshm"};
    app.require_subcommand(1);
    app.fallthrough();
    app.set_config("--config", "", "JSON file of flags")->check(CLI::ExistingFile);
    app.config_formatter(std::make_shared<ndisshm::cli::JsonConfig>(&app));
    ndisshm::cli::Commands c;
    ndisshm::cli::add_demo(app, c);
    ndisshm::cli::add_guest(app, c.guest);
    ndisshm::cli::add_host(app, c.host);
    ndisshm::cli::add_stat(app, c.stat);
    const char* argv[] = {"ndisshm", sub, "--config", path.c_str()};
    try {
        app.parse(4, argv);
    } catch (const CLI::ParseError&) {
        // Refused with a message naming the key or the flag: what a bad file should get.
    }
    return 0;
}
