// `ndisshm soak`'s flags (CLI11), kept next to the soak rather than in
// common/options.cpp: its own ranges, defaults and the hidden guest-process flags.
#pragma once

#include <CLI/CLI.hpp>

#include "soak/soak.hpp"

namespace ndisshm::cli {

void add_soak(CLI::App& app, SoakOptions& o);

}  // namespace ndisshm::cli
