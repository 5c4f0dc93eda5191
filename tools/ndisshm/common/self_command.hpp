// How a user standing where this process was started runs this binary
// again: "ndisshm" when that name on PATH is this very file, else its path
// (relative to the working directory when below it, else absolute). For
// the hints the tool prints ("start one with: ...", "watch it live: ..."),
// so that they work when pasted, from a build tree as well as installed.
#pragma once

#include <string>

namespace ndisshm::cli {

std::string self_command();

}  // namespace ndisshm::cli
