#include "protocol/task.hpp"

#include <array>

namespace dispatch {
namespace {
constexpr std::array<std::string_view, task_status_count> status_names = {
    "pending", "running", "completed", "failed", "dead", "cancelled", "scheduled"};
}  // namespace

std::string_view to_string(task_status s) { return status_names[static_cast<std::size_t>(s)]; }

std::optional<task_status> parse_task_status(std::string_view text) {
  for (std::size_t i = 0; i < status_names.size(); ++i)
    if (status_names[i] == text) return static_cast<task_status>(i);
  return std::nullopt;
}

std::string_view to_string(worker_pool p) { return p == worker_pool::active ? "active" : "reserve"; }

std::optional<worker_pool> parse_worker_pool(std::string_view text) {
  if (text == "active") return worker_pool::active;
  if (text == "reserve") return worker_pool::reserve;
  return std::nullopt;
}

}  // namespace dispatch
