// The task and worker vocabulary shared by every binary and by the store.
// Kept free of any library type so that the policy, the codec and the store can all use it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dispatch {

// Assigned by the dispatcher from one counter, so ids sort in submission order.
using task_id = std::uint64_t;

// Wall-clock milliseconds since the Unix epoch; 0 means "not yet".
using millis = std::int64_t;

// The numeric values are stored in RocksDB and must never be renumbered.
enum class task_status : std::uint8_t {
  pending = 0,    // waiting for a worker
  running = 1,    // held by a worker
  completed = 2,  // final: the worker reported success
  failed = 3,     // final: the worker reported a failure it marked not retryable
  dead = 4,       // final: every allowed attempt failed
  cancelled = 5,  // final: cancelled by a producer or an operator
  scheduled = 6,  // waiting for its run_at time (a delayed submit, or the backoff of a retry)
};
constexpr int task_status_count = 7;

std::string_view to_string(task_status s);
std::optional<task_status> parse_task_status(std::string_view text);
constexpr bool is_final(task_status s) {
  return s == task_status::completed || s == task_status::failed || s == task_status::dead ||
         s == task_status::cancelled;
}

enum class worker_pool : std::uint8_t { active = 0, reserve = 1 };
std::string_view to_string(worker_pool p);
std::optional<worker_pool> parse_worker_pool(std::string_view text);

struct task {
  task_id id = 0;
  std::string project;
  std::string type;
  std::int32_t priority = 0;  // higher runs first; FIFO (by id) within one priority
  std::string payload;        // opaque bytes
  std::vector<std::string> tags;  // a worker must carry all of them
  task_status status = task_status::pending;
  std::uint32_t attempts = 0;  // assignments so far; the current lease is attempt `attempts`
  // Attempts that failed: a reported failure, a lease that ran out, a worker lost while running
  // it. Requeues that are not the task's fault (goodbye, not reported after a restart) do not
  // count. The task is dead when failures reach max_attempts.
  std::uint32_t failures = 0;
  std::uint32_t max_attempts = 3;
  std::uint32_t timeout_ms = 300'000;  // lease of one attempt; past it the attempt has failed
  millis run_at = 0;            // scheduled: becomes pending at this time
  millis deadline = 0;          // overdue if not completed by then; 0 = none
  bool overdue = false;         // the deadline passed before completion (reported once)
  std::string idempotency_key;  // per project; a repeated submit returns this task
  millis lease_expires_at = 0;  // running: when the current lease ends
  std::string worker;  // holder while running, last holder afterwards
  millis created_at = 0;
  millis assigned_at = 0;
  millis finished_at = 0;
  std::string result;  // bytes of the successful run
  std::string error;   // text of the last failure
  std::string title;        // optional, for people and text search
  std::string description;  // optional, for people and text search
};

// Operator settings of a project; stored, and applied by the scheduling policy.
struct project_settings {
  bool paused = false;
  std::uint32_t max_inflight = 0;  // running tasks allowed at once; 0 = no cap
  std::uint32_t weight = 1;        // share at equal priority against other projects, >= 1
};

}  // namespace dispatch
