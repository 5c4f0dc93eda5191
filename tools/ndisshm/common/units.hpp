// Numbers as people read them in the tool's tables. JSON output keeps the
// raw figures; these are for text only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace ndisshm::cli {

// 1536 -> "1.5 KiB"; below 1 KiB, "512 B".
inline std::string human_bytes(uint64_t bytes) {
    static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    char buf[32];
    if (u == 0)
        std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
    else
        std::snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
    return buf;
}

// 1234567 -> "1.2M", 999 -> "999": counts and per-second rates, SI steps.
inline std::string human_count(double n) {
    static const char* const units[] = {"", "k", "M", "G", "T"};
    int u = 0;
    while (n >= 1000.0 && u < 4) {
        n /= 1000.0;
        ++u;
    }
    char buf[32];
    if (u == 0)
        std::snprintf(buf, sizeof(buf), "%.0f", n);
    else
        std::snprintf(buf, sizeof(buf), "%.1f%s", n, units[u]);
    return buf;
}

inline std::string fixed(double v, int digits = 2) {
    char buf[48];
    std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
    return buf;
}

}  // namespace ndisshm::cli
