// SIGINT and SIGTERM as a flag: the long-running commands (host, demo, stat
// --watch) poll it and shut down the clean way (guests told BYE, every block
// freed through its provider, the books checked) instead of dying mid-way.
#pragma once

#include <atomic>

namespace ndisshm::cli {

// Installs the handlers (once; later calls return the same flag). The flag
// turns true at the first signal; a second one of the same kind then ends
// the process at once, for a shutdown that hangs.
const std::atomic<bool>& stop_on_signals();
// The signal that set the flag, 0 if none.
int stop_signal();

}  // namespace ndisshm::cli
