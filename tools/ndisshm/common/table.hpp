// A plain-text table: columns sized to their widest cell, two spaces apart,
// so the demo's summary reads well in a terminal and diffs well in a log.
#pragma once

#include <string>
#include <vector>

namespace ndisshm::cli {

class Table {
public:
    enum class Align { Left, Right };
    struct Column {
        std::string title;
        Align align = Align::Left;
    };

    explicit Table(std::vector<Column> columns);

    // Short rows are padded with empty cells; extra cells are an error of the
    // caller and are dropped rather than misaligning the table.
    void add_row(std::vector<std::string> cells);
    size_t rows() const { return rows_.size(); }

    // Header, a rule under it, then the rows; every line ends in '\n' and has
    // no trailing blanks.
    std::string render() const;

private:
    std::vector<Column> columns_;
    std::vector<std::vector<std::string>> rows_;
};

}  // namespace ndisshm::cli
