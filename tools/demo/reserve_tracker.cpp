#include "demo/reserve_tracker.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

namespace dispatch::demo {
namespace {

constexpr const char* engaged_state = "engaged";

}  // namespace

void reserve_tracker::learn(const std::vector<protocol::worker_info>& workers) {
  for (const auto& w : workers)
    if (w.pool == worker_pool::reserve) state_[w.id] = w.state;
}

std::vector<reserve_change> reserve_tracker::observe(
    const std::vector<protocol::worker_info>& workers, double at_seconds) {
  std::vector<reserve_change> changes;
  std::set<std::string> present;
  for (const auto& w : workers) {
    if (w.pool != worker_pool::reserve) continue;
    present.insert(w.id);
    const auto known = state_.find(w.id);
    const bool was_engaged = known != state_.end() && known->second == engaged_state;
    const bool is_engaged = w.state == engaged_state;
    if (is_engaged && !was_engaged)
      changes.push_back({w.id, reserve_change::kind::engaged, at_seconds});
    else if (was_engaged && !is_engaged)
      changes.push_back({w.id, reserve_change::kind::released, at_seconds});
    state_[w.id] = w.state;
  }
  for (auto it = state_.begin(); it != state_.end();) {
    if (present.count(it->first) != 0) {
      ++it;
      continue;
    }
    if (it->second == engaged_state)
      changes.push_back({it->first, reserve_change::kind::gone, at_seconds});
    it = state_.erase(it);
  }
  history_.insert(history_.end(), changes.begin(), changes.end());
  return changes;
}

bool reserve_tracker::engaged_now() const {
  return std::any_of(state_.begin(), state_.end(),
                     [](const auto& entry) { return entry.second == engaged_state; });
}

std::string what_happened(const reserve_change& c) {
  switch (c.what) {
    case reserve_change::kind::engaged: return c.worker + " engaged";
    case reserve_change::kind::released: return c.worker + " released";
    case reserve_change::kind::gone: return c.worker + " left while engaged";
  }
  return c.worker;
}

std::string describe(const reserve_change& c) {
  char when[32];
  std::snprintf(when, sizeof when, "+%.1fs ", c.at_seconds);
  return when + what_happened(c);
}

}  // namespace dispatch::demo
