// What every benchmark prints and writes: an aligned table for people, and the same figures as
// bench/results/<name>.json for scripts and for comparing runs.
//
// Each JSON file carries what is needed to judge its numbers later: the machine's core count,
// the git commit measured, the date, how much CPU time the hypervisor stole meanwhile, the
// parameters, and per figure the median, min, max and every sample.
#pragma once

#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/support/cpu_steal.hpp"
#include "bench/support/stats.hpp"

namespace dispatch::bench {

struct machine_info {
  unsigned cores = 0;  // std::thread::hardware_concurrency()
  std::string commit;  // git rev-parse --short HEAD of the source tree, "unknown" outside git
  std::string date;    // UTC, ISO 8601
};
machine_info describe_machine();

// One measured configuration: a label for the table, the settings that tell it apart, and its
// figures by name (e.g. "tasks_per_s").
struct result_row {
  std::string label;
  nlohmann::json config = nlohmann::json::object();
  std::map<std::string, summary> figures;
};

class report {
 public:
  report(std::string name, int repetitions);

  nlohmann::json& params() { return params_; }
  void note(std::string text) { notes_.push_back(std::move(text)); }
  // The row stays where it is while more are added: fill in its figures at any time.
  result_row& add(std::string label, nlohmann::json config = nlohmann::json::object());
  const std::deque<result_row>& rows() const { return rows_; }
  // The row with this label, or nullptr.
  const result_row* find(const std::string& label) const;

  // Writes <dir>/<name>.json (creating dir) with `steal` (see steal_since_start) and returns
  // the path.
  std::string write(const std::string& dir, std::optional<double> steal) const;
  // Percent of the machine's CPU time stolen by the hypervisor since the report was made.
  std::optional<double> steal_since_start() const;

 private:
  std::string name_;
  int repetitions_;
  machine_info machine_;
  std::optional<cpu_times> started_ = read_cpu_times();
  nlohmann::json params_ = nlohmann::json::object();
  std::vector<std::string> notes_;
  std::deque<result_row> rows_;  // a deque: add() hands out references that must stay valid
};

// A plain text table: columns sized to their widest cell, first column left-aligned.
class table {
 public:
  explicit table(std::vector<std::string> headers);
  void row(std::vector<std::string> cells);
  void print() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// Writes the report's JSON into `dir`, saying where and how much CPU time was stolen meanwhile.
void save(const report& r, const std::string& dir);
// Prints the table, then save().
void publish(const table& t, const report& r, const std::string& dir);

// "median [min..max]" with the given number of decimals; just the median for one sample.
std::string format(const summary& s, int decimals = 0);
std::string format(double value, int decimals = 0);

// Reads <dir>/<name>.json if it exists (another section's results of the same run).
bool read_results(const std::string& dir, const std::string& name, nlohmann::json& out);

}  // namespace dispatch::bench
