// The state machine behind agent::run(). It runs on the caller's thread and owns the DEALER socket
// to the dispatcher, the PULL socket job threads report to, and the job pool.
//
// One poll waits on four things at once: the stop pipe, the PULL socket, the lease-request pipe
// and the DEALER socket; its timeout is the nearest timer (heartbeat, liveness, reconnect,
// shutdown deadlines), so the loop never spins.
//
// The dispatcher steers the agent through its heartbeat answers: orders (drain, stop), tasks to
// cancel (stopped and never reported) and lease warnings (passed on to the handlers).
//
// Results go out as "report" requests: every result ready at the same moment (one drain of the
// PULL socket, or the outbox after registering) shares one message and one reply.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "protocol/messages.hpp"
#include "worker-agent/agent.hpp"
#include "worker-agent/job_pool.hpp"
#include "worker-agent/lease_requests.hpp"
#include "worker-agent/result_channel.hpp"
#include "worker-agent/stop_signal.hpp"

namespace dispatch::worker {

class agent_loop {
 public:
  // `handlers` maps every served type to its handler; `options` and `stop` must outlive the loop.
  agent_loop(const agent_options& options, std::string worker_id,
             std::map<std::string, handler> handlers, stop_signal& stop);

  // Throws std::invalid_argument when the endpoint cannot be connected to at all.
  int run();

 private:
  using clock = std::chrono::steady_clock;
  enum class link { disconnected, registering, registered };
  // A job is identified by its lease: the same task may come back with a later attempt.
  using lease = std::pair<task_id, std::uint32_t>;
  enum class request_kind {
    register_worker,
    fetch,
    heartbeat,
    goodbye,
    extend,
  };
  struct pending_request {
    request_kind kind = request_kind::heartbeat;
    lease of{};                             // extend only
    std::chrono::milliseconds duration{0};  // extend only
  };
  // One result of a report awaiting its answer.
  struct sent_result {
    finished_job job;
    // Its task was cancelled after the report went out: the answer is only logged, and the
    // result is never sent again nor listed as held. It stays in place so that the answer's
    // refusals still pair up with the results of the report.
    bool dropped = false;
  };

  // Connection
  void connect();
  void lose_connection(const std::string& reason);
  void send_register();
  std::optional<std::uint64_t> send(protocol::request_body body);
  void forget_requests();

  // Incoming
  void on_stop_signal();
  void begin_stop(const char* why);
  void on_results_readable();
  void on_lease_requests();
  void on_dealer_readable();
  void on_reply(const protocol::reply& r);
  void on_registered(const protocol::registered& r);
  void on_not_registered();
  void accept_jobs(const std::vector<protocol::job>& jobs);

  // Heartbeat answers
  void on_heartbeat_reply(const protocol::heartbeat_reply& r);
  void apply_order(const std::string& order);
  void cancel(task_id task);
  void warn_expiring(task_id task);

  // Results
  void on_report_answer(const std::vector<sent_result>& sent, const protocol::reply_body& body);
  // Sends the whole outbox as reports, each within the protocol's and the frame's bounds.
  void flush_outbox();
  // Sends the first `count` results of the outbox as one report; false if the connection failed
  // (they stay in the outbox).
  bool send_report(std::size_t count);
  void requeue_unacked();
  void flush_extends();
  std::vector<task_id> held_tasks() const;

  // Timers
  void tick();
  void maybe_fetch(clock::time_point now);
  void progress_stop(clock::time_point now);
  std::chrono::milliseconds poll_timeout() const;
  clock::duration liveness_window() const { return heartbeat_ * liveness_; }

  const agent_options& options_;
  const std::string worker_id_;
  const std::map<std::string, handler> handlers_;
  std::vector<std::string> types_;
  stop_signal& stop_;

  // Declaration order is destruction order reversed: the pool's threads (and their PUSH
  // sockets) go before the PULL socket, and every socket before the context.
  zmq::context_t ctx_;
  zmq::socket_t results_;
  // Shared with the jobs' extend sinks, which a handler may keep beyond the loop's life.
  std::shared_ptr<lease_requests> lease_requests_;
  job_pool pool_;
  zmq::socket_t dealer_;  // closed while disconnected; a fresh socket per connection
  std::string encode_buffer_;

  link link_ = link::disconnected;
  std::uint64_t next_request_id_ = 1;
  std::map<std::uint64_t, pending_request> in_flight_;  // requests awaiting a reply
  bool fetch_outstanding_ = false;

  std::set<lease> running_;    // jobs handed to the pool whose outcome has not come back
  std::set<lease> cancelled_;  // those of them the dispatcher cancelled: outcome dropped
  std::deque<finished_job> outbox_;                // results not sent yet
  // Reports sent, by request id (so in the order they were sent): their results in order.
  std::map<std::uint64_t, std::vector<sent_result>> unacked_;
  std::map<lease, std::chrono::milliseconds> extends_;  // extend requests not sent yet

  std::string order_ = "none";  // the dispatcher's last order, to log changes only
  bool draining_ = false;       // ordered to drain: fetch nothing until the order is lifted

  std::chrono::milliseconds heartbeat_{1000};  // replaced by the dispatcher's "registered"
  std::uint32_t liveness_ = 3;
  std::chrono::milliseconds backoff_;
  clock::time_point last_heard_{};
  clock::time_point next_heartbeat_{};
  clock::time_point reconnect_at_{};
  clock::time_point fetch_not_before_{};

  bool stopping_ = false;
  bool interrupting_ = false;
  std::optional<clock::time_point> fetch_deadline_;    // stopping, waiting for a parked fetch
  std::optional<clock::time_point> drain_deadline_;    // stopping, waiting to report results
  std::optional<clock::time_point> goodbye_deadline_;  // goodbye sent, waiting for its answer
  bool done_ = false;
};

}  // namespace dispatch::worker
