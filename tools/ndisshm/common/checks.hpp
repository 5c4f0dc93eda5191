// Value checks for the command line's flags, with words people can act on:
// a value that is not a number is called that, one out of range says the
// range; sizes in bytes take K, M, G, T suffixes (powers of 1024) and
// fractions ("1.5G"). CLI11's own Range calls "abc" out of range, and its
// AsSizeValue takes no fraction.
#pragma once

#include <CLI/CLI.hpp>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

namespace ndisshm::cli {

namespace detail {

// A whole number printed without a trailing ".000000".
template <typename T>
std::string number_text(T v) {
    if constexpr (std::is_floating_point_v<T>) {
        std::ostringstream out;
        out << v;
        return out.str();
    } else {
        return std::to_string(v);
    }
}

// True when `text` is a number at all (any sign, any size, a fraction).
inline bool is_number(const std::string& text) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text.front())) != 0) return false;
    char* end = nullptr;
    (void)std::strtold(text.c_str(), &end);
    return end != nullptr && *end == '\0';
}

}  // namespace detail

// [lo, hi], inclusive, as CLI::Range describes it in --help.
template <typename T>
CLI::Validator in_range(T lo, T hi) {
    std::ostringstream description;
    description << CLI::detail::type_name<T>() << " in [" << lo << " - " << hi << "]";
    return CLI::Validator(
        [lo, hi](std::string& input) -> std::string {
            T v{};
            if (!CLI::detail::lexical_cast(input, v)) {
                if (!detail::is_number(input)) return "'" + input + "' is not a number";
                if constexpr (std::is_integral_v<T>)
                    if (input.find_first_of(".eE") != std::string::npos)
                        return input + " is not a whole number (" + detail::number_text(lo) + ".." +
                               detail::number_text(hi) + ")";
                return input + " is out of range " + detail::number_text(lo) + ".." + detail::number_text(hi);
            }
            if (v < lo || v > hi)
                return input + " is out of range " + detail::number_text(lo) + ".." + detail::number_text(hi);
            return {};
        },
        description.str());
}

// Any number the type holds: "not a number" rather than CLI11's "Could not
// convert" for a flag with no range of its own.
template <typename T>
CLI::Validator a_number() {
    return in_range<T>(std::numeric_limits<T>::lowest(), std::numeric_limits<T>::max());
}

// A transform: "1.5G" -> "1610612736"; with type_name("SIZE") on the option
// (sized_option below), --help reads "SIZE:UINT in [...]". Suffixes K, M, G, T (with or without
// "iB" or "B", any case) are powers of 1024; a plain number is bytes. A
// value that is not a number is left as it is, for the range check to call
// it that; a size that is no whole number of bytes is refused here.
inline CLI::Validator size_value() {
    return CLI::Validator(
        [](std::string& input) -> std::string {
            std::string s = input;
            while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.pop_back();
            size_t unit_at = s.size();
            while (unit_at > 0 && std::isalpha(static_cast<unsigned char>(s[unit_at - 1])) != 0) --unit_at;
            std::string unit = s.substr(unit_at);
            for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            const std::string number = s.substr(0, unit_at);
            long double scale = 1;
            if (unit == "" || unit == "b")
                scale = 1;
            else if (unit == "k" || unit == "kb" || unit == "kib")
                scale = 1024.0L;
            else if (unit == "m" || unit == "mb" || unit == "mib")
                scale = 1024.0L * 1024;
            else if (unit == "g" || unit == "gb" || unit == "gib")
                scale = 1024.0L * 1024 * 1024;
            else if (unit == "t" || unit == "tb" || unit == "tib")
                scale = 1024.0L * 1024 * 1024 * 1024;
            else
                return "'" + input + "': unknown unit '" + s.substr(unit_at) + "' (K, M, G, T: powers of 1024)";
            if (unit.empty() || !detail::is_number(number)) return {};  // plain: the range check judges it
            const long double bytes = std::strtold(number.c_str(), nullptr) * scale;
            if (bytes < 0 || bytes > 1e19L) return input + " is out of range";
            if (bytes != std::floor(bytes)) return input + " is not a whole number of bytes";
            input = std::to_string(static_cast<unsigned long long>(bytes));
            return {};
        },
        "");
}

// An option in bytes: sizes with units, and SIZE in --help.
inline CLI::Option* sized_option(CLI::Option* option) { return option->transform(size_value())->type_name("SIZE"); }

}  // namespace ndisshm::cli
