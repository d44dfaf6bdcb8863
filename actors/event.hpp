// What happened, as the notifier receives it: every task and worker transition the dispatcher
// makes. Plain data so that sinks (log today; PUB socket, commands later) need no actor code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/task.hpp"

namespace dispatch {

enum class event_kind : std::uint8_t {
  task_submitted,
  task_assigned,
  task_completed,
  task_failed,
  task_retried,
  task_dead,
  task_cancelled,
  task_requeued,  // handed back by a worker that left, was lost, or did not report it
  task_scheduled,  // waits for its run_at: a delayed submit or the backoff before a retry
  task_expired,   // its lease ran out: the attempt counts as failed
  task_overdue,   // its deadline passed before it completed
  worker_joined,
  worker_left,
  worker_lost,
  worker_ordered,  // an operator told it to drain, stop or resume
  reserve_engaged,
  reserve_released,
  project_paused,
  project_resumed,
};

std::string_view to_string(event_kind k);

struct event {
  event_kind kind = event_kind::task_submitted;
  millis at = 0;
  task_id task = 0;  // 0 for worker and project events
  std::string project;
  std::string worker;
  std::string detail;  // error text, reason, ...
};

}  // namespace dispatch
