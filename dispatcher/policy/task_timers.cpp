#include "dispatcher/policy/task_timers.hpp"

namespace dispatch {

void task_timers::set(kind k, task_id id, millis at) {
  auto& l = line(k);
  auto [it, inserted] = l.at.try_emplace(id, at);
  if (!inserted) {
    l.order.erase({it->second, id});
    it->second = at;
  }
  l.order.emplace(at, id);
}

void task_timers::clear(kind k, task_id id) {
  auto& l = line(k);
  auto it = l.at.find(id);
  if (it == l.at.end()) return;
  l.order.erase({it->second, id});
  l.at.erase(it);
}

void task_timers::clear_all(task_id id) {
  for (auto k : {kind::run_at, kind::lease, kind::deadline}) clear(k, id);
}

std::optional<millis> task_timers::when(kind k, task_id id) const {
  const auto& l = line(k);
  auto it = l.at.find(id);
  if (it == l.at.end()) return std::nullopt;
  return it->second;
}

std::vector<task_id> task_timers::take_due(kind k, millis now) {
  auto& l = line(k);
  std::vector<task_id> due;
  while (!l.order.empty() && l.order.begin()->first <= now) {
    const auto id = l.order.begin()->second;
    l.order.erase(l.order.begin());
    l.at.erase(id);
    due.push_back(id);
  }
  return due;
}

}  // namespace dispatch
