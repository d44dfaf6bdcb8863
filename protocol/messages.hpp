// Every message of the dispatch wire protocol, as plain structs.
//
// On the wire each message is one msgpack map (see docs/PROTOCOL.md) with the keys
//   "v"    protocol version (uint, currently 1)
//   "type" message type (string, the name given in the comment of each struct)
//   "id"   request id (uint64) chosen by the client and echoed by the reply
//   "token" (requests only, optional) the caller's credential
// plus the fields of the struct under the names given here. Unknown keys are ignored so that
// later versions can add optional fields without breaking older peers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "protocol/task.hpp"

namespace dispatch::protocol {

constexpr std::uint32_t version = 1;

// ---- requests: worker -> dispatcher (work endpoint) ----

// "register": announce a worker. A second register with the same worker id replaces the first
// connection (a reconnecting worker), and `running` lists the tasks it still holds.
struct register_worker {
  std::string worker;               // "worker": unique name, 1..128 bytes
  std::vector<std::string> types;   // "types": task types served, at least one
  std::vector<std::string> tags;    // "tags": optional
  std::uint32_t capacity = 1;       // "capacity": tasks run at once, >= 1
  worker_pool pool = worker_pool::active;  // "pool": "active" | "reserve"
  std::vector<task_id> running;     // "running": optional, tasks still held after a reconnect
};

// "fetch": ask for up to `max` jobs; if none is ready, wait up to `wait_ms` (a long poll).
struct fetch {
  std::uint32_t max = 1;      // "max": >= 1
  std::uint32_t wait_ms = 0;  // "wait_ms": 0..60000
};

// "complete": the task succeeded.
struct complete {
  task_id task = 0;         // "task"
  std::uint32_t attempt = 0;  // "attempt": the lease it answers; 0 = not given
  std::string result;       // "result": bin or str, optional
};

// "fail": the task failed; retryable failures are tried again while attempts remain.
struct fail {
  task_id task = 0;          // "task"
  std::uint32_t attempt = 0;  // "attempt": the lease it answers; 0 = not given
  std::string error;         // "error": str
  bool retryable = true;     // "retryable": bool, default true
};

// One finished job inside a "report".
struct task_result {
  task_id task = 0;           // "task"
  std::uint32_t attempt = 0;  // "attempt": the lease it answers; 0 = not given
  bool failed = false;        // "outcome": "completed" (default) | "failed"
  std::string result;         // "result": bin or str, optional; completed only
  std::string error;          // "error": str, optional; failed only
  bool retryable = true;      // "retryable": bool, default true; failed only
};

// "report": several jobs finished, each applied as its own complete or fail would be, in
// order. One message and one reply for all the jobs a worker finished together.
struct report {
  std::vector<task_result> results;  // "results": 1..10000
};

struct heartbeat {};  // "heartbeat": answered by heartbeat_reply

// "extend": the worker still works on the task; its lease now ends `extend_ms` from now
// (default: the task's timeout).
struct extend {
  task_id task = 0;           // "task"
  std::uint32_t attempt = 0;  // "attempt": the lease it extends; 0 = not given
  std::uint32_t extend_ms = 0;  // "extend_ms": 0..604800000, 0 = the task's timeout
};
struct goodbye {};    // "goodbye": the worker leaves; tasks it still holds go back to the queue

// ---- requests: producer (either endpoint) ----

struct task_spec {
  std::string project;             // "project": 1..128 bytes
  std::string type;                // "type": 1..128 bytes
  std::int32_t priority = 0;       // "priority": int, default 0, higher first
  std::string payload;             // "payload": bin or str, default empty
  std::vector<std::string> tags;   // "tags": optional
  std::uint32_t max_attempts = 3;  // "max_attempts": >= 1, default 3
  std::uint32_t timeout_ms = 300'000;  // "timeout_ms": lease of one attempt, 1..604800000
  millis run_at = 0;               // "run_at": ms since epoch; not before then (scheduled)
  std::uint32_t delay_ms = 0;      // "delay_ms": run_at = now + delay_ms (ignored with run_at)
  millis deadline = 0;             // "deadline": ms since epoch; overdue if not done by then
  std::string idempotency_key;     // "idempotency_key": 1..256 bytes; dedup per project
  std::string title;               // "title": 0..256 bytes
  std::string description;         // "description": 0..4096 bytes
};

// "submit": one or more tasks ("tasks": array of task_spec maps, 1..10000). The reply comes
// only after every task is stored.
struct submit {
  std::vector<task_spec> tasks;
};

struct get_task {  // "status"
  task_id task = 0;
};

struct cancel {  // "cancel"
  task_id task = 0;
};

// ---- requests: admin (admin endpoint) ----

// "tasks": one page of the tasks matching every filter given, newest (or oldest) first. Time
// ranges are [from, to) in ms since the epoch, 0 = open. Page on with `after` = the reply's
// `next`.
struct list_tasks {
  std::optional<std::string> project;  // "project"
  std::optional<task_status> status;   // "status"
  std::uint32_t limit = 100;           // "limit": 1..10000
  std::optional<std::string> type;     // "task_type" ("type" names the message itself)
  std::optional<std::string> worker;   // "worker": last holder
  std::optional<std::int32_t> priority_min;  // "priority_min"
  std::optional<std::int32_t> priority_max;  // "priority_max"
  millis created_from = 0;             // "created_from"
  millis created_to = 0;               // "created_to"
  millis finished_from = 0;            // "finished_from"
  millis finished_to = 0;              // "finished_to"
  std::string text;                    // "text": case-insensitive substring of type/title/description
  task_id after = 0;                   // "after": continue after this id (exclusive), 0 = start
  bool oldest_first = false;           // "order": "newest" (default) | "oldest"
};
// "events": stored events with a sequence number above `after`, oldest first.
struct list_events {
  std::uint64_t after = 0;             // "after"
  std::uint32_t limit = 1000;          // "limit": 1..10000
  std::optional<std::string> project;  // "project"
  std::vector<std::string> kinds;      // "kinds": event kinds or prefixes ("task.", "worker.lost")
};
// "pool": move a worker between the active and the reserve pool.
struct set_pool {
  std::string worker;                      // "worker"
  worker_pool pool = worker_pool::active;  // "pool"
};
struct list_workers {};   // "workers"
struct list_projects {};  // "projects"
struct get_stats {};      // "stats"
struct pause_project {    // "pause"
  std::string project;
};
struct resume_project {  // "resume"
  std::string project;
};
// "retry": a dead, failed or cancelled task is queued again with its attempts reset.
struct retry_task {
  task_id task = 0;  // "task"
};
// "remove": a finished task is deleted from the store.
struct remove_task {
  task_id task = 0;  // "task"
};
// "order": tell a worker, in its next heartbeat reply, to drain (take no new work) or stop
// (finish what it holds and leave); "resume" takes a drain back.
struct worker_order {
  std::string worker;  // "worker"
  std::string order;   // "order": "drain" | "stop" | "resume"
};
// "configure": change a project's limits; fields left out keep their value.
struct configure_project {
  std::string project;                        // "project"
  std::optional<std::uint32_t> max_inflight;  // "max_inflight": 0..1000000, 0 = no cap
  std::optional<std::uint32_t> weight;        // "weight": 1..1000
};

using request_body =
    std::variant<register_worker, fetch, complete, fail, heartbeat, goodbye, submit, get_task,
                 cancel, list_tasks, list_workers, list_projects, get_stats, pause_project,
                 resume_project, configure_project, extend, retry_task, remove_task, worker_order,
                 list_events, set_pool, report>;

struct request {
  std::uint64_t id = 0;
  request_body body;
  // "token": the credential that says who is asking (see docs/SECURITY.md). Optional on the
  // wire; a dispatcher with authentication on refuses requests without a valid one. Last, with a
  // default, so that {id, body} still reads as a request without one.
  std::string token = {};
};

// ---- replies: dispatcher -> client ----

struct job {
  task_id task = 0;          // "task"
  std::string project;       // "project"
  std::string type;          // "type"
  std::int32_t priority = 0;  // "priority"
  std::string payload;       // "payload": bin
  std::uint32_t attempt = 0;  // "attempt": lease token, echo it in complete / fail
  std::uint32_t timeout_ms = 0;  // "timeout_ms": the lease; extend before it runs out
};

struct registered {  // "registered"
  std::uint32_t heartbeat_ms = 1000;  // send a heartbeat at least this often
  std::uint32_t liveness = 3;         // missed heartbeats before the worker is declared lost
};

struct jobs {  // "jobs": reply to fetch, possibly empty when the wait ran out
  std::vector<job> jobs;
};

struct ok {};  // "ok": reply to complete, fail, extend, goodbye, cancel and admin changes

// "heartbeat": reply to a heartbeat, carrying what the dispatcher wants of the worker.
struct heartbeat_reply {
  std::string order = "none";    // "order": "none" | "drain" | "stop"
  std::vector<task_id> cancel;   // "cancel": stop these tasks and do not report them
  std::vector<task_id> expiring;  // "expiring": leases ending soon; extend them if still working
};

struct submitted {  // "submitted": ids in the order of the submitted tasks
  std::vector<task_id> ids;
};

struct task_info {  // "task": reply to status
  task t;
};

struct task_list {  // "task_list": reply to tasks
  std::vector<task> tasks;
  task_id next = 0;  // "next": pass as `after` for the following page; 0 = no more
};

// One event, as stored, published and listed. `kind` is e.g. "task.completed", "worker.lost".
struct event_record {
  std::uint64_t seq = 0;  // "seq": increasing, never reused
  std::string kind;       // "kind"
  millis at = 0;          // "at"
  task_id task = 0;       // "task": 0 for worker and project events
  std::string project;    // "project"
  std::string worker;     // "worker"
  std::string detail;     // "detail"
};

struct event_list {  // "event_list": reply to events
  std::vector<event_record> events;
  std::uint64_t next = 0;  // "next": the last seq returned (or `after` if none): resume from it
};

struct worker_info {
  std::string id;
  worker_pool pool = worker_pool::active;
  std::string state;  // "active", "engaged", "standby", "idle"...; see PROTOCOL.md
  std::uint32_t capacity = 0;
  std::uint32_t running = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::vector<std::string> types;
  std::vector<std::string> tags;
  millis last_heartbeat = 0;  // "last_heartbeat": ms since the epoch (registration counts)
};

struct worker_list {  // "worker_list"
  std::vector<worker_info> workers;
};

struct project_info {
  std::string name;
  bool paused = false;
  std::uint32_t max_inflight = 0;  // 0 = no cap
  std::uint32_t weight = 1;
  std::map<std::string, std::uint64_t> counts;  // task count per status name
};

struct project_list {  // "project_list"
  std::vector<project_info> projects;
};

struct stats {  // "stats"
  std::map<std::string, std::uint64_t> tasks;  // count per status name, every status present
  std::vector<worker_info> workers;
  std::vector<project_info> projects;
  std::uint64_t reserve_engagements = 0;
  std::uint64_t reserve_releases = 0;
  std::uint64_t completed_last_minute = 0;  // tasks completed in the last 60 s
  std::uint64_t completed_last_hour = 0;    // tasks completed in the last 3600 s
  std::uint32_t wait_p50_ms = 0;  // queue wait (submit or requeue to assignment) percentiles over
  std::uint32_t wait_p90_ms = 0;  // the last 10,000 assignments
  std::uint32_t wait_p99_ms = 0;
};

// Error codes are sent as their snake_case names (see to_string).
enum class error_code : std::uint8_t {
  malformed,            // not msgpack, or not a map
  unsupported_version,  // "v" missing or not 1
  unknown_type,         // "type" names no message of this protocol / endpoint
  bad_field,            // a field is missing, of the wrong type or out of range
  too_large,            // frame above the configured limit
  not_registered,       // a worker message from a peer that has not registered
  unknown_task,         // no such task
  not_owner,            // the task is not held by this worker
  stale_lease,          // the attempt number is not the current lease
  invalid_state,        // the task or project is in a state that forbids this
  storage,              // the store could not write; nothing was acknowledged
  unknown_worker,       // no connected worker has that id
  unauthenticated,      // no token, or a token the dispatcher does not know
  forbidden,            // the token's role (or project scope) does not allow this request
  rate_limited,         // the peer sent more messages per second than allowed; slow down
  too_many_peers,       // the dispatcher serves as many peers as it is configured for
  internal,             // anything else; the message says what (always the last code)
};
std::string_view to_string(error_code c);
std::optional<error_code> parse_error_code(std::string_view text);

struct error {  // "error"
  error_code code = error_code::internal;
  std::string message;
};

// A result of a "report" that was not applied, and why (the error a complete or fail of that
// job alone would have got).
struct refused_result {
  task_id task = 0;                        // "task"
  error_code code = error_code::internal;  // "code"
  std::string message;                     // "message"
};

// "reported": reply to report, once every applied result is stored; `refused` lists the others
// in request order (empty when all were applied).
struct reported {
  std::vector<refused_result> refused;  // "refused"
};

using reply_body = std::variant<registered, jobs, ok, submitted, task_info, task_list, worker_list,
                                project_list, stats, error, heartbeat_reply, event_list, reported>;

struct reply {
  std::uint64_t id = 0;  // the request id this answers; 0 when the request had none readable
  reply_body body;
};

}  // namespace dispatch::protocol
