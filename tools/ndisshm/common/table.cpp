#include "common/table.hpp"

#include <algorithm>

namespace ndisshm::cli {

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

void Table::add_row(std::vector<std::string> cells) {
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
}

std::string Table::render() const {
    std::vector<size_t> width(columns_.size());
    for (size_t c = 0; c < columns_.size(); ++c) {
        width[c] = columns_[c].title.size();
        for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
        std::string out;
        for (size_t c = 0; c < columns_.size(); ++c) {
            if (c != 0) out += "  ";
            const size_t pad = width[c] - cells[c].size();
            if (columns_[c].align == Align::Right) out.append(pad, ' ');
            out += cells[c];
            if (columns_[c].align == Align::Left) out.append(pad, ' ');
        }
        // Left-aligned last columns would otherwise leave trailing blanks.
        out.erase(out.find_last_not_of(' ') + 1);
        return out + '\n';
    };
    std::vector<std::string> titles;
    size_t total = 0;
    for (size_t c = 0; c < columns_.size(); ++c) {
        titles.push_back(columns_[c].title);
        total += width[c] + (c != 0 ? 2 : 0);
    }
    std::string out = line(titles);
    out += std::string(total, '-') + '\n';
    for (const auto& row : rows_) out += line(row);
    return out;
}

}  // namespace ndisshm::cli
