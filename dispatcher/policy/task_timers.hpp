// The times at which the dispatcher must act on a task by itself: a scheduled task becomes
// pending (run_at), a lease runs out (the attempt failed), a deadline passes (overdue). Plain
// C++, so the rules around it can be tested without actors.
//
// Each task has at most one timer of each kind; setting it again moves it. Finding what is due
// costs O(log n) per timer taken, nothing for the ones not yet due.
#pragma once

#include <array>
#include <optional>
#include <cstddef>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/task.hpp"

namespace dispatch {

class task_timers {
 public:
  enum class kind : std::size_t { run_at = 0, lease = 1, deadline = 2 };

  void set(kind k, task_id id, millis at);
  void clear(kind k, task_id id);
  void clear_all(task_id id);
  std::optional<millis> when(kind k, task_id id) const;
  // Removes and returns the tasks whose timer of kind `k` is at or before `now`, earliest first.
  std::vector<task_id> take_due(kind k, millis now);
  std::size_t size(kind k) const { return line(k).order.size(); }

 private:
  struct timeline {
    std::set<std::pair<millis, task_id>> order;
    std::unordered_map<task_id, millis> at;
  };
  timeline& line(kind k) { return lines_[static_cast<std::size_t>(k)]; }
  const timeline& line(kind k) const { return lines_[static_cast<std::size_t>(k)]; }

  std::array<timeline, 3> lines_;
};

}  // namespace dispatch
