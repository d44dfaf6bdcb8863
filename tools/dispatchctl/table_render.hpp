// Human-readable output of every command (the default when --json is not given).
// Meant for people: the layout may change, scripts should use --json.
#pragma once

#include <string>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::ctl {

// ID PROJECT TYPE PRIO STATUS WORKER ATTEMPTS CREATED
std::string render_tasks(const std::vector<task>& tasks);

// One "field: value" line per task field; payload and result as text, or as a byte count
// and base64 when they are binary. title, description (after type), idempotency_key, run_at,
// deadline, overdue and lease_expires_at appear only when set.
std::string render_task(const task& t);

// ID POOL STATE CAP RUNNING COMPLETED FAILED
std::string render_workers(const std::vector<protocol::worker_info>& workers);

// NAME PAUSED MAX_INFLIGHT WEIGHT PENDING RUNNING COMPLETED FAILED DEAD CANCELLED SCHEDULED
// (one count column per status, in the order of task_status)
std::string render_projects(const std::vector<protocol::project_info>& projects);

// The task counts line, the workers and projects tables, then the reserve pool counters.
std::string render_stats(const protocol::stats& s);

}  // namespace dispatch::ctl
