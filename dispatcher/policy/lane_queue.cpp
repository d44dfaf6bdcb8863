#include "dispatcher/policy/lane_queue.hpp"

#include <algorithm>

namespace dispatch::policy::detail {

lane_queue::entry lane_queue::head() const {
  const auto& [priority, b] = *buckets_.begin();
  return {priority, b.front()};
}

void lane_queue::push(std::int32_t priority, task_id id) {
  // A task cancelled here and queued again must not be hidden by its own tombstone.
  if (!tombstones_.empty()) {
    if (auto t = tombstones_.find(id); t != tombstones_.end()) {
      const std::int32_t stale_priority = t->second;
      tombstones_.erase(t);
      remove_stale_copy(id, stale_priority);
    }
  }
  bucket& b = buckets_[priority];
  if (b.in_order.empty() || id > b.in_order.back())
    b.in_order.push_back(id);
  else
    b.out_of_order.insert(id);
  ++live_;
}

bool lane_queue::erase(std::int32_t priority, task_id id) {
  const auto bit = buckets_.find(priority);
  if (bit == buckets_.end()) return false;
  bucket& b = bit->second;
  const auto pos = std::lower_bound(b.in_order.begin(), b.in_order.end(), id);
  if (pos != b.in_order.end() && *pos == id) {
    if (!tombstones_.emplace(id, priority).second) return false;  // cancelled before
  } else if (b.out_of_order.erase(id) == 0) {
    return false;
  } else if (b.empty()) {
    buckets_.erase(bit);
  }
  --live_;
  drop_dead_head();
  return true;
}

task_id lane_queue::pop() {
  const auto bit = buckets_.begin();
  bucket& b = bit->second;
  task_id id = 0;
  if (b.front_in_order()) {
    id = b.in_order.front();
    b.in_order.pop_front();
  } else {
    id = *b.out_of_order.begin();
    b.out_of_order.erase(b.out_of_order.begin());
  }
  if (b.empty()) buckets_.erase(bit);
  --live_;
  drop_dead_head();
  return id;
}

void lane_queue::peek(std::size_t n, std::vector<task_id>& out) const {
  for (const auto& [priority, b] : buckets_) {
    // The two parts of a bucket merged by id, as pop() takes them.
    auto in = b.in_order.begin();
    auto out_of = b.out_of_order.begin();
    while (n > 0 && (in != b.in_order.end() || out_of != b.out_of_order.end())) {
      task_id id = 0;
      if (out_of == b.out_of_order.end() || (in != b.in_order.end() && *in < *out_of)) {
        id = *in++;
        if (tombstone_of(id, priority) != tombstones_.end()) continue;
      } else {
        id = *out_of++;
      }
      out.push_back(id);
      --n;
    }
    if (n == 0) return;
  }
}

lane_queue::tombstone_map::const_iterator lane_queue::tombstone_of(task_id id,
                                                                    std::int32_t priority) const {
  if (tombstones_.empty()) return tombstones_.end();
  const auto t = tombstones_.find(id);
  return t != tombstones_.end() && t->second == priority ? t : tombstones_.end();
}

void lane_queue::drop_dead_head() {
  if (tombstones_.empty()) return;
  if (live_ == 0) {
    // Only tombstones are left: drop them at once instead of one by one.
    buckets_.clear();
    tombstones_.clear();
    return;
  }
  while (!buckets_.empty()) {
    const auto bit = buckets_.begin();
    bucket& b = bit->second;
    if (!b.front_in_order()) return;
    const auto t = tombstone_of(b.in_order.front(), bit->first);
    if (t == tombstones_.end()) return;
    tombstones_.erase(t);
    b.in_order.pop_front();
    if (b.empty()) buckets_.erase(bit);
  }
}

void lane_queue::remove_stale_copy(task_id id, std::int32_t priority) {
  const auto bit = buckets_.find(priority);
  if (bit == buckets_.end()) return;
  bucket& b = bit->second;
  const auto pos = std::lower_bound(b.in_order.begin(), b.in_order.end(), id);
  if (pos == b.in_order.end() || *pos != id) return;
  b.in_order.erase(pos);  // linear, but only for an id cancelled and queued again
  if (b.empty()) buckets_.erase(bit);
}

}  // namespace dispatch::policy::detail
