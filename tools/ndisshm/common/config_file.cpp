#include "common/config_file.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace ndisshm::cli {
namespace {

using json = nlohmann::json;

std::string scalar(const std::string& key, const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if (v.is_number()) return v.dump();
    throw CLI::ConfigError("--config: key '" + key + "' must be a number, a string, true/false or a list of those, not " +
                           v.dump());
}

// One key of the file as CLI11 takes it: the option's name under its
// subcommand, its values as the command line would have them.
CLI::ConfigItem item(const CLI::App& sub, const std::string& key, const json& value) {
    const CLI::Option* op = key == "config" || key == "help" ? nullptr : sub.get_option_no_throw("--" + key);
    if (op == nullptr)
        throw CLI::ConfigError("--config: unknown key '" + key + "' for 'ndisshm " + sub.get_name() +
                               "' (the keys are its long flags without '--'; see ndisshm " + sub.get_name() + " --help)");
    CLI::ConfigItem it;
    it.parents = {sub.get_name()};
    it.name = key;
    if (value.is_array()) {
        for (const json& v : value) it.inputs.push_back(scalar(key, v));
    } else {
        it.inputs.push_back(scalar(key, value));
    }
    return it;
}

}  // namespace

std::string JsonConfig::to_config(const CLI::App*, bool, bool, std::string) const {
    return "{}\n";  // writing a config back out is not offered
}

std::vector<CLI::ConfigItem> JsonConfig::from_config(std::istream& input) const {
    json doc;
    try {
        doc = json::parse(input);
    } catch (const json::exception& e) {
        throw CLI::ConfigError(std::string("--config: the file is not JSON: ") + e.what());
    }
    if (!doc.is_object()) throw CLI::ConfigError("--config: the file must hold one JSON object");
    const auto subs = root_->get_subcommands();
    if (subs.empty()) throw CLI::ConfigError("--config: no subcommand to configure");
    const CLI::App& sub = *subs.front();
    std::vector<CLI::ConfigItem> items;
    for (const auto& [key, value] : doc.items()) {
        if (value.is_object()) {
            // A section per subcommand; only the running one's is used.
            bool known = false;
            for (const CLI::App* c : root_->get_subcommands(std::function<bool(const CLI::App*)>{})) known = known || c->get_name() == key;
            if (!known)
                throw CLI::ConfigError("--config: unknown section '" + key + "' (sections are subcommand names)");
            if (key != sub.get_name()) continue;
            for (const auto& [k, v] : value.items()) items.push_back(item(sub, k, v));
        } else {
            items.push_back(item(sub, key, value));
        }
    }
    return items;
}

}  // namespace ndisshm::cli
