// The queued tasks of one lane (one project, type and tag set), most urgent first: priority
// descending, then task id ascending.
//
// Memory is what limits how many tasks can wait, so the common case costs 8 bytes a task and no
// allocation of its own: ids come from one increasing counter, so inside a priority they arrive
// in order and are appended to a deque. The few that arrive out of order (a task handed back
// after a failure, recovery) go to a small ordered set instead. Cancelling a task inside the
// deque would cost O(n), so it leaves a tombstone that is dropped when the task reaches the head;
// the live count stays exact all along.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "protocol/task.hpp"

namespace dispatch::policy::detail {

class lane_queue {
 public:
  struct entry {
    std::int32_t priority = 0;
    task_id id = 0;
  };

  bool empty() const { return live_ == 0; }
  std::size_t size() const { return live_; }

  // The most urgent live task. Precondition: !empty().
  entry head() const;
  // Ids must be unique among the live tasks of the lane.
  void push(std::int32_t priority, task_id id);
  // Removes a live task; false if it is not queued here with this priority.
  bool erase(std::int32_t priority, task_id id);
  // Removes and returns the head. Precondition: !empty().
  task_id pop();
  // Appends the ids of the first `n` live tasks (fewer if the lane has fewer), in the order
  // pop() would return them. O(n + tombstones passed over); changes nothing.
  void peek(std::size_t n, std::vector<task_id>& out) const;

 private:
  struct bucket {
    std::deque<task_id> in_order;    // ascending, may hold tombstoned ids
    std::set<task_id> out_of_order;  // live only
    bool empty() const { return in_order.empty() && out_of_order.empty(); }
    bool front_in_order() const {
      return out_of_order.empty() || (!in_order.empty() && in_order.front() < *out_of_order.begin());
    }
    task_id front() const { return front_in_order() ? in_order.front() : *out_of_order.begin(); }
  };
  using bucket_map = std::map<std::int32_t, bucket, std::greater<>>;
  using tombstone_map = std::unordered_map<task_id, std::int32_t>;  // cancelled id -> its bucket

  // Restores the invariant that the first bucket's front is live (or the queue is empty), so
  // that head() needs no lookups.
  void drop_dead_head();
  // The tombstone of the copy of `id` in the deque of bucket `priority`; end() if it is live.
  tombstone_map::const_iterator tombstone_of(task_id id, std::int32_t priority) const;
  void remove_stale_copy(task_id id, std::int32_t priority);

  bucket_map buckets_;  // never holds an empty bucket
  tombstone_map tombstones_;
  std::size_t live_ = 0;
};

}  // namespace dispatch::policy::detail
