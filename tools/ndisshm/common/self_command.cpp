#include "common/self_command.hpp"

#include <cstdlib>
#include <filesystem>
#include <string_view>

namespace ndisshm::cli {

std::string self_command() {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec || self.empty()) return "ndisshm";
    if (const char* path = std::getenv("PATH"); path != nullptr) {
        std::string_view rest(path);
        for (;;) {
            const size_t colon = rest.find(':');
            const std::string dir(rest.substr(0, colon));
            if (!dir.empty() && fs::equivalent(fs::path(dir) / "ndisshm", self, ec)) return "ndisshm";
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    const fs::path here = fs::current_path(ec);
    if (!ec && here != here.root_path()) {
        const fs::path rel = self.lexically_relative(here);
        if (!rel.empty() && *rel.begin() != "..")
            return rel.has_parent_path() ? rel.string() : "./" + rel.string();
    }
    return self.string();
}

}  // namespace ndisshm::cli
