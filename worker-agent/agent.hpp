// The embeddable worker agent: connects to dispatcherd's work endpoint, fetches jobs and runs them
// with the handlers registered for their type.
//
// Contract
//  - A handler is called on one of `capacity` job threads owned by the agent, never on the thread
//    that called run(). Several handlers run at once when capacity > 1, so they must be
//    thread-safe with respect to each other.
//  - A handler returns a job_outcome; an exception escaping it is reported as a retryable failure
//    with the exception's text.
//  - A handler gets a job_control (job_control.hpp) for its job:
//      stop_requested() / wait_for(ms)  the agent wants the job to end early: the dispatcher
//                           cancelled the task (its outcome is then never reported), or stop()
//                           was called a second time. A stopped handler should return soon,
//                           normally with a retryable failure.
//      lease_expiring()     the dispatcher warned that the job's lease (job::timeout from the
//                           start or the last extension) ends soon; past it the attempt counts as
//                           failed and the task runs again elsewhere.
//      extend_lease(ms)     a handler still making progress on a long job asks for more time.
//                           The agent never extends by itself, so a hung handler times out.
//    A long job working in steps, for example:
//      [](const job& j, job_control& ctl) {
//        for (auto& step : plan(j)) {
//          if (ctl.stop_requested()) return job_outcome{false, "stopped", true};
//          if (ctl.lease_expiring()) ctl.extend_lease(std::chrono::minutes(5));
//          step.run();
//        }
//        return job_outcome{true, "", true};
//      }
//  - Delivery is at least once: after a reconnect a result may be reported twice or refused as
//    stale by the dispatcher; the agent logs and drops such refusals.
//
// Built-in handlers (see builtin_handlers.hpp), their payloads and outcomes. None of them extends
// its lease; exec and sleep end early on a stop request.
//  exec   payload: a shell command line, run as `/bin/sh -c <payload>` in its own process group,
//                  stdin from /dev/null.
//         ok:      exit code 0; data = stdout and stderr interleaved as written, at most 1 MiB;
//                  longer output keeps its first 1 MiB followed by
//                  "\n[output truncated: N bytes dropped]".
//         fail:    retryable; "exit code N: <last 512 bytes of output>",
//                  "killed by signal N: <...>", "timed out after 60s" (the whole process group is
//                  killed) or "stopped" (stop requested; process group killed).
//         Processes the command leaves running in its process group are killed when it exits.
//  sleep  payload: decimal milliseconds. ok: empty data. fail: retryable "stopped" when a stop is
//                  requested; not retryable when the payload is not a decimal number.
//  echo   ok: data = payload.
//  fail   fail: retryable "fail handler: <payload>"; not retryable when the payload is "fatal".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/task.hpp"
#include "security/curve_keys.hpp"
#include "worker-agent/job_control.hpp"

namespace dispatch::worker {

struct job {
  task_id id = 0;
  std::string project;
  std::string type;
  std::int32_t priority = 0;
  std::string payload;
  std::uint32_t attempt = 0;  // the lease; the agent echoes it when reporting
  // How long one attempt may run before its lease ends, unless extended (see job_control);
  // 0 when the dispatcher did not say (an older dispatcher without leases).
  std::chrono::milliseconds timeout{0};
};

struct job_outcome {
  bool ok = false;
  std::string data;  // the result on success, the error text on failure
  bool retryable = true;  // failures only: false marks the task failed for good
};

using handler = std::function<job_outcome(const job&, job_control&)>;

struct agent_options {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string id;  // worker name, 1..128 bytes; empty = "<hostname>-<pid>"
  std::uint32_t capacity = 1;  // jobs run at once (= job threads), >= 1
  worker_pool pool = worker_pool::active;
  std::vector<std::string> types;  // task types served; empty = every registered handler
  std::vector<std::string> tags;
  std::chrono::milliseconds fetch_wait{1000};  // long-poll time of one fetch, 0..60 s
  std::chrono::milliseconds reconnect_min{100};  // backoff after a lost connection, doubling...
  std::chrono::milliseconds reconnect_max{5000};  // ...up to this; reset by a successful register
  std::string token;  // sent with every request; a worker token (see docs/SECURITY.md)
  std::optional<security::curve_client_keys> curve;  // set: connect with CURVE
};

class agent {
 public:
  // Throws std::invalid_argument for an invalid option. Creates no thread: a program that
  // blocks signals for a signal-watching thread may construct the agent first.
  explicit agent(agent_options options);
  ~agent();
  agent(const agent&) = delete;
  agent& operator=(const agent&) = delete;

  // Before run() only. Replaces an earlier handler of the same type.
  void add_handler(std::string type, handler h);

  // Connects, registers and serves jobs until stop(); call it once. Returns 0 after a clean stop.
  // Throws std::invalid_argument when a served type has no handler or the endpoint is invalid.
  int run();

  // Asks run() to finish: no new jobs are accepted (jobs still answering a parked fetch are
  // failed back as retryable "agent stopping"), running jobs end and are reported, the agent says
  // goodbye (waiting up to 1 s for the answer) and run() returns. Running jobs are waited for
  // without limit; a second call also requests each of them to stop through its job_control.
  // A "stop" order from the dispatcher (in a heartbeat answer) starts the same stop; a "drain"
  // order only pauses fetching until the dispatcher lifts it.
  // Safe from any thread, also before run(); only touches an atomic and writes to a pipe, so it
  // may even be called from a signal handler.
  void stop() noexcept;

  // The worker name used on the wire (options.id or the generated default).
  const std::string& id() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dispatch::worker
