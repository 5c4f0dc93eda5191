// The live demo's guests: processes of this binary (`ndisshm guest --verify
// --json`, support/child_process.hpp), each in a process group of its own so
// that a Ctrl-C reaches the demo alone and the demo ends them the clean way
// (BYE). finish() reaps them and reads each one's own account of what it
// verified (its JSON summary) into the summary's guest rows.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "demo/summary.hpp"

namespace ndisshm::cli {

class GuestProcesses {
public:
    // Starts guest-1 .. guest-`count` on `socket`, each with `memory_bytes`
    // and `flags` after --verify. The first that cannot start stops it:
    // false, with the reason in `why`.
    bool start(uint32_t count, const std::string& socket, uint64_t memory_bytes,
               const std::vector<std::string>& flags, std::string& why);
    // The process id of the guest of that name, or -1.
    pid_t pid(const std::string& name) const;

    // Reaps every guest (waiting up to timeout_ms each, after the host's
    // BYE) and fills its row in `rows`, found by name or added: exit status,
    // how it ended, and what its summary says (packets, bytes, end, verified,
    // lost, out of order, corrupt). A guest that printed no readable summary
    // is a problem, appended to `problems`.
    void finish(int timeout_ms, std::vector<GuestRow>& rows, std::vector<std::string>& problems);

private:
    std::vector<std::pair<std::string, std::unique_ptr<support::ChildProcess>>> children_;  // by name
};

}  // namespace ndisshm::cli
