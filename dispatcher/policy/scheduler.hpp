// The scheduling policy: which queued task goes to which worker, and when reserve workers are
// engaged or released. Plain C++ with no actors and no I/O, so that it can be unit tested and
// benchmarked on its own; the dispatcher actor owns one instance and feeds it events.
//
// Rules (issue 2):
//  * The most urgent eligible task goes first: higher priority, then fair share between projects
//    at equal priority (weighted round robin by project weight), then FIFO (task id) inside a
//    project.
//  * It goes to the least loaded eligible worker (load = running / capacity); ties go to the
//    worker that was assigned a task least recently. A worker is eligible if it serves the task's
//    type, carries all its tags, and has an open offer (an outstanding fetch) and free capacity.
//  * Active workers are always preferred. Reserve workers start in standby and get nothing until
//    engaged; tick() engages at most one per scale_interval while tasks wait and every eligible
//    active worker is saturated (running == capacity), and releases an engaged reserve worker that
//    has been idle for reserve_cooldown (at most one release per scale_interval, so the fleet
//    shrinks gradually).
//  * A project that is paused, or has max_inflight tasks running, is skipped until that changes.
//  * Each assignment costs O(log n) in queued tasks and workers; tasks are grouped in lanes of the
//    same (project, type, tags), and a lane no worker can take is probed once per dispatch().
//
// Time is passed in by the caller (monotonic milliseconds) so tests control it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/task.hpp"

namespace dispatch::policy {

using clock_ms = std::int64_t;

struct scheduler_config {
  clock_ms scale_interval = 1000;
  clock_ms reserve_cooldown = 10000;
};

struct worker_spec {
  std::string id;
  std::vector<std::string> types;
  std::vector<std::string> tags;
  std::uint32_t capacity = 1;
  worker_pool pool = worker_pool::active;
};

// What the policy needs to know of a task; the payload stays with the caller.
struct queued_task {
  task_id id = 0;
  std::string project;
  std::string type;
  std::int32_t priority = 0;
  std::vector<std::string> tags;
};

struct assignment {
  task_id task = 0;
  std::string_view worker;  // valid until that worker is removed
};

struct reserve_event {
  enum class kind : std::uint8_t { engaged, released };
  kind what = kind::engaged;
  std::string worker;
  clock_ms at = 0;
};

enum class worker_state : std::uint8_t {
  active,   // pool active
  standby,  // pool reserve, not engaged
  engaged,  // pool reserve, engaged by backlog
};

struct worker_view {
  std::string id;
  worker_pool pool = worker_pool::active;
  worker_state state = worker_state::active;
  std::uint32_t capacity = 0;
  std::uint32_t running = 0;
  std::uint32_t offered = 0;  // slots of the open offer not filled yet
};

class scheduler {
 public:
  explicit scheduler(scheduler_config cfg = {});
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // ---- workers ----
  // Registers a worker. Re-adding an id that exists first removes the old registration (its
  // running tasks are forgotten; the caller adopts the ones still held).
  void add_worker(const worker_spec& spec, clock_ms now);
  // Forgets a worker and returns the ids of the tasks it was running (the caller decides their
  // fate). Unknown ids return an empty list.
  std::vector<task_id> remove_worker(std::string_view worker);
  // The worker waits for up to `slots` more tasks (an outstanding fetch). Replaces an earlier
  // offer. Never more than its free capacity is used.
  void offer(std::string_view worker, std::uint32_t slots);
  // The offer ends (the fetch was answered or expired).
  void withdraw(std::string_view worker);
  // Moves a worker between pools; a worker moved to reserve starts in standby.
  void set_pool(std::string_view worker, worker_pool pool, clock_ms now);

  // ---- projects ----
  // Projects not configured have default settings.
  void configure_project(std::string_view project, const project_settings& settings);
  project_settings settings(std::string_view project) const;

  // ---- tasks ----
  // Queues a pending task. Ids must be unique among queued and running tasks.
  void enqueue(const queued_task& t);
  // Removes a queued task (cancellation). Returns false if it was not queued.
  bool cancel(const queued_task& t);
  // Records a task as running on `worker` without a dispatch decision (recovery, a worker that
  // re-registers and reports it). Returns false if the worker is unknown.
  bool adopt(const queued_task& t, std::string_view worker);
  // A running task ended (completed, failed, cancelled or handed back): frees its slot and its
  // project's in-flight count. Unknown ids are ignored.
  void finish(task_id id, clock_ms now);

  // ---- decisions ----
  // Assigns queued tasks to open offers, most urgent first, until nothing more fits. Appends to
  // `out`; the tasks are then running on their workers.
  void dispatch(clock_ms now, std::vector<assignment>& out);
  // Appends up to `limit` queued tasks that dispatch() is likely to hand out next: the heads of
  // the most urgent dispatchable lanes, up to `per_lane` from each. A hint for reading tasks
  // ahead (which workers offer, and project shares, decide the real order); changes nothing.
  void upcoming(std::size_t per_lane, std::size_t limit, std::vector<task_id>& out) const;
  // Engages / releases reserve workers as the rules say; appends what changed to `out`.
  void tick(clock_ms now, std::vector<reserve_event>& out);

  // ---- views ----
  std::size_t queued() const;                        // tasks waiting, all projects
  std::size_t queued(std::string_view project) const;
  std::size_t running() const;                       // tasks held by workers
  std::optional<worker_view> worker(std::string_view id) const;
  std::vector<worker_view> workers() const;          // sorted by id
  std::uint64_t engagements() const;
  std::uint64_t releases() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dispatch::policy
