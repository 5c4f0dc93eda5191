// "did you mean": the known name closest to a mistyped one.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace ndisshm::cli {

// Levenshtein distance, a transposition counting as one edit ("jsno").
inline size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i)
        for (size_t j = 1; j <= b.size(); ++j) {
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

// The name in `names` closest to `word`, when close enough to be a typo of
// it (at most a third of its letters off, at least 2 allowed) or when `word`
// is its start ("--gue" -> "--guests"); "" otherwise.
inline std::string closest(const std::string& word, const std::vector<std::string>& names) {
    std::string best;
    size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
    for (const auto& n : names) {
        if (word.size() >= 3 && n.size() > word.size() && n.rfind(word, 0) == 0) return n;
        const size_t dist = edit_distance(word, n);
        if (dist < best_d) {
            best_d = dist;
            best = n;
        }
    }
    return best;
}

}  // namespace ndisshm::cli
