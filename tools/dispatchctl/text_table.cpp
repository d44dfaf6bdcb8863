#include "dispatchctl/text_table.hpp"

#include <algorithm>
#include <utility>

#include "dispatchctl/text_encoding.hpp"

namespace dispatch::ctl {
namespace {

// A newline or tab inside a cell (e.g. in a peer-supplied name) would break the alignment of
// every following row, so control characters are shown as spaces.
std::string flatten(std::string cell) {
  std::replace_if(
      cell.begin(), cell.end(),
      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; }, ' ');
  return cell;
}

}  // namespace

text_table::text_table(std::vector<std::string> header) { add_row(std::move(header)); }

void text_table::add_row(std::vector<std::string> cells) {
  const std::size_t columns = rows_.empty() ? cells.size() : rows_.front().size();
  cells.resize(columns);
  for (auto& cell : cells) cell = flatten(std::move(cell));
  rows_.push_back(std::move(cells));
}

std::string text_table::render() const {
  const std::size_t columns = rows_.front().size();
  std::vector<std::size_t> widths(columns, 0);
  for (const auto& row : rows_)
    for (std::size_t c = 0; c < columns; ++c)
      widths[c] = std::max(widths[c], display_width(row[c]));

  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t c = 0; c < columns; ++c) {
      line += row[c];
      if (c + 1 < columns) line.append(widths[c] - display_width(row[c]) + 2, ' ');
    }
    // An empty last cell would otherwise leave the padding of the previous column behind.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace dispatch::ctl
