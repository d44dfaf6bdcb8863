#include "worker-agent/agent_loop.hpp"

#include <algorithm>
#include <array>
#include <iterator>
#include <optional>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "protocol/codec.hpp"
#include "protocol/duration.hpp"

namespace dispatch::worker {
namespace {

// The address of the job threads' reports; one context per agent, so the name needs no suffix.
constexpr const char* results_endpoint = "inproc://job-results";
// How long stop() waits for the answer to goodbye.
constexpr std::chrono::milliseconds goodbye_wait{1000};
// The pause before fetching again after the dispatcher refused a fetch.
constexpr std::chrono::milliseconds refused_fetch_pause{1000};
// The shortest wait for results to be reported once stopping with nothing left running.
constexpr std::chrono::milliseconds min_drain_wait{1000};
// The protocol's cap on the results of one report.
constexpr std::size_t max_report_results = 10000;
// The most result and error bytes one report carries (its first result goes whatever its size,
// as it would alone). Above the dispatcher's --max-frame (default 4 MiB) a report is refused as
// a whole, and above four times that it is not even read: sent again after every reconnect, it
// would never get through.
constexpr std::size_t max_report_bytes = 1 << 20;
// A generous bound on the keys and headers around the data of one result in a report.
constexpr std::size_t result_overhead = 80;

const protocol::error* as_error(const protocol::reply_body& body) {
  return std::get_if<protocol::error>(&body);
}

std::string describe(protocol::error_code code, const std::string& message) {
  return std::string(protocol::to_string(code)) + ": " + message;
}

std::string describe(const protocol::error& e) { return describe(e.code, e.message); }

std::size_t report_size(const finished_job& r) { return r.outcome.data.size() + result_overhead; }

protocol::task_result to_wire(const finished_job& r) {
  protocol::task_result t;
  t.task = r.task;
  t.attempt = r.attempt;
  t.failed = !r.outcome.ok;
  (r.outcome.ok ? t.result : t.error) = r.outcome.data;
  t.retryable = r.outcome.retryable;
  return t;
}

// The PULL end is bound before the job threads start, so it exists when they connect.
zmq::socket_t bound_pull(zmq::context_t& ctx) {
  zmq::socket_t pull(ctx, zmq::socket_type::pull);
  pull.bind(results_endpoint);
  return pull;
}

std::chrono::milliseconds millis_of(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

bool is_not_registered(const protocol::error* e) {
  return e && e->code == protocol::error_code::not_registered;
}

}  // namespace

agent_loop::agent_loop(const agent_options& options, std::string worker_id,
                       std::map<std::string, handler> handlers, stop_signal& stop)
    : options_(options),
      worker_id_(std::move(worker_id)),
      handlers_(std::move(handlers)),
      stop_(stop),
      results_(bound_pull(ctx_)),
      lease_requests_(std::make_shared<lease_requests>()),
      pool_(ctx_, results_endpoint, options.capacity,
            [requests = lease_requests_](task_id task, std::uint32_t attempt,
                                         std::chrono::milliseconds d) {
              requests->push({task, attempt, d});
            }),
      backoff_(options.reconnect_min) {
  for (const auto& [type, h] : handlers_) types_.push_back(type);
}

int agent_loop::run() {
  on_stop_signal();  // stop() may have been called before run()
  try {
    connect();
  } catch (const zmq::error_t& e) {
    throw std::invalid_argument("cannot connect to endpoint '" + options_.endpoint +
                                "': " + e.what());
  }

  while (!done_) {
    tick();
    if (done_) break;

    std::array<zmq::pollitem_t, 4> items{};
    items[0] = {nullptr, stop_.fd(), ZMQ_POLLIN, 0};
    items[1] = {results_.handle(), 0, ZMQ_POLLIN, 0};
    items[2] = {nullptr, lease_requests_->fd(), ZMQ_POLLIN, 0};
    std::size_t count = 3;
    if (link_ != link::disconnected) items[count++] = {dealer_.handle(), 0, ZMQ_POLLIN, 0};

    zmq::poll(items.data(), count, poll_timeout());

    if (items[0].revents & ZMQ_POLLIN) on_stop_signal();
    // Results before lease requests: an extension for a job that just ended is then dropped.
    if (items[1].revents & ZMQ_POLLIN) on_results_readable();
    if (items[2].revents & ZMQ_POLLIN) on_lease_requests();
    if (count == 4 && (items[3].revents & ZMQ_POLLIN)) on_dealer_readable();
  }
  spdlog::info("worker {} stopped", worker_id_);
  return 0;
}

// ---- connection ----

void agent_loop::connect() {
  dealer_ = zmq::socket_t(ctx_, zmq::socket_type::dealer);
  // Whatever is still queued when we give up on a connection is stale: never block on it.
  dealer_.set(zmq::sockopt::linger, 0);
  if (options_.curve) {
    std::string error;
    if (!security::apply_curve_client(dealer_, options_.curve->client, options_.curve->server_public,
                                      error))
      throw std::invalid_argument(error);
  }
  dealer_.connect(options_.endpoint);
  link_ = link::registering;
  // The liveness window covers the wait for "registered" too.
  last_heard_ = clock::now();
  send_register();
}

void agent_loop::lose_connection(const std::string& reason) {
  spdlog::warn("lost the dispatcher at {} ({}); reconnecting in {}", options_.endpoint, reason,
               format_duration(backoff_));
  dealer_.close();
  link_ = link::disconnected;
  forget_requests();
  reconnect_at_ = clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
}

void agent_loop::send_register() {
  protocol::register_worker r;
  r.worker = worker_id_;
  r.types = types_;
  r.tags = options_.tags;
  r.capacity = options_.capacity;
  r.pool = options_.pool;
  r.running = held_tasks();
  if (auto id = send(std::move(r))) in_flight_[*id] = {request_kind::register_worker};
}

std::optional<std::uint64_t> agent_loop::send(protocol::request_body body) {
  if (link_ == link::disconnected) return std::nullopt;
  const protocol::request r{next_request_id_++, std::move(body), options_.token};
  protocol::encode(r, encode_buffer_);
  // Without ZMQ_IMMEDIATE a connecting DEALER queues up to its high-water mark, so a refused
  // send means the dispatcher has not been reading for a long time.
  if (!dealer_.send(zmq::buffer(encode_buffer_), zmq::send_flags::dontwait)) {
    lose_connection("send queue full");
    return std::nullopt;
  }
  return r.id;
}

void agent_loop::forget_requests() {
  // Extensions the handlers asked for are still wanted: send them again once registered.
  for (const auto& [id, req] : in_flight_)
    if (req.kind == request_kind::extend && running_.count(req.of) && !cancelled_.count(req.of))
      extends_.try_emplace(req.of, req.duration);
  in_flight_.clear();
  fetch_outstanding_ = false;
  // A result whose answer was lost may or may not have arrived: send it again after
  // re-registering; a duplicate is refused as stale and dropped.
  requeue_unacked();
}

// ---- incoming ----

void agent_loop::on_stop_signal() {
  stop_.drain();
  const int requests = stop_.requests();
  if (requests >= 1) begin_stop("stop requested");
  if (requests >= 2 && !interrupting_) {
    interrupting_ = true;
    spdlog::info("stop requested again: interrupting {} running job(s)", running_.size());
    pool_.request_stop_all();
  }
}

void agent_loop::begin_stop(const char* why) {
  // A stop order and stop() lead to the same stop; only the first one counts.
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("stopping ({}): waiting for {} running job(s)", why, running_.size());
}

void agent_loop::on_results_readable() {
  finished_job r;
  while (receive_result(results_, r)) {
    const lease l{r.task, r.attempt};
    running_.erase(l);
    extends_.erase(l);
    if (cancelled_.erase(l)) {
      // The dispatcher took the task back; reporting it would only be refused.
      spdlog::debug("task {} attempt {} ended after its cancellation; outcome dropped", r.task,
                    r.attempt);
      continue;
    }
    spdlog::debug("task {} attempt {} {}", r.task, r.attempt,
                  r.outcome.ok ? "succeeded" : "failed: " + r.outcome.data);
    outbox_.push_back(r);
  }
  // Only now: every job that ended meanwhile shares one report.
  flush_outbox();
}

void agent_loop::on_lease_requests() {
  for (const auto& r : lease_requests_->take()) {
    const lease l{r.task, r.attempt};
    if (!running_.count(l) || cancelled_.count(l)) {
      // Asked by a handler after it returned (it kept its job_control) or after a cancel.
      spdlog::debug("not extending task {} attempt {}: the job is no longer held", r.task,
                    r.attempt);
      continue;
    }
    extends_.insert_or_assign(l, r.duration);
  }
  flush_extends();
}

void agent_loop::on_dealer_readable() {
  std::vector<zmq::message_t> frames;
  // on_reply may drop the connection, which closes the socket: check before every read.
  while (link_ != link::disconnected) {
    frames.clear();
    if (!zmq::recv_multipart(dealer_, std::back_inserter(frames), zmq::recv_flags::dontwait))
      break;
    // Anything at all proves the dispatcher is alive, even a message we cannot decode.
    last_heard_ = clock::now();
    if (frames.empty()) continue;
    // The body is the last frame, whether or not the dispatcher adds an empty delimiter.
    const auto& body = frames.back();
    protocol::reply reply;
    protocol::decode_failure why;
    if (!protocol::decode(std::string_view(body.data<char>(), body.size()), reply, why)) {
      spdlog::warn("undecodable message from the dispatcher: {}", why.message);
      continue;
    }
    on_reply(reply);
  }
}

void agent_loop::on_reply(const protocol::reply& r) {
  const auto* err = as_error(r.body);

  // Cancels and orders are followed even when the heartbeat they answer is no longer tracked.
  if (const auto* hb = std::get_if<protocol::heartbeat_reply>(&r.body)) {
    in_flight_.erase(r.id);
    on_heartbeat_reply(*hb);
    return;
  }

  if (auto it = unacked_.find(r.id); it != unacked_.end()) {
    if (is_not_registered(err)) {
      // Nothing of this report was applied, nor of those sent after it on this registration:
      // all of them go back, in the order they were sent, to be sent again once registered.
      requeue_unacked();
      on_not_registered();
      return;
    }
    const std::vector<sent_result> sent = std::move(it->second);
    unacked_.erase(it);
    on_report_answer(sent, r.body);
    return;
  }

  const auto it = in_flight_.find(r.id);
  if (it == in_flight_.end()) {
    // An answer to a request of an earlier registration, or to an unreadable request (id 0).
    if (err) spdlog::warn("dispatcher error for request {}: {}", r.id, describe(*err));
    return;
  }
  const pending_request req = it->second;
  in_flight_.erase(it);

  switch (req.kind) {
    case request_kind::register_worker:
      if (const auto* reg = std::get_if<protocol::registered>(&r.body)) {
        on_registered(*reg);
      } else {
        // Retrying at once would be refused the same way; back off like after a lost link.
        spdlog::error("registration refused: {}",
                      err ? describe(*err) : std::string(protocol::type_name(r.body)));
        lose_connection("registration refused");
      }
      break;
    case request_kind::fetch:
      fetch_outstanding_ = false;
      if (const auto* jobs = std::get_if<protocol::jobs>(&r.body)) {
        accept_jobs(jobs->jobs);
      } else if (is_not_registered(err)) {
        on_not_registered();
      } else {
        spdlog::warn("fetch refused: {}",
                     err ? describe(*err) : std::string(protocol::type_name(r.body)));
        // Do not hammer a dispatcher that refuses: wait one fetch period.
        fetch_not_before_ = clock::now() + std::max(options_.fetch_wait, refused_fetch_pause);
      }
      break;
    case request_kind::heartbeat:
      // heartbeat_reply was handled above; "ok" comes from a dispatcher older than orders and
      // cancels, and means nothing more than "alive".
      if (is_not_registered(err))
        on_not_registered();
      else if (err)
        spdlog::warn("heartbeat refused: {}", describe(*err));
      break;
    case request_kind::goodbye:
      if (err) spdlog::warn("goodbye refused: {}", describe(*err));
      done_ = true;
      break;
    case request_kind::extend:
      if (!err) {
        spdlog::debug("lease of task {} attempt {} extended by {}", req.of.first, req.of.second,
                      format_duration(req.duration));
      } else if (is_not_registered(err)) {
        // Unless a newer request replaced it meanwhile, ask again once registered.
        if (running_.count(req.of) && !cancelled_.count(req.of))
          extends_.try_emplace(req.of, req.duration);
        on_not_registered();
      } else {
        spdlog::warn("dispatcher refused to extend the lease of task {} attempt {}: {}",
                     req.of.first, req.of.second, describe(*err));
      }
      break;
  }
}

void agent_loop::on_report_answer(const std::vector<sent_result>& sent,
                                  const protocol::reply_body& body) {
  const auto* err = as_error(body);
  if (err && err->code == protocol::error_code::too_large && sent.size() > 1) {
    // A limit of the dispatcher (--max-frame, --max-batch, --max-payload of one result) refused
    // the whole report: sent one by one, each result is applied or refused on its own, as a
    // complete or fail would be.
    std::vector<finished_job> again;
    for (const auto& s : sent) {
      if (s.dropped)
        spdlog::debug("answer to the result of cancelled task {} attempt {}: {}", s.job.task,
                      s.job.attempt, describe(*err));
      else
        again.push_back(s.job);
    }
    if (again.empty()) return;
    spdlog::warn("dispatcher refused a report of {} results ({}); sending them one by one",
                 sent.size(), describe(*err));
    outbox_.insert(outbox_.begin(), again.begin(), again.end());
    for (std::size_t n = 0; n < again.size() && link_ == link::registered; ++n)
      if (!send_report(1)) break;
    return;
  }

  // Any answer but an error acknowledges the report; "reported" lists what it did not apply.
  const auto* answer = std::get_if<protocol::reported>(&body);
  std::size_t next_refusal = 0;
  for (const auto& s : sent) {
    const finished_job& job = s.job;
    std::optional<std::string> refusal;
    if (err) {
      refusal = describe(*err);
    } else if (answer && next_refusal < answer->refused.size() &&
               answer->refused[next_refusal].task == job.task) {
      // Refusals come in the order of the results: walking both together pairs them up.
      const auto& refused = answer->refused[next_refusal++];
      refusal = describe(refused.code, refused.message);
    }
    if (s.dropped) {
      spdlog::debug("answer to the result of cancelled task {} attempt {}: {}", job.task,
                    job.attempt, refusal.value_or("ok"));
    } else if (!refusal) {
      spdlog::debug("task {} attempt {} reported", job.task, job.attempt);
    } else {
      // stale_lease, invalid_state...: the dispatcher moved on (cancel, lease expired, duplicate
      // after a reconnect); there is nothing better to do with the result.
      spdlog::warn("dispatcher refused the result of task {} attempt {}: {}", job.task, job.attempt,
                   *refusal);
    }
  }
  // Only a dispatcher that broke the pairing gets here; say so rather than lose the refusal.
  for (; answer && next_refusal < answer->refused.size(); ++next_refusal) {
    const auto& refused = answer->refused[next_refusal];
    spdlog::warn("dispatcher refused a result of task {} that is not in its report: {}",
                 refused.task, describe(refused.code, refused.message));
  }
}

void agent_loop::on_registered(const protocol::registered& r) {
  link_ = link::registered;
  backoff_ = options_.reconnect_min;
  heartbeat_ = std::chrono::milliseconds(std::max<std::uint32_t>(r.heartbeat_ms, 1));
  liveness_ = std::max<std::uint32_t>(r.liveness, 1);
  next_heartbeat_ = clock::now() + heartbeat_;
  spdlog::info("registered with {} as {} (capacity {}, pool {}, heartbeat {}, {} task(s) held)",
               options_.endpoint, worker_id_, options_.capacity, to_string(options_.pool),
               format_duration(heartbeat_), held_tasks().size());
  flush_outbox();
  flush_extends();
}

void agent_loop::on_not_registered() {
  // Several requests in flight are refused together; one new register is enough.
  if (link_ != link::registered) return;
  spdlog::warn("dispatcher at {} does not know worker {} (restarted?); registering again",
               options_.endpoint, worker_id_);
  link_ = link::registering;
  forget_requests();
  send_register();
}

void agent_loop::accept_jobs(const std::vector<protocol::job>& jobs) {
  for (const auto& pj : jobs) {
    if (goodbye_deadline_) {
      // Goodbye hands every task we hold back to the queue, this one included.
      spdlog::debug("ignoring task {} received after goodbye", pj.task);
      continue;
    }
    if (stopping_) {
      outbox_.push_back({pj.task, pj.attempt, {false, "agent stopping", true}});
      continue;
    }
    if (draining_) {
      // Handed back at once rather than left to time out: another worker can run it now.
      outbox_.push_back({pj.task, pj.attempt, {false, "worker draining", true}});
      continue;
    }
    if (running_.count({pj.task, pj.attempt})) {
      // Cannot happen with a correct dispatcher; the running job reports for both.
      spdlog::warn("dispatcher sent task {} attempt {} again while it runs", pj.task, pj.attempt);
      continue;
    }
    if (running_.size() >= options_.capacity) {
      // Cannot happen with a correct dispatcher: fetch never asks for more than the free slots.
      spdlog::warn("dispatcher sent task {} beyond capacity {}", pj.task, options_.capacity);
      outbox_.push_back({pj.task, pj.attempt, {false, "agent at capacity", true}});
      continue;
    }
    const auto h = handlers_.find(pj.type);
    if (h == handlers_.end()) {
      const std::string why = "worker " + worker_id_ + " has no handler for type '" + pj.type + "'";
      outbox_.push_back({pj.task, pj.attempt, {false, why, false}});
      continue;
    }
    spdlog::debug("starting task {} attempt {} ({}/{})", pj.task, pj.attempt, pj.project,
                  pj.type);
    running_.insert({pj.task, pj.attempt});
    pool_.submit(job{pj.task, pj.project, pj.type, pj.priority, pj.payload, pj.attempt,
                     std::chrono::milliseconds(pj.timeout_ms)},
                 h->second);
  }
  // The jobs handed back share one report.
  flush_outbox();
}

// ---- heartbeat answers ----

void agent_loop::on_heartbeat_reply(const protocol::heartbeat_reply& r) {
  // Cancels first: a stop order in the same answer should not wait for cancelled jobs' work.
  for (const task_id task : r.cancel) cancel(task);
  for (const task_id task : r.expiring) warn_expiring(task);
  apply_order(r.order);
}

void agent_loop::apply_order(const std::string& order) {
  // The order is repeated in every answer: act and log on changes only.
  if (order == order_) return;
  const std::string previous = std::exchange(order_, order);
  if (order == "none") {
    if (draining_) spdlog::info("dispatcher lifted its drain order: fetching jobs again");
    if (previous == "stop") spdlog::info("dispatcher withdrew its stop order; stopping anyway");
    draining_ = false;
  } else if (order == "drain") {
    spdlog::info("dispatcher ordered a drain: fetching no new jobs, {} running job(s) continue",
                 running_.size());
    draining_ = true;
  } else if (order == "stop") {
    if (stopping_) spdlog::info("dispatcher ordered a stop; already stopping");
    begin_stop("ordered by the dispatcher");
  } else {
    // A later protocol's order: keep doing what the last known order said.
    spdlog::warn("ignoring unknown order '{}' from the dispatcher", order);
  }
}

void agent_loop::cancel(task_id task) {
  bool held = false;
  for (const lease& l : running_) {
    if (l.first != task) continue;
    held = true;
    if (!cancelled_.insert(l).second) continue;  // listed again before the job ended
    spdlog::info("task {} attempt {} cancelled by the dispatcher: stopping it", l.first, l.second);
    pool_.request_stop(l.first, l.second);
    extends_.erase(l);
  }

  // Results waiting to be sent are dropped, and those sent are never sent again.
  const auto waiting = std::remove_if(outbox_.begin(), outbox_.end(),
                                      [task](const finished_job& r) { return r.task == task; });
  if (waiting != outbox_.end()) {
    held = true;
    spdlog::info("task {} cancelled by the dispatcher: dropping its unsent result", task);
    outbox_.erase(waiting, outbox_.end());
  }
  for (auto& [id, sent] : unacked_) {
    for (auto& s : sent) {
      if (s.job.task != task || s.dropped) continue;
      held = true;
      s.dropped = true;
    }
  }

  if (!held) spdlog::debug("ignoring the cancel of task {}, which this worker does not hold", task);
}

void agent_loop::warn_expiring(task_id task) {
  bool held = false;
  for (const lease& l : running_) {
    if (l.first != task || cancelled_.count(l)) continue;
    held = true;
    spdlog::debug("lease of task {} attempt {} ends soon; telling its handler", l.first, l.second);
    pool_.warn_lease_expiring(l.first, l.second);
  }
  if (!held) spdlog::debug("ignoring the lease warning for task {}, not running here", task);
}

// ---- results ----

void agent_loop::flush_extends() {
  while (link_ == link::registered && !extends_.empty()) {
    const auto [l, duration] = *extends_.begin();
    const auto id = send(protocol::extend{l.first, l.second,
                                          static_cast<std::uint32_t>(duration.count())});
    if (!id) break;  // the connection is lost: sent again after the next register
    in_flight_[*id] = {request_kind::extend, l, duration};
    extends_.erase(l);
  }
}

void agent_loop::flush_outbox() {
  // Until registered, results wait here: sent after the next successful register.
  while (link_ == link::registered && !outbox_.empty()) {
    std::size_t count = 1;
    std::size_t bytes = report_size(outbox_.front());
    while (count < outbox_.size() && count < max_report_results) {
      bytes += report_size(outbox_[count]);
      if (bytes > max_report_bytes) break;
      ++count;
    }
    if (!send_report(count)) break;
  }
}

bool agent_loop::send_report(std::size_t count) {
  protocol::report r;
  r.results.reserve(count);
  std::transform(outbox_.begin(), outbox_.begin() + static_cast<std::ptrdiff_t>(count),
                 std::back_inserter(r.results), to_wire);
  // A failed send loses the connection and puts the unacknowledged results back in front of
  // these, which stay in the outbox.
  const auto id = send(std::move(r));
  if (!id) return false;
  auto& sent = unacked_[*id];
  for (; count > 0; --count) {
    sent.push_back({std::move(outbox_.front())});
    outbox_.pop_front();
  }
  return true;
}

void agent_loop::requeue_unacked() {
  // Request ids grow with time, so the map holds the results in the order they were sent; all
  // of them are older than anything still in the outbox.
  std::vector<finished_job> again;
  for (auto& [id, sent] : unacked_)
    for (auto& s : sent)
      if (!s.dropped) again.push_back(std::move(s.job));
  outbox_.insert(outbox_.begin(), std::make_move_iterator(again.begin()),
                 std::make_move_iterator(again.end()));
  unacked_.clear();
}

std::vector<task_id> agent_loop::held_tasks() const {
  // Until its result is acknowledged, a task still belongs to this worker; a cancelled one no
  // longer does, even while its handler winds down.
  std::set<task_id> held;
  for (const auto& l : running_)
    if (!cancelled_.count(l)) held.insert(l.first);
  for (const auto& r : outbox_) held.insert(r.task);
  for (const auto& [id, sent] : unacked_)
    for (const auto& s : sent)
      if (!s.dropped) held.insert(s.job.task);
  return {held.begin(), held.end()};
}

// ---- timers ----

void agent_loop::tick() {
  const auto now = clock::now();
  if (link_ == link::disconnected) {
    const bool nothing_to_do = stopping_ && running_.empty() && outbox_.empty();
    if (now >= reconnect_at_ && !goodbye_deadline_ && !nothing_to_do) connect();
  } else if (now - last_heard_ >= liveness_window()) {
    lose_connection("nothing received for " + format_duration(millis_of(liveness_window())));
  }

  if (link_ == link::registered) {
    // Heartbeats go out even while a fetch is parked at the dispatcher.
    if (now >= next_heartbeat_) {
      if (auto id = send(protocol::heartbeat{})) in_flight_[*id] = {request_kind::heartbeat};
      next_heartbeat_ = now + heartbeat_;
    }
    maybe_fetch(now);
  }

  if (stopping_) progress_stop(now);
}

void agent_loop::maybe_fetch(clock::time_point now) {
  if (stopping_ || draining_ || fetch_outstanding_ || now < fetch_not_before_ ||
      link_ != link::registered)
    return;
  if (running_.size() >= options_.capacity) return;
  protocol::fetch f;
  f.max = options_.capacity - static_cast<std::uint32_t>(running_.size());
  f.wait_ms = static_cast<std::uint32_t>(options_.fetch_wait.count());
  if (auto id = send(f)) {
    in_flight_[*id] = {request_kind::fetch};
    fetch_outstanding_ = true;
  }
}

void agent_loop::progress_stop(clock::time_point now) {
  if (!running_.empty()) return;  // their results are reported as they come in
  if (goodbye_deadline_) {
    if (now >= *goodbye_deadline_) {
      spdlog::warn("no answer to goodbye within {}", format_duration(goodbye_wait));
      done_ = true;
    }
    return;
  }
  if (link_ == link::registered) {
    // A parked fetch may still hand us jobs: wait for its answer (it is due within fetch_wait)
    // so that they are failed back at once instead of waiting for a lease to expire.
    if (fetch_outstanding_) {
      if (!fetch_deadline_) fetch_deadline_ = now + options_.fetch_wait + goodbye_wait;
      if (now < *fetch_deadline_) return;
    }
    // Results were sent before (flush on register, report on arrival); the dispatcher handles
    // requests of one connection in order, so goodbye comes after them without waiting.
    if (auto id = send(protocol::goodbye{})) {
      in_flight_[*id] = {request_kind::goodbye};
      goodbye_deadline_ = now + goodbye_wait;
    }
    return;
  }
  if (outbox_.empty()) {
    // Not registered and nothing to report: a goodbye would only speed up what the
    // dispatcher's liveness check does anyway, not worth delaying the stop for.
    done_ = true;
    return;
  }
  // Results still to report: give the connection a bounded chance to come back.
  if (!drain_deadline_)
    drain_deadline_ = now + std::max<clock::duration>(liveness_window(), min_drain_wait);
  if (now >= *drain_deadline_) {
    spdlog::warn("giving up: {} result(s) not reported; the dispatcher will requeue them",
                 outbox_.size());
    done_ = true;
  }
}

std::chrono::milliseconds agent_loop::poll_timeout() const {
  const auto now = clock::now();
  auto wake = now + std::chrono::hours(1);
  const auto consider = [&wake](clock::time_point t) { wake = std::min(wake, t); };

  if (link_ == link::disconnected) {
    consider(reconnect_at_);
  } else {
    consider(last_heard_ + liveness_window());
  }
  if (link_ == link::registered) {
    consider(next_heartbeat_);
    const bool wants_fetch =
        !stopping_ && !draining_ && !fetch_outstanding_ && running_.size() < options_.capacity;
    if (wants_fetch) consider(fetch_not_before_);
  }
  if (fetch_deadline_) consider(*fetch_deadline_);
  if (goodbye_deadline_) consider(*goodbye_deadline_);
  if (drain_deadline_) consider(*drain_deadline_);

  if (wake <= now) return std::chrono::milliseconds(0);
  // Round up: waking a fraction of a millisecond early would spin through a zero timeout.
  return std::chrono::ceil<std::chrono::milliseconds>(wake - now);
}

}  // namespace dispatch::worker
