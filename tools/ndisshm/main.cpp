// ndisshm: the command-line tool. This file only wires the command line
// (CLI11) to the subcommands; each subcommand lives in its own file.
//
// Exit status: 0 success, 1 a check failed or the library refused, 2 bad
// usage (CLI11's message names the flag); `guest` adds 3: the host vanished.
#include <ndisshm/host.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "demo.hpp"
#include "guest_command.hpp"

namespace {

constexpr int kUsageError = 2;

void add_demo(CLI::App& app, ndisshm::cli::DemoOptions& o) {
    using ndisshm::cli::Workload;
    CLI::App* demo =
        app.add_subcommand("demo", "Run a self-contained scenario of the whole API and print a summary");
    demo->footer(
        "Two adapters run the same miniport code: nic0 with a provider of our own ('vswitch') registered\n"
        "through NdisSetOptionalHandlers, nic1 with NDIS's default provider. VMQ queues, every\n"
        "NDIS_SHARED_MEMORY_USAGE, one double free caught by the verifier on purpose, every block freed.\n"
        "Exit status: 0 when every check held, 1 otherwise, 2 bad usage.");
    demo->add_flag("--json", o.json,
                   "Print the summary as JSON on stdout (narration, unless --quiet, on stderr)");
    demo->add_option("--queues", o.workload.queues, "VMQ receive queues per adapter")
        ->check(CLI::Range(1u, Workload::kMaxQueues))
        ->capture_default_str();
    demo->add_option("--blocks-per-queue", o.workload.blocks_per_queue, "Receive buffers per queue")
        ->check(CLI::Range(1u, Workload::kMaxBlocksPerQueue))
        ->capture_default_str();
    demo->add_option("--block-size", o.workload.block_size, "Bytes per receive block")
        ->check(CLI::Range(1u, Workload::kMaxBlockSize))
        ->capture_default_str();
    demo->add_flag("--quiet,-q", o.quiet, "No step-by-step narration, only the summary");
    // Ranges bound each option; their product is bounded here, once all are known.
    demo->callback([&o] {
        const std::string why = ndisshm::cli::check_budget(o.workload, 2);
        if (!why.empty()) throw CLI::ValidationError("demo", why);
    });
}

void add_guest(CLI::App& app, ndisshm::cli::GuestCommandOptions& o) {
    CLI::App* guest = app.add_subcommand(
        "guest", "Run a guest process: give its memory to a host over a Unix socket, read packets in place");
    guest->footer(
        "The guest creates its memory as a memfd sealed against shrinking, connects to the host's socket,\n"
        "sends HELLO and SET_MEMORY with the memfd (SCM_RIGHTS), then reads each packet the host announces\n"
        "in place (block handle, offset, length) and gives the descriptors back. It runs until the host\n"
        "says BYE or goes away, or --duration / --packets is reached (it then says BYE itself).\n"
        "Exit status: 0 the host said BYE or a limit was reached, 3 the host vanished (closed without BYE),\n"
        "1 an error (cannot connect, memory refused, malformed message: the reason on stderr), 2 bad usage.");
    guest->add_option("--socket", o.socket, "The host's socket path")->required();
    guest->add_option("--memory", o.memory_bytes, "Guest memory size in bytes; K, M, G (or KiB, MiB, GiB) are powers of 1024")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
        ->capture_default_str();
    guest->add_option("--name", o.name, "Name sent in HELLO, for the host's logs (1..31 bytes)")
        ->check([](const std::string& n) { return n.empty() || n.size() > 31 ? "must be 1..31 bytes" : ""; })
        ->capture_default_str();
    guest->add_option("--duration", o.duration_s, "Stop after this many seconds (0: no limit)")
        ->check(CLI::Range(0.0, 1e9))
        ->capture_default_str();
    guest->add_option("--packets", o.packets, "Stop after at least this many packets (0: no limit)")
        ->capture_default_str();
    guest->add_option("--connect-timeout", o.connect_timeout_ms, "Milliseconds to wait for each handshake answer")
        ->check(CLI::Range(1, 3600 * 1000))
        ->capture_default_str();
    guest->add_flag("--json", o.json, "Print the summary as JSON on stdout");
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
    app.footer("Exit status: 0 success, 1 a check failed, 2 bad usage (guest: 3 the host vanished).");

    ndisshm::cli::DemoOptions demo;
    add_demo(app, demo);
    ndisshm::cli::GuestCommandOptions guest;
    add_guest(app, guest);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : kUsageError;
    }
    try {
        if (app.got_subcommand("demo")) return ndisshm::cli::run_demo(demo);
        if (app.got_subcommand("guest")) return ndisshm::cli::run_guest(guest);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ndisshm: %s\n", e.what());
        return 1;
    }
    return kUsageError;  // unreachable while require_subcommand(1) holds
}
