// `--config FILE`: a JSON object whose keys are the long flags of the
// subcommand being run, without their dashes, e.g. for `ndisshm demo`:
//
//   {"guests": 3, "packet-size": [64, 1500], "duration": 2, "json": true}
//
// or the same under the subcommand's name ({"demo": {...}}, so one file can
// configure several). Flags given on the command line win over the file.
// Every value goes through the same checks as on the command line, so a bad
// one is refused with the flag's name; a key that is no flag of the
// subcommand is refused by name too. (TOML would need a new package; the
// project already has nlohmann-json.)
#pragma once

#include <CLI/CLI.hpp>

namespace ndisshm::cli {

class JsonConfig : public CLI::Config {
public:
    // `root`: the main app, whose parsed subcommand the keys belong to.
    explicit JsonConfig(const CLI::App* root) : root_(root) {}
    std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                          std::string prefix) const override;
    std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;

private:
    const CLI::App* root_;
};

}  // namespace ndisshm::cli
