#include "dispatcher/request_limits.hpp"

#include <algorithm>
#include <variant>

namespace dispatch {
namespace {

using namespace protocol;

// Where a field sits, e.g. tasks[3].tags[1]: spelled out only for a refusal, so that a request
// within its limits (a submit of thousands of tasks) costs no string building at all.
struct field {
  const char* name;
  const char* task_list = nullptr;  // "tasks" when the field is inside tasks[task] (or results)
  std::size_t task = 0;
  std::size_t element = npos;       // the index inside a list field, npos for the field itself
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  field in_task(const char* list, std::size_t i) const { return {name, list, i, element}; }
  field at(std::size_t i) const { return {name, task_list, task, i}; }
  std::string text() const {
    std::string out;
    if (task_list) out = std::string(task_list) + "[" + std::to_string(task) + "].";
    out += name;
    if (element != npos) out += "[" + std::to_string(element) + "]";
    return out;
  }
};

// Collects the first violation; later checks are skipped once one is found.
class checker {
 public:
  explicit checker(const request_limits& l) : limits_(l) {}

  bool failed() const { return !why_.empty(); }
  std::string result() && { return std::move(why_); }

  void check(const register_worker& m) {
    name({"worker"}, m.worker);
    names({"types"}, m.types);
    names({"tags"}, m.tags);
  }
  void check(const complete& m) { payload({"result"}, m.result); }
  void check(const fail& m) { text({"error"}, m.error); }
  void check(const report& m) {
    count({"results"}, m.results.size(), limits_.max_batch, "--max-batch");
    for (std::size_t i = 0; i < m.results.size() && !failed(); ++i) {
      payload(field{"result"}.in_task("results", i), m.results[i].result);
      text(field{"error"}.in_task("results", i), m.results[i].error);
    }
  }
  void check(const submit& m) {
    count({"tasks"}, m.tasks.size(), limits_.max_batch, "--max-batch");
    for (std::size_t i = 0; i < m.tasks.size() && !failed(); ++i) {
      const auto& s = m.tasks[i];
      const auto inside = [i](const char* f) { return field{f}.in_task("tasks", i); };
      name(inside("project"), s.project);
      name(inside("type"), s.type);
      payload(inside("payload"), s.payload);
      names(inside("tags"), s.tags);
      text(inside("title"), s.title);
      text(inside("description"), s.description);
    }
  }
  void check(const list_tasks& m) { text({"text"}, m.text); }
  // The rest carry only ids, names the decoder caps, or page sizes (cap_page_sizes).
  template <class Other>
  void check(const Other&) {}

 private:
  void bytes(const field& f, std::size_t size, std::size_t limit, const char* option) {
    if (failed() || size <= limit) return;
    why_ = "field '" + f.text() + "': " + std::to_string(size) + " bytes exceeds the limit of " +
           std::to_string(limit) + " (" + option + ")";
  }
  void count(const field& f, std::size_t n, std::size_t limit, const char* option) {
    if (failed() || n <= limit) return;
    why_ = "field '" + f.text() + "': " + std::to_string(n) + " entries exceed the limit of " +
           std::to_string(limit) + " (" + option + ")";
  }
  void name(const field& f, const std::string& v) {
    bytes(f, v.size(), limits_.max_name, "--max-name");
  }
  void text(const field& f, const std::string& v) {
    bytes(f, v.size(), limits_.max_text, "--max-text");
  }
  void payload(const field& f, const std::string& v) {
    bytes(f, v.size(), limits_.max_payload, "--max-payload");
  }
  void names(const field& f, const std::vector<std::string>& values) {
    count(f, values.size(), limits_.max_tags, "--max-tags");
    for (std::size_t i = 0; i < values.size() && !failed(); ++i) name(f.at(i), values[i]);
  }

  const request_limits& limits_;
  std::string why_;
};

}  // namespace

std::string limit_refusal(const request_body& body, const request_limits& limits) {
  checker c(limits);
  std::visit([&c](const auto& m) { c.check(m); }, body);
  return std::move(c).result();
}

void cap_page_sizes(request_body& body, const request_limits& limits) {
  const auto cap = [&](std::uint32_t& n) {
    n = static_cast<std::uint32_t>(std::min<std::size_t>(n, limits.max_batch));
  };
  if (auto* f = std::get_if<fetch>(&body))
    cap(f->max);
  else if (auto* t = std::get_if<list_tasks>(&body))
    cap(t->limit);
  else if (auto* e = std::get_if<list_events>(&body))
    cap(e->limit);
}

}  // namespace dispatch
