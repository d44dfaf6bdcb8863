// Column layout for human-readable output: a header row and left-aligned columns.
#pragma once

#include <string>
#include <vector>

namespace dispatch::ctl {

class text_table {
 public:
  explicit text_table(std::vector<std::string> header);

  // Missing cells are shown empty, extra ones are dropped: the header fixes the column count.
  void add_row(std::vector<std::string> cells);

  // Columns are separated by two spaces; the last column is not padded so that lines carry
  // no trailing blanks. Every line ends with '\n'.
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
};

}  // namespace dispatch::ctl
