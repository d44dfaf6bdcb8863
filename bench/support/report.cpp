#include "bench/support/report.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <thread>

namespace dispatch::bench {

namespace {

// The commit of the checkout the bench was built from (DISPATCH_SOURCE_DIR), so that results
// copied elsewhere still say what they measured.
std::string git_commit() {
  const std::string command =
      std::string("git -C '") + DISPATCH_SOURCE_DIR + "' rev-parse --short HEAD 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) return "unknown";
  std::array<char, 128> buffer{};
  std::string out;
  while (std::fgets(buffer.data(), buffer.size(), pipe.get()) != nullptr) out += buffer.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  std::array<char, 32> text{};
  std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text.data();
}

nlohmann::json to_json(const summary& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"samples", s.samples}};
}

}  // namespace

machine_info describe_machine() {
  return machine_info{std::thread::hardware_concurrency(), git_commit(), utc_now()};
}

report::report(std::string name, int repetitions)
    : name_(std::move(name)), repetitions_(repetitions), machine_(describe_machine()) {}

result_row& report::add(std::string label, nlohmann::json config) {
  rows_.push_back(result_row{std::move(label), std::move(config), {}});
  return rows_.back();
}

std::optional<double> report::steal_since_start() const {
  return steal_percent(started_, read_cpu_times());
}

const result_row* report::find(const std::string& label) const {
  for (const auto& r : rows_)
    if (r.label == label) return &r;
  return nullptr;
}

std::string report::write(const std::string& dir, std::optional<double> steal) const {
  nlohmann::json doc;
  doc["name"] = name_;
  doc["machine"] = {
      {"cores", machine_.cores}, {"commit", machine_.commit}, {"date", machine_.date}};
  if (steal) doc["machine"]["steal_percent"] = *steal;
  doc["repetitions"] = repetitions_;
  doc["params"] = params_;
  doc["notes"] = notes_;
  doc["results"] = nlohmann::json::array();
  for (const auto& r : rows_) {
    nlohmann::json row{{"label", r.label}, {"config", r.config}};
    row["figures"] = nlohmann::json::object();
    for (const auto& [key, s] : r.figures) row["figures"][key] = to_json(s);
    doc["results"].push_back(std::move(row));
  }
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name_ + ".json";
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  if (!out) throw std::runtime_error("cannot write " + path);
  return path;
}

table::table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void table::row(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void table::print() const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
  }
  const auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const int w = static_cast<int>(width[c]);
      if (c == 0)
        std::printf("%-*s", w, cells[c].c_str());
      else
        std::printf("  %*s", w, cells[c].c_str());
    }
    std::printf("\n");
  };
  line(headers_);
  std::size_t total = 0;
  for (auto w : width) total += w + 2;
  std::printf("%s\n", std::string(total - 2, '-').c_str());
  for (const auto& r : rows_) line(r);
  std::fflush(stdout);
}

void save(const report& r, const std::string& dir) {
  const auto steal = r.steal_since_start();
  if (steal)
    std::printf("host: %.0f%% of the CPU time stolen by the hypervisor during this section\n",
                *steal);
  std::printf("written %s\n", r.write(dir, steal).c_str());
}

void publish(const table& t, const report& r, const std::string& dir) {
  t.print();
  save(r, dir);
}

std::string format(double value, int decimals) {
  std::array<char, 64> text{};
  std::snprintf(text.data(), text.size(), "%.*f", decimals, value);
  return text.data();
}

std::string format(const summary& s, int decimals) {
  if (s.samples.size() <= 1) return format(s.median, decimals);
  return format(s.median, decimals) + " [" + format(s.min, decimals) + ".." +
         format(s.max, decimals) + "]";
}

bool read_results(const std::string& dir, const std::string& name, nlohmann::json& out) {
  std::ifstream in(dir + "/" + name + ".json");
  if (!in) return false;
  try {
    in >> out;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace dispatch::bench
