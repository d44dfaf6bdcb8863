#include "actors/event.hpp"

namespace dispatch {

std::string_view to_string(event_kind k) {
  switch (k) {
    case event_kind::task_submitted: return "task.submitted";
    case event_kind::task_assigned: return "task.assigned";
    case event_kind::task_completed: return "task.completed";
    case event_kind::task_failed: return "task.failed";
    case event_kind::task_retried: return "task.retried";
    case event_kind::task_dead: return "task.dead";
    case event_kind::task_cancelled: return "task.cancelled";
    case event_kind::task_requeued: return "task.requeued";
    case event_kind::task_scheduled: return "task.scheduled";
    case event_kind::task_expired: return "task.expired";
    case event_kind::task_overdue: return "task.overdue";
    case event_kind::worker_joined: return "worker.joined";
    case event_kind::worker_left: return "worker.left";
    case event_kind::worker_lost: return "worker.lost";
    case event_kind::worker_ordered: return "worker.ordered";
    case event_kind::reserve_engaged: return "reserve.engaged";
    case event_kind::reserve_released: return "reserve.released";
    case event_kind::project_paused: return "project.paused";
    case event_kind::project_resumed: return "project.resumed";
  }
  return "unknown";
}

}  // namespace dispatch
