#include "dispatcher/request_limits.hpp"

#include <algorithm>
#include <type_traits>
#include <variant>

namespace dispatch {
namespace {

using namespace protocol;

// Collects the first violation; later checks are skipped once one is found.
class checker {
 public:
  explicit checker(const request_limits& l) : limits_(l) {}

  void bytes(const std::string& field, std::size_t size, std::size_t limit, const char* option) {
    if (failed() || size <= limit) return;
    why_ = "field '" + field + "': " + std::to_string(size) + " bytes exceeds the limit of " +
           std::to_string(limit) + " (" + option + ")";
  }
  void count(const std::string& field, std::size_t n, std::size_t limit, const char* option) {
    if (failed() || n <= limit) return;
    why_ = "field '" + field + "': " + std::to_string(n) + " entries exceed the limit of " +
           std::to_string(limit) + " (" + option + ")";
  }
  void name(const std::string& field, const std::string& value) {
    bytes(field, value.size(), limits_.max_name, "--max-name");
  }
  void text(const std::string& field, const std::string& value) {
    bytes(field, value.size(), limits_.max_text, "--max-text");
  }
  void payload(const std::string& field, const std::string& value) {
    bytes(field, value.size(), limits_.max_payload, "--max-payload");
  }
  void names(const std::string& field, const std::vector<std::string>& values) {
    count(field, values.size(), limits_.max_tags, "--max-tags");
    for (std::size_t i = 0; i < values.size() && !failed(); ++i)
      name(field + "[" + std::to_string(i) + "]", values[i]);
  }
  void batch(const std::string& field, std::size_t n) {
    count(field, n, limits_.max_batch, "--max-batch");
  }

  bool failed() const { return !why_.empty(); }
  std::string result() && { return std::move(why_); }

  void check(const register_worker& m) {
    name("worker", m.worker);
    names("types", m.types);
    names("tags", m.tags);
  }
  void check(const complete& m) { payload("result", m.result); }
  void check(const fail& m) { text("error", m.error); }
  void check(const submit& m) {
    batch("tasks", m.tasks.size());
    for (std::size_t i = 0; i < m.tasks.size() && !failed(); ++i) {
      const auto& s = m.tasks[i];
      const std::string at = "tasks[" + std::to_string(i) + "].";
      name(at + "project", s.project);
      name(at + "type", s.type);
      payload(at + "payload", s.payload);
      names(at + "tags", s.tags);
      text(at + "title", s.title);
      text(at + "description", s.description);
    }
  }
  void check(const list_tasks& m) { text("text", m.text); }
  // The rest carry only ids, names the decoder caps, or nothing.
  template <class Other>
  void check(const Other&) {}

 private:
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
  if (auto* f = std::get_if<fetch>(&body)) cap(f->max);
  else if (auto* t = std::get_if<list_tasks>(&body)) cap(t->limit);
  else if (auto* e = std::get_if<list_events>(&body)) cap(e->limit);
}

}  // namespace dispatch
