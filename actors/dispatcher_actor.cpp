#include "actors/dispatcher_actor.hpp"

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <spdlog/spdlog.h>

#include "actors/project_actor.hpp"
#include "actors/store_reader_actor.hpp"
#include "actors/store_write_record.hpp"
#include "dispatcher/outbox.hpp"
#include "dispatcher/policy/scheduler.hpp"
#include "dispatcher/policy/task_timers.hpp"
#include "metrics/dispatcher_metrics.hpp"
#include "protocol/wall_clock.hpp"

namespace dispatch::actors {
namespace {

// Events go to the notifier in batches: every message to it wakes its thread and costs a write
// to the event log, which at one message per dispatcher message was about a tenth of the
// daemon's CPU at K=1 (bench/README.md). A batch leaves this long after its first event, or
// at once when it is this large.
constexpr auto event_batch_delay = std::chrono::milliseconds(5);
constexpr std::size_t event_batch_size = 4096;

using timer = task_timers::kind;
using protocol::error_code;

policy::clock_ms steady_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

policy::queued_task queued_view(const task& t) {
  return {t.id, t.project, t.type, t.priority, t.tags};
}

std::string idempotency_slot(const std::string& project, const std::string& key) {
  std::string slot = project;
  slot.push_back('\0');
  slot += key;
  return slot;
}

struct open_fetch {
  std::uint64_t request_id = 0;
  policy::clock_ms expires = 0;  // steady time the long poll runs out (its fetch_expiry entry)
};

struct worker_record {
  protocol::register_worker spec;
  peer_address peer;
  caf::actor actor;
  std::shared_ptr<heartbeat_clock> alive;  // read by `actor`
  std::optional<open_fetch> fetch;
  std::vector<protocol::job> handed;     // jobs assigned in the current dispatch round
  std::unordered_set<task_id> held;      // running tasks assigned to (or adopted from) it
  std::vector<task_id> to_cancel;        // taken back; told in the next heartbeat reply
  std::string order = "none";            // "none", "drain" or "stop"
  millis last_heartbeat = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
};

// What `stats` reports about the recent past: completions per second over the last hour, and the
// queue waits of the last assignments. Fixed memory, O(1) per event.
class recent_activity {
 public:
  void completed(millis now) {
    const auto second = now / 1000;
    auto& slot = per_second_[static_cast<std::size_t>(second % window_seconds)];
    if (slot.second != second) slot = {0, second};
    ++slot.first;
  }
  std::uint64_t completed_within(millis now, std::int64_t seconds) const {
    const auto current = now / 1000;
    std::uint64_t n = 0;
    for (const auto& [count, second] : per_second_)
      if (second > current - seconds && second <= current) n += count;
    return n;
  }
  void waited(millis wait) {
    waits_[next_wait_++ % waits_.size()] = static_cast<std::uint32_t>(std::max<millis>(wait, 0));
    filled_ = std::min(filled_ + 1, waits_.size());
  }
  // p in (0, 1]: the wait below which that share of the recorded waits fall.
  std::uint32_t wait_percentile(double p) const {
    if (filled_ == 0) return 0;
    std::vector<std::uint32_t> sorted(waits_.begin(), waits_.begin() + filled_);
    const auto k = static_cast<std::size_t>(p * static_cast<double>(filled_ - 1));
    std::nth_element(sorted.begin(), sorted.begin() + k, sorted.end());
    return sorted[k];
  }

 private:
  static constexpr std::int64_t window_seconds = 3600;
  std::vector<std::pair<std::uint64_t, std::int64_t>> per_second_ =
      std::vector<std::pair<std::uint64_t, std::int64_t>>(window_seconds, {0, -1});
  std::vector<std::uint32_t> waits_ = std::vector<std::uint32_t>(10000, 0);
  std::size_t next_wait_ = 0;
  std::size_t filled_ = 0;
};

struct dispatcher_state;
using dispatcher_actor = caf::stateful_actor<dispatcher_state>;

struct dispatcher_state {
  static inline const char* name = "dispatcher";

  // Worker and project actors are not linked (a worker actor stopped on purpose must not take the
  // dispatcher with it), so they are stopped here, however the dispatcher ends.
  ~dispatcher_state() {
    // Events still batched are logged before the notifier stops: main() stops it only after
    // this actor, and this message reaches its mailbox first.
    if (!events.empty()) caf::anon_send(notifier, events_atom::value, std::move(events));
    for (auto& [id, w] : workers)
      if (w.actor) caf::anon_send_exit(w.actor, caf::exit_reason::user_shutdown);
    for (auto& [name, p] : projects) caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
  }

  dispatcher_actor* self = nullptr;
  dispatcher_settings settings;
  shared_store store;
  caf::actor persistence;
  caf::actor reader;  // task queries (list_tasks) and read-ahead, off the writer's thread
  caf::actor notifier;
  std::shared_ptr<outbox> out;
  send_replies_now_fn send_replies_now;
  std::shared_ptr<metrics::dispatcher_metrics> metrics;

  std::unique_ptr<policy::scheduler> policy;
  task_timers timers;
  std::unordered_map<task_id, task> live;  // pending, scheduled and running
  // Pending tasks kept as their id only (the policy knows their lane and priority): submitted or
  // recovered while `live` held settings.resident_tasks. Their stored record is current (they
  // are parked only once stored, and unparked before any change), so it is read back when they
  // are dispatched, cancelled or reach their deadline. Payloads past the bound stay in RocksDB.
  std::unordered_set<task_id> parked;
  // Tasks found running after a restart, waiting for their worker during the recovery grace.
  std::unordered_map<task_id, std::string> orphans;
  // Idempotency keys submitted but not stored yet (project '\0' key -> id): the store cannot
  // answer for them, and a retrying client may race its own first submit.
  std::unordered_map<std::string, task_id> keys_in_flight;
  task_id last_id = 0;
  // The latest created_at given: a clock set back never gives a task an earlier one than its
  // predecessor, which the store's created range search relies on.
  millis last_created_at = 0;
  std::map<std::string, worker_record, std::less<>> workers;
  std::unordered_map<std::string, std::string> worker_by_peer;  // work-endpoint routing id -> id
  std::map<std::string, caf::actor, std::less<>> projects;
  std::map<std::string, persistence::status_counts> recovered_counts;
  bool dispatch_wanted = false;
  // Open long polls by the time they run out. One CAF timer is armed, for the earliest: a fetch
  // costs a set entry here instead of a timer message of its own in CAF's clock thread.
  std::set<std::pair<policy::clock_ms, worker_record*>> fetch_expiry;
  policy::clock_ms fetch_timer_at = 0;  // when the armed timer fires; 0: none armed
  // Set by the first failed store write: from then on new work is refused (see PROTOCOL.md).
  std::optional<std::string> store_failure;
  std::minstd_rand jitter{std::random_device{}()};
  recent_activity recent;

  // Events batched for the notifier (see event_batch_delay), with a timer armed for them.
  event_list events;
  bool events_due_armed = false;
  // Produced while handling one message, sent once at its end (see flush()).
  project_deltas deltas;
  // Store writes of the message, one request to the persistence actor at its end, and what to
  // do once they are stored: plain acknowledgements, and continuations.
  struct write_continuation {
    std::function<void()> stored;
    std::function<void(const std::string&)> failed;
  };
  struct waiting_for_store {
    std::vector<std::pair<peer_address, std::uint64_t>> acks;
    std::vector<write_continuation> continuations;
    bool empty() const { return acks.empty() && continuations.empty(); }
  };
  persistence::write_batch writes;
  waiting_for_store waiting;
  std::size_t store_requests = 0;       // writes and purge slices sent to the persistence actor
  bool queue_waits_for_writes = false;  // set by a submit, see flush_writes()
  static constexpr std::size_t inline_write_limit = 64;  // write_batch::size(); flush_writes()
  std::vector<policy::assignment> assignments;
  std::vector<task_id> read_back_ids;  // scratch of unpark_assigned()
  std::vector<task> read_back;         // scratch of unpark_assigned()
  // Read-ahead of parked tasks (read_ahead()): one request at a time, after at least half a
  // batch was dispatched since the last one, or at once after a pass had to read back itself.
  bool reading_ahead = false;
  std::size_t dispatched_since_read_ahead = 0;
  std::vector<policy::reserve_event> reserve_events;

  // ---------------------------------------------------------------- helpers

  void reply(const peer_address& to, std::uint64_t id, protocol::reply_body body) {
    out->send(to, id, std::move(body));
  }

  void refuse(const peer_address& to, std::uint64_t id, error_code code, std::string message) {
    reply(to, id, protocol::error{code, std::move(message)});
  }

  void emit(event_kind kind, const task& t, std::string detail = {}) {
    events.push_back({kind, wall_now(), t.id, t.project, t.worker, std::move(detail)});
  }

  void emit_worker(event_kind kind, std::string worker, std::string detail = {}) {
    events.push_back({kind, wall_now(), 0, {}, std::move(worker), std::move(detail)});
  }

  // Moves a task to `to`, recording the change in `writes` and in the project's counts.
  void move(task& t, task_status to) { writes.put_task(t, change_status(t, to)); }

  // Sets the status and moves the project's counts; returns the status the task had.
  task_status change_status(task& t, task_status to) {
    const auto from = t.status;
    t.status = to;
    auto& d = deltas[t.project];
    --d[static_cast<std::size_t>(from)];
    ++d[static_cast<std::size_t>(to)];
    return from;
  }

  caf::actor& project(const std::string& name) {
    auto it = projects.find(name);
    if (it != projects.end()) return it->second;
    persistence::status_counts counts{};
    if (auto c = recovered_counts.find(name); c != recovered_counts.end()) counts = c->second;
    auto actor = spawn_project(self, name, policy->settings(name), counts, persistence);
    return projects.emplace(name, std::move(actor)).first->second;
  }

  // Ends the handling of every message: runs the dispatch pass it asked for (one per message,
  // however many submits, fetches or completions it held), then stores what it produced: its
  // store writes as one batch and its count changes as one message per touched project,
  // however many tasks moved. Its events join the batch for the notifier. A batch written on
  // this thread (write_inline) has its continuations run at once: new tasks in the queue want
  // another pass, whose assignments are written in turn, here too if they can be.
  void flush() {
    bool written_here = false;
    do {
      if (dispatch_wanted) run_dispatch();
      written_here = flush_writes(written_here);
    } while (written_here);
    for (auto& [name, d] : deltas) self->send(project(name), moved_atom::value, d);
    deltas.clear();
    if (events.size() >= event_batch_size) {
      send_events();
    } else if (!events.empty() && !events_due_armed) {
      events_due_armed = true;
      self->delayed_send(self, event_batch_delay, events_due_atom::value);
    }
  }

  void send_events() {
    if (events.empty()) return;
    self->send(notifier, events_atom::value, std::move(events));
    events.clear();
  }

  // Runs the policy at the end of the current message (flush()).
  void schedule_dispatch() { dispatch_wanted = true; }

  void store_failed(const std::string& why) {
    if (!store_failure) {
      spdlog::critical("the store failed ({}); refusing new submits until restarted", why);
      store_failure = why;
    }
  }

  // Every change of the message being handled goes into `writes` (move(), put_task...): one
  // store request at its end (flush()), which gives writes of one message and of successive
  // messages to the store in the order they were made. A change nobody waits for needs nothing
  // more: if the write fails, store_failed() stops new work and the task runs again after a
  // restart, which at-least-once delivery allows.

  // Runs `on_stored` once this message's writes are stored, `on_failed` if they are not.
  void when_stored(std::function<void()> on_stored,
                   std::function<void(const std::string&)> on_failed) {
    waiting.continuations.push_back({std::move(on_stored), std::move(on_failed)});
  }

  // Answers `ok` once this message's writes are stored, `storage` if they are not.
  void acknowledge_when_stored(peer_address to, std::uint64_t id) {
    waiting.acks.emplace_back(std::move(to), id);
  }

  // Stores this message's writes, here (write_inline) or through the persistence actor. True
  // if they were stored here and their continuations ran. `after_inline`: the writes come from
  // the pass that followed such a batch (a submit's tasks, assigned to waiting workers).
  //
  // A small batch is written on this thread when nothing stands before it: none of our requests
  // at the persistence actor (the store must see our writes in order), and a store that takes it
  // at once (task_store::try_apply: never in fsync mode, never behind another write or a RocksDB
  // stall). That spares the writer's wake-up and its reply. A submit's batch always: its tasks
  // enter the queue only once stored, so the writer's round trip would be on their way to a
  // worker. Nobody waits for the others (a report's completions, the assignments of a pass) on
  // their way to a worker, and this thread has requests to serve: the replies queued so far
  // (the jobs) leave first, and the batch is written here only if no request is waiting to be
  // read, or if it follows a submit's write (a paced producer's submit would otherwise wake the
  // writer for its assignments alone). Written here before the jobs had left, a worker's next
  // round trip waited for them: one worker's lifecycle lost 20-40% (bench/README.md). A large
  // batch is the writer's group commit at its best.
  bool flush_writes(bool after_inline) {
    if (writes.empty() && waiting.empty()) return false;
    const bool submit = std::exchange(queue_waits_for_writes, false);
    bool written = false;
    if (store_requests == 0 && writes.size() <= inline_write_limit && !store->syncs_writes()) {
      const bool nobody_waits = !submit && send_replies_now && send_replies_now();
      if (submit || after_inline || nobody_waits) written = write_inline();
    }
    if (!written) send_writes();
    return written;
  }

  // False if the store did not take the batch at once: it is still to be written.
  bool write_inline() {
    const auto started = std::chrono::steady_clock::now();
    bool applied = false;
    const auto s = store->try_apply(writes, applied);
    if (s.is_ok() && !applied) return false;
    record_store_write(*metrics, started, s, writes.size());
    metrics->store_inline_write();
    writes.clear();
    const auto then = std::exchange(waiting, {});
    if (s.is_ok())
      stored(then);
    else
      not_stored(then, s.to_string());
    return true;
  }

  void send_writes() {
    // One copy for both handlers to share: each capturing its own would copy every waiting
    // address and continuation once more per message.
    auto then = std::make_shared<waiting_for_store>(std::exchange(waiting, {}));
    ++store_requests;
    self->request(persistence, caf::infinite, write_atom::value, std::move(writes))
        .then(
            [=](caf::ok_atom) {
              --store_requests;
              stored(*then);
              flush();
            },
            [=](caf::error& e) {
              --store_requests;
              not_stored(*then, self->system().render(e));
              flush();
            });
    writes.clear();
  }

  void stored(const waiting_for_store& then) {
    for (const auto& [to, id] : then.acks) reply(to, id, protocol::ok{});
    for (const auto& c : then.continuations) c.stored();
  }

  void not_stored(const waiting_for_store& then, const std::string& why) {
    store_failed(why);
    for (const auto& [to, id] : then.acks) refuse(to, id, error_code::storage, why);
    for (const auto& c : then.continuations) c.failed(why);
  }

  worker_record* worker_of(const peer_address& from) {
    auto by_peer = worker_by_peer.find(from.routing_id);
    if (by_peer == worker_by_peer.end()) return nullptr;
    auto it = workers.find(by_peer->second);
    return it == workers.end() ? nullptr : &it->second;
  }

  worker_record* registered_or_refuse(const peer_address& from, std::uint64_t id) {
    auto* w = worker_of(from);
    if (!w)
      refuse(from, id, error_code::not_registered,
             "this connection has not registered as a worker (register first)");
    return w;
  }

  bool is_live(task_id tid) const { return live.count(tid) || parked.count(tid); }

  // The live task `tid`, read back from the store first if it is parked; live.end() if it is not
  // live (or cannot be read back: then it stays parked and the failure is logged).
  std::unordered_map<task_id, task>::iterator find_live(task_id tid) {
    if (auto it = live.find(tid); it != live.end()) return it;
    if (!parked.count(tid)) return live.end();
    task t;
    if (const auto s = store->get(tid, t); !s.is_ok()) {
      spdlog::error("cannot read back queued task {}: {}", tid, s.to_string());
      return live.end();
    }
    unpark(std::move(t));
    return live.find(tid);
  }

  // A parked task read back from the store becomes live again. One that is no longer parked is
  // left alone: it was unparked meanwhile (a read-ahead that answered late), and `live` holds
  // its newer state.
  void unpark(task&& t) {
    const auto tid = t.id;
    if (parked.erase(tid)) live.emplace(tid, std::move(t));
  }

  // Reads back, in one batched store lookup, the parked tasks among this pass's assignments,
  // which find_live() would otherwise read one at a time. With a backlog past the resident bound
  // most assignments are parked tasks.
  void unpark_assigned() {
    read_back_ids.clear();
    for (const auto& a : assignments)
      if (parked.count(a.task)) read_back_ids.push_back(a.task);
    if (read_back_ids.empty()) return;
    dispatched_since_read_ahead = read_ahead_batch;  // the read-ahead fell behind
    // On failure find_live() tries each task alone, and logs the one that cannot be read.
    if (!store->get_unfinished(read_back_ids, read_back).is_ok()) return;
    for (auto& t : read_back) unpark(std::move(t));
  }

  // Tasks read ahead at once: about what a fleet takes in a few dispatch passes.
  static constexpr std::size_t read_ahead_batch = 256;

  // With a backlog past the resident bound, the dispatch pass would read most tasks it hands out
  // back from the store, on this actor's thread and between a worker's fetch and its answer.
  // Instead the parked ones among the tasks the policy will hand out next are read ahead on the
  // store reader's thread, and join `live` before their turn. A hint only: what is still parked
  // at its turn is read back by the pass (unpark_assigned()).
  void read_ahead() {
    if (parked.empty() || reading_ahead || dispatched_since_read_ahead < read_ahead_batch / 2)
      return;
    dispatched_since_read_ahead = 0;
    std::vector<task_id> ids;
    policy->upcoming(read_ahead_batch, read_ahead_batch, ids);
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](task_id id) { return !parked.count(id); }),
              ids.end());
    if (ids.empty()) return;
    reading_ahead = true;
    self->request(reader, caf::infinite, read_atom::value, std::move(ids))
        .then(
            [=](task_list& tasks) {
              reading_ahead = false;
              for (auto& t : tasks) unpark(std::move(t));
            },
            // Nothing is lost: the dispatch pass reads back what it needs itself.
            [=](caf::error&) { reading_ahead = false; });
  }

  // Keeps an unfinished task whose record is stored: whole, except a pending one once `live`
  // holds settings.resident_tasks, which is parked.
  void keep(task&& t) {
    const auto tid = t.id;
    if (t.status != task_status::pending || live.size() < settings.resident_tasks)
      live.emplace(tid, std::move(t));
    else
      parked.insert(tid);
  }

  // ---------------------------------------------------------------- task transitions

  // Every task that starts waiting for a worker comes through here, so the queue depth metric
  // cannot drift from the policy.
  void enqueue(const task& t) {
    policy->enqueue(queued_view(t));
    metrics->queued(t.project, t.priority, +1);
  }

  void report_running(const worker_record& w) {
    metrics->running(w.spec.worker, w.spec.pool, static_cast<std::uint32_t>(w.held.size()));
  }

  // What dispatchctl and the metrics show of a worker: its pool now and its state (an index
  // into shown_states).
  enum shown : std::size_t { shown_active, shown_engaged, shown_standby, shown_draining,
                             shown_stopping };
  static constexpr const char* shown_states[] = {"active", "engaged", "standby", "draining",
                                                 "stopping"};
  std::pair<worker_pool, shown> shown_state(const std::string& name,
                                            const worker_record& w) const {
    std::pair<worker_pool, shown> out{w.spec.pool, shown_active};
    if (auto view = policy->worker(name)) {
      out.first = view->pool;
      out.second = view->state == policy::worker_state::active    ? shown_active
                   : view->state == policy::worker_state::engaged ? shown_engaged
                                                                  : shown_standby;
    }
    if (w.order == "drain") out.second = shown_draining;
    if (w.order == "stop") out.second = shown_stopping;
    return out;
  }

  // Workers per (pool, state), every combination reported so that a state that empties drops
  // to zero instead of keeping its last value. Runs on every registration, so it counts in
  // place: describing each worker would make a fleet's registration quadratic in its size.
  void report_workers() {
    std::uint32_t counts[2][std::size(shown_states)] = {};
    for (const auto& [name, w] : workers) {
      const auto [pool, state] = shown_state(name, w);
      ++counts[pool == worker_pool::reserve][state];
    }
    for (auto pool : {worker_pool::active, worker_pool::reserve})
      for (std::size_t state = 0; state < std::size(shown_states); ++state)
        metrics->workers(std::string(to_string(pool)), shown_states[state],
                         counts[pool == worker_pool::reserve][state]);
  }

  // Takes a running task off its worker: the slot, the lease, the worker's held set. With
  // `tell_worker`, the worker is told in its next heartbeat reply to stop and drop it.
  void release(task& t, bool tell_worker) {
    if (orphans.erase(t.id) == 0) policy->finish(t.id, steady_now());
    timers.clear(timer::lease, t.id);
    t.lease_expires_at = 0;
    if (t.assigned_at) metrics->run_time(static_cast<double>(wall_now() - t.assigned_at) / 1000.0);
    auto w = workers.find(t.worker);
    if (w == workers.end() || !w->second.held.erase(t.id)) return;
    if (tell_worker) w->second.to_cancel.push_back(t.id);
    report_running(w->second);
  }

  void make_pending(task& t) {
    move(t, task_status::pending);
    enqueue(t);
    schedule_dispatch();
  }

  void make_scheduled(task& t, millis run_at) {
    t.run_at = run_at;
    move(t, task_status::scheduled);
    timers.set(timer::run_at, t.id, run_at);
  }

  // Puts a task that was running back into the queue at once: the worker left, was lost or did
  // not report it. That is not the task's fault, so no backoff.
  void requeue(task& t, std::string why) {
    release(t, false);
    make_pending(t);
    emit(event_kind::task_requeued, t, std::move(why));
  }

  millis backoff(std::uint32_t attempts) const {
    const auto base = settings.retry_base.count();
    const auto cap = settings.retry_cap.count();
    const auto shift = std::min<std::uint32_t>(attempts > 0 ? attempts - 1 : 0, 30);
    return std::min<millis>(cap, base << shift);
  }

  // A running attempt failed (reported failure or lease ran out). With attempts left and a
  // retryable failure the task waits out a backoff; otherwise it ends dead (retries exhausted) or
  // failed (the worker said retrying is useless).
  void attempt_failed(std::unordered_map<task_id, task>::iterator it, std::string error,
                      bool retryable, bool tell_worker) {
    auto& t = it->second;
    t.error = std::move(error);
    ++t.failures;
    metrics->failed(t.project);
    if (retryable && t.failures < t.max_attempts) {
      release(t, tell_worker);
      metrics->retried(t.project);
      const auto wait = backoff(t.failures);
      std::uniform_int_distribution<millis> spread(wait / 2, wait);
      make_scheduled(t, wall_now() + spread(jitter));
      emit(event_kind::task_retried, t, t.error);
      return;
    }
    const auto final_status = retryable ? task_status::dead : task_status::failed;
    if (final_status == task_status::dead) metrics->dead(t.project);
    finish(it, final_status,
           final_status == task_status::dead ? event_kind::task_dead : event_kind::task_failed,
           it->second.error, tell_worker);  // finish releases it
  }

  // Ends a live task with a final status, tells the notifier (`kind`, `detail`) and removes the
  // task from the live table into the store's writes (moved: its payload and result are not
  // copied again). A running task is taken off its worker; with `tell_worker` the worker is
  // told to stop it (a cancellation).
  void finish(std::unordered_map<task_id, task>::iterator it, task_status final_status,
              event_kind kind, std::string detail = {}, bool tell_worker = false) {
    auto& t = it->second;
    if (t.status == task_status::running) release(t, tell_worker);
    if (t.status == task_status::pending) {
      policy->cancel(queued_view(t));
      metrics->queued(t.project, t.priority, -1);
    }
    timers.clear_all(t.id);
    t.finished_at = wall_now();
    const auto from = change_status(t, final_status);
    emit(kind, t, std::move(detail));
    writes.put_task(std::move(t), from);
    live.erase(it);
    schedule_dispatch();  // a slot or a project cap may have opened
  }

  void answer_fetch(worker_record& w) {
    if (!w.fetch) return;
    reply(w.peer, w.fetch->request_id, protocol::jobs{std::move(w.handed)});
    w.handed.clear();
    fetch_expiry.erase({w.fetch->expires, &w});
    w.fetch.reset();
    policy->withdraw(w.spec.worker);
  }

  // Makes sure a timer fires by `at` for the long polls that run out then.
  void arm_fetch_timer(policy::clock_ms at) {
    if (fetch_timer_at != 0 && fetch_timer_at <= at) return;
    fetch_timer_at = at;
    const auto delay = std::max<policy::clock_ms>(at - steady_now(), 0);
    if (delay == 0)
      self->send(self, fetch_end_atom::value);
    else
      self->delayed_send(self, std::chrono::milliseconds(delay), fetch_end_atom::value);
  }

  // Answers every long poll that ran out (with no jobs: it would have been answered otherwise).
  void on_fetch_timer() {
    const auto now = steady_now();
    fetch_timer_at = 0;
    while (!fetch_expiry.empty() && fetch_expiry.begin()->first <= now)
      answer_fetch(*fetch_expiry.begin()->second);
    if (!fetch_expiry.empty()) arm_fetch_timer(fetch_expiry.begin()->first);
  }

  // Forgets a worker: its open fetch is answered empty, its tasks (except `keep`) go back to the
  // queue, its actor stops. When the worker was lost, each of its tasks has failed an attempt:
  // a task that crashes every worker that runs it must end dead, not circle forever.
  void drop_worker(const std::string& id, const char* why,
                   const std::unordered_set<task_id>& keep = {}, bool attempts_failed = false) {
    auto it = workers.find(id);
    if (it == workers.end()) return;
    auto& w = it->second;
    answer_fetch(w);
    policy->remove_worker(id);
    const auto held = std::move(w.held);
    w.held.clear();
    for (auto tid : held) {
      auto t = live.find(tid);
      if (t == live.end() || keep.count(tid)) continue;
      t->second.lease_expires_at = 0;
      timers.clear(timer::lease, tid);
      if (attempts_failed) {
        attempt_failed(t, "worker " + id + " was lost while running it", true, false);
      } else {
        make_pending(t->second);
        emit(event_kind::task_requeued, t->second, why);
      }
    }
    worker_by_peer.erase(w.peer.routing_id);
    if (w.actor) self->send_exit(w.actor, caf::exit_reason::user_shutdown);
    workers.erase(it);
    metrics->worker_left(id);
    report_workers();
  }

  // Why a worker's message about one task cannot be applied: the error it is answered with.
  struct refusal {
    error_code code = error_code::internal;
    std::string message;
  };

  // A complete / fail / cancel names a task that is not live: say precisely why.
  refusal not_live(task_id tid) const {
    if (tid != 0 && tid <= last_id)
      return {error_code::invalid_state,
              "task " + std::to_string(tid) + " is not running (it finished or was cancelled)"};
    return {error_code::unknown_task, "no task " + std::to_string(tid)};
  }

  void refuse_not_live(const peer_address& to, std::uint64_t id, task_id tid) {
    auto why = not_live(tid);
    refuse(to, id, why.code, std::move(why.message));
  }

  // The live task `tid` if `w` holds it under lease `attempt`; live.end() and `why` otherwise.
  std::unordered_map<task_id, task>::iterator find_held(const worker_record& w, task_id tid,
                                                        std::uint32_t attempt, refusal& why) {
    auto it = live.find(tid);
    if (it == live.end()) {
      why = not_live(tid);
      return it;
    }
    const auto& t = it->second;
    if (attempt != 0 && attempt != t.attempts) {
      why = {error_code::stale_lease,
             "attempt " + std::to_string(attempt) + " of task " + std::to_string(tid) +
                 " is stale; the current attempt is " + std::to_string(t.attempts)};
      return live.end();
    }
    if (t.status != task_status::running || !w.held.count(tid)) {
      why = {error_code::not_owner,
             "task " + std::to_string(tid) + " is not held by worker " + w.spec.worker};
      return live.end();
    }
    return it;
  }

  // find_held(), answering the refusal to request `id` of `from`.
  std::unordered_map<task_id, task>::iterator held_task(const peer_address& from, std::uint64_t id,
                                                        const worker_record& w, task_id tid,
                                                        std::uint32_t attempt) {
    refusal why;
    auto it = find_held(w, tid, attempt, why);
    if (it == live.end()) refuse(from, id, why.code, std::move(why.message));
    return it;
  }

  void complete_held(worker_record& w, std::unordered_map<task_id, task>::iterator it,
                     std::string&& result) {
    it->second.result = std::move(result);
    ++w.completed;
    metrics->completed(it->second.project);
    recent.completed(wall_now());
    finish(it, task_status::completed, event_kind::task_completed);
  }

  void fail_held(worker_record& w, std::unordered_map<task_id, task>::iterator it,
                 std::string&& error, bool retryable) {
    ++w.failed;
    attempt_failed(it, std::move(error), retryable, false);
  }

  // ---------------------------------------------------------------- worker messages

  void on(const peer_address& from, std::uint64_t id, protocol::register_worker& spec) {
    const std::unordered_set<task_id> reported(spec.running.begin(), spec.running.end());
    // The same connection registering under another name gives up the old name first.
    if (auto* previous = worker_of(from); previous && previous->spec.worker != spec.worker)
      drop_worker(previous->spec.worker, "worker re-registered under another id");
    // A reconnecting worker keeps what the operator and the dispatcher asked of it: an order
    // (drain, stop) and the cancels it has not heard yet.
    std::string order = "none";
    std::vector<task_id> to_cancel;
    const auto old = workers.find(spec.worker);
    const bool reconnect = old != workers.end();
    if (reconnect) {
      order = old->second.order;
      to_cancel = std::move(old->second.to_cancel);
    }
    drop_worker(spec.worker, "worker re-registered without it", reported);

    policy->add_worker({spec.worker, spec.types, spec.tags, spec.capacity, spec.pool},
                       steady_now());
    auto& w = workers[spec.worker];
    // Adopt what the worker still holds: tasks it held before this registration, and tasks found
    // running under its name after a restart (orphans).
    w.order = std::move(order);
    w.to_cancel = std::move(to_cancel);
    for (auto tid : spec.running) {
      auto it = live.find(tid);
      if (it == live.end() || it->second.status != task_status::running ||
          it->second.worker != spec.worker) {
        // Taken back meanwhile (lease ran out, cancelled, finished elsewhere): the worker must
        // stop it and free the slot rather than run it for nobody (once, if already told).
        if (std::find(w.to_cancel.begin(), w.to_cancel.end(), tid) == w.to_cancel.end())
          w.to_cancel.push_back(tid);
        continue;
      }
      orphans.erase(tid);
      policy->adopt(queued_view(it->second), spec.worker);
      w.held.insert(tid);
      if (it->second.lease_expires_at)
        timers.set(timer::lease, tid, it->second.lease_expires_at);
    }
    w.peer = from;
    w.last_heartbeat = wall_now();
    w.alive = std::make_shared<heartbeat_clock>();
    w.actor = spawn_worker(self, spec.worker, w.alive, settings.liveness);
    w.spec = std::move(spec);
    worker_by_peer[from.routing_id] = w.spec.worker;
    spdlog::info("worker {} {} ({} pool, capacity {}, {} tasks held)", w.spec.worker,
                 reconnect ? "re-registered" : "registered", to_string(w.spec.pool),
                 w.spec.capacity, w.held.size());
    emit_worker(event_kind::worker_joined, w.spec.worker, std::string(to_string(w.spec.pool)));
    report_running(w);
    report_workers();
    const auto hb = static_cast<std::uint32_t>(settings.liveness.heartbeat.count());
    reply(from, id, protocol::registered{hb, settings.liveness.liveness});
    schedule_dispatch();
  }

  void on(const peer_address& from, std::uint64_t id, protocol::fetch& f) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    answer_fetch(*w);  // one open fetch per worker: the newer one wins
    // A draining or stopping worker gets no new work; its fetch is answered empty at once.
    const bool serve = w->order == "none";
    if (serve) {
      policy->offer(w->spec.worker, f.max);
      schedule_dispatch();
    }
    // A fetch that waits 0 ms is answered right after the dispatch pass queued above: the timer
    // message queues behind it.
    const auto expires = steady_now() + (serve ? f.wait_ms : 0);
    w->fetch = open_fetch{id, expires};
    fetch_expiry.emplace(expires, w);
    arm_fetch_timer(expires);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::complete& c) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    auto it = held_task(from, id, *w, c.task, c.attempt);
    if (it == live.end()) return;
    complete_held(*w, it, std::move(c.result));
    acknowledge_when_stored(from, id);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::fail& f) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    auto it = held_task(from, id, *w, f.task, f.attempt);
    if (it == live.end()) return;
    fail_held(*w, it, std::move(f.error), f.retryable);
    acknowledge_when_stored(from, id);
  }

  // Each result as its own complete or fail would be; one reply once the applied ones are
  // stored, listing those that were refused.
  void on(const peer_address& from, std::uint64_t id, protocol::report& r) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    protocol::reported answer;
    refusal why;
    for (auto& res : r.results) {
      auto it = find_held(*w, res.task, res.attempt, why);
      if (it == live.end())
        answer.refused.push_back({res.task, why.code, std::move(why.message)});
      else if (res.failed)
        fail_held(*w, it, std::move(res.error), res.retryable);
      else
        complete_held(*w, it, std::move(res.result));
    }
    auto refused = std::make_shared<protocol::reported>(std::move(answer));
    when_stored([=] { reply(from, id, std::move(*refused)); },
                [=](const std::string& why) { refuse(from, id, error_code::storage, why); });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::extend& e) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    auto it = held_task(from, id, *w, e.task, e.attempt);
    if (it == live.end()) return;
    auto& t = it->second;
    t.lease_expires_at = wall_now() + (e.extend_ms ? e.extend_ms : t.timeout_ms);
    timers.set(timer::lease, t.id, t.lease_expires_at);
    // The new lease is kept in memory at once and stored in the background: after a crash the
    // worker re-registers and the stored, shorter lease is the worst case.
    writes.put_task(t, t.status);
    reply(from, id, protocol::ok{});
  }

  void on(const peer_address& from, std::uint64_t id, protocol::heartbeat&) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    w->alive->beat();
    w->last_heartbeat = wall_now();
    protocol::heartbeat_reply r;
    r.order = w->order;
    r.cancel = std::move(w->to_cancel);
    w->to_cancel.clear();
    // Warn about leases that end within two heartbeats or a quarter of their timeout, whichever
    // is longer: a worker that wants to extend then has at least one heartbeat to do it.
    const auto now = wall_now();
    const auto hb = settings.liveness.heartbeat.count();
    for (auto tid : w->held) {
      auto t = live.find(tid);
      if (t == live.end() || !t->second.lease_expires_at) continue;
      const millis window = std::max<millis>(2 * hb, t->second.timeout_ms / 4);
      if (t->second.lease_expires_at - now <= window) r.expiring.push_back(tid);
    }
    reply(from, id, std::move(r));
  }

  void on(const peer_address& from, std::uint64_t id, protocol::goodbye&) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    const auto name = w->spec.worker;
    drop_worker(name, "worker said goodbye");
    spdlog::info("worker {} left", name);
    emit_worker(event_kind::worker_left, name);
    acknowledge_when_stored(from, id);
  }

  void on_lost(const std::string& worker, const caf::actor& reporter) {
    auto it = workers.find(worker);
    // A worker actor replaced by a newer registration may still report; only the current counts.
    if (it == workers.end() || it->second.actor != reporter) return;
    it->second.actor = nullptr;  // it has stopped by itself
    metrics->worker_lost();
    drop_worker(worker, "worker lost", {}, true);
    spdlog::warn("worker {} lost: no heartbeat for {} ms", worker,
                 settings.liveness.heartbeat.count() * settings.liveness.liveness);
    emit_worker(event_kind::worker_lost, worker);
  }

  // ---------------------------------------------------------------- producer messages

  // The task an idempotency key already names, if it was used within the window and that task
  // still exists (a removed or purged task frees its key: answering with its id would
  // acknowledge work that will never run).
  std::optional<task_id> known_key(const std::string& project, const std::string& key,
                                   millis now) {
    if (auto it = keys_in_flight.find(idempotency_slot(project, key)); it != keys_in_flight.end())
      return it->second;
    std::optional<task_id> found;
    const auto s = store->find_idempotent(project, key, now - settings.idempotency_window.count(),
                                          found);
    if (!s.is_ok()) spdlog::error("idempotency lookup failed: {}", s.to_string());
    if (!found || is_live(*found)) return found;
    task stored;
    if (!store->get(*found, stored).is_ok()) return std::nullopt;
    return found;
  }

  void on(const peer_address& from, std::uint64_t id, protocol::submit& s) {
    if (store_failure) {
      refuse(from, id, error_code::storage,
             "the store is failing (" + *store_failure + "); no new tasks are accepted");
      return;
    }
    auto tasks = std::make_shared<std::vector<task>>();
    tasks->reserve(s.tasks.size());
    auto ids = std::make_shared<std::vector<task_id>>();
    ids->reserve(s.tasks.size());
    auto keys = std::make_shared<std::vector<std::string>>();
    const auto now = wall_now();
    last_created_at = std::max(last_created_at, now);
    for (auto& spec : s.tasks) {
      if (!spec.idempotency_key.empty()) {
        if (auto known = known_key(spec.project, spec.idempotency_key, now)) {
          ids->push_back(*known);  // a repeat: answer with the first task, create nothing
          continue;
        }
      }
      task t;
      t.id = ++last_id;
      t.project = std::move(spec.project);
      t.type = std::move(spec.type);
      t.priority = spec.priority;
      t.payload = std::move(spec.payload);
      t.tags = std::move(spec.tags);
      t.max_attempts = spec.max_attempts;
      t.timeout_ms = spec.timeout_ms;
      t.deadline = spec.deadline;
      t.idempotency_key = std::move(spec.idempotency_key);
      t.title = std::move(spec.title);
      t.description = std::move(spec.description);
      t.created_at = last_created_at;
      t.run_at = spec.run_at ? spec.run_at : spec.delay_ms ? now + spec.delay_ms : 0;
      t.status = t.run_at > now ? task_status::scheduled : task_status::pending;
      if (!t.idempotency_key.empty()) {
        auto slot = idempotency_slot(t.project, t.idempotency_key);
        keys_in_flight.emplace(slot, t.id);
        keys->push_back(std::move(slot));
        writes.put_idempotency(t.project, t.idempotency_key, t.id, now);
      }
      writes.put_task(t, std::nullopt);
      ids->push_back(t.id);
      tasks->push_back(std::move(t));
    }
    writes.set_last_id(last_id);
    // Tasks enter the queue only once stored: a worker can never run a task the store would
    // forget in a crash, and the producer's acknowledgement means "durable".
    queue_waits_for_writes = true;
    when_stored(
        [=] {
          for (const auto& slot : *keys) keys_in_flight.erase(slot);
          for (auto& t : *tasks) {
            project(t.project);  // the project exists from its first task on
            metrics->submitted(t.project);
            ++deltas[t.project][static_cast<std::size_t>(t.status)];
            emit(event_kind::task_submitted, t);
            if (t.status == task_status::scheduled) {
              timers.set(timer::run_at, t.id, t.run_at);
              emit(event_kind::task_scheduled, t);
            } else {
              enqueue(t);
            }
            if (t.deadline) timers.set(timer::deadline, t.id, t.deadline);
            keep(std::move(t));
          }
          reply(from, id, protocol::submitted{*ids});
          schedule_dispatch();
        },
        [=](const std::string& why) {
          for (const auto& slot : *keys) keys_in_flight.erase(slot);
          refuse(from, id, error_code::storage, "tasks not stored: " + why);
        });
  }

  // Answers with a task that is not live (finished), read from the store.
  template <class Found>
  void with_stored_task(const peer_address& from, std::uint64_t id, task_id tid, Found found) {
    self->request(persistence, caf::infinite, find_atom::value, tid)
        .then(
            [=](task& t) mutable {
              found(t);
              flush();
            },
            [=](caf::error&) {
              refuse(from, id, error_code::unknown_task, "no task " + std::to_string(tid));
            });
  }

  // A producer limited to some projects is told a task of another project does not exist, so
  // ids cannot be used to probe other teams' work.
  void refuse_unseen(const peer_address& to, std::uint64_t id, task_id tid) {
    refuse(to, id, error_code::unknown_task, "no task " + std::to_string(tid));
  }

  void on(const peer_address& from, std::uint64_t id, protocol::get_task& g) {
    if (auto it = live.find(g.task); it != live.end()) {
      if (!from.may_see(it->second.project)) return refuse_unseen(from, id, g.task);
      reply(from, id, protocol::task_info{it->second});
      return;
    }
    with_stored_task(from, id, g.task, [=](task& t) {
      if (!from.may_see(t.project)) return refuse_unseen(from, id, t.id);
      reply(from, id, protocol::task_info{std::move(t)});
    });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::cancel& c) {
    auto it = find_live(c.task);
    if (it == live.end()) {
      if (from.who && !from.who->all_projects()) return refuse_unseen(from, id, c.task);
      refuse_not_live(from, id, c.task);
      return;
    }
    if (!from.may_see(it->second.project)) return refuse_unseen(from, id, c.task);
    metrics->cancelled(it->second.project);
    finish(it, task_status::cancelled, event_kind::task_cancelled, {}, true);
    acknowledge_when_stored(from, id);
  }

  // ---------------------------------------------------------------- admin messages

  void on(const peer_address& from, std::uint64_t id, protocol::list_tasks& q) {
    self->request(reader, caf::infinite, list_atom::value, std::move(q))
        .then([=](protocol::task_list& page) { reply(from, id, std::move(page)); },
              [=](caf::error& e) {
                refuse(from, id, error_code::storage, self->system().render(e));
              });
  }

  // A dead, failed or cancelled task goes back to the queue with a fresh set of attempts.
  void on(const peer_address& from, std::uint64_t id, protocol::retry_task& r) {
    if (is_live(r.task)) {
      refuse(from, id, error_code::invalid_state,
             "task " + std::to_string(r.task) + " has not finished; only finished tasks retry");
      return;
    }
    with_stored_task(from, id, r.task, [=](task& stored) {
      if (stored.status == task_status::completed || is_live(stored.id)) {
        refuse(from, id, error_code::invalid_state,
               "task " + std::to_string(stored.id) + " is " +
                   std::string(to_string(stored.status)) +
                   "; only dead, failed or cancelled tasks can be retried");
        return;
      }
      auto t = std::make_shared<task>(std::move(stored));
      const auto finished_at = t->finished_at;  // the store finds its index entries by it
      t->failures = 0;
      t->finished_at = 0;
      t->overdue = false;
      t->run_at = 0;
      const auto from_status = t->status;
      t->status = task_status::pending;
      writes.put_task(*t, from_status, finished_at);
      when_stored(
          [=] {
            auto& d = deltas[t->project];
            --d[static_cast<std::size_t>(from_status)];
            ++d[static_cast<std::size_t>(task_status::pending)];
            enqueue(*t);
            if (t->deadline) timers.set(timer::deadline, t->id, t->deadline);
            emit(event_kind::task_requeued, *t, "retried by an operator");
            live.emplace(t->id, std::move(*t));
            reply(from, id, protocol::ok{});
            schedule_dispatch();
          },
          [=](const std::string& why) { refuse(from, id, error_code::storage, why); });
    });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::remove_task& r) {
    if (is_live(r.task)) {
      refuse(from, id, error_code::invalid_state,
             "task " + std::to_string(r.task) + " has not finished; cancel it first");
      return;
    }
    with_stored_task(from, id, r.task, [=](task& t) {
      writes.remove_task(t);
      const auto project_name = t.project;
      const auto status_index = static_cast<std::size_t>(t.status);
      when_stored(
          [=] {
            --deltas[project_name][status_index];
            reply(from, id, protocol::ok{});
          },
          [=](const std::string& why) { refuse(from, id, error_code::storage, why); });
    });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::worker_order& o) {
    auto it = workers.find(o.worker);
    if (it == workers.end()) {
      refuse(from, id, error_code::unknown_worker, "no connected worker " + o.worker);
      return;
    }
    auto& w = it->second;
    w.order = o.order == "resume" ? "none" : o.order;
    if (w.order != "none") answer_fetch(w);  // no new work from now on
    spdlog::info("worker {}: operator order {}", o.worker, o.order);
    emit_worker(event_kind::worker_ordered, o.worker, o.order);
    report_workers();
    reply(from, id, protocol::ok{});
    schedule_dispatch();
  }

  std::vector<protocol::worker_info> describe_workers() const {
    std::vector<protocol::worker_info> result;
    for (const auto& [name, w] : workers) {
      protocol::worker_info info;
      info.id = name;
      info.pool = w.spec.pool;
      info.capacity = w.spec.capacity;
      info.completed = w.completed;
      info.failed = w.failed;
      info.types = w.spec.types;
      info.tags = w.spec.tags;
      info.running = static_cast<std::uint32_t>(w.held.size());
      info.last_heartbeat = w.last_heartbeat;
      const auto [pool, state] = shown_state(name, w);
      info.pool = pool;
      info.state = shown_states[state];
      result.push_back(std::move(info));
    }
    return result;
  }

  void on(const peer_address& from, std::uint64_t id, protocol::list_events& q) {
    send_events();  // ahead of the query: it sees every event that happened before it
    self->request(notifier, std::chrono::seconds(10), list_atom::value, std::move(q))
        .then([=](protocol::event_list& page) { reply(from, id, std::move(page)); },
              [=](caf::error& e) {
                refuse(from, id, error_code::internal,
                       "events unavailable: " + self->system().render(e));
              });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::set_pool& p) {
    auto it = workers.find(p.worker);
    if (it == workers.end()) {
      refuse(from, id, error_code::unknown_worker, "no connected worker " + p.worker);
      return;
    }
    it->second.spec.pool = p.pool;
    policy->set_pool(p.worker, p.pool, steady_now());
    spdlog::info("worker {} moved to the {} pool", p.worker, to_string(p.pool));
    emit_worker(event_kind::worker_ordered, p.worker, "pool " + std::string(to_string(p.pool)));
    report_running(it->second);
    report_workers();
    reply(from, id, protocol::ok{});
    schedule_dispatch();
  }

  void on(const peer_address& from, std::uint64_t id, protocol::list_workers&) {
    reply(from, id, protocol::worker_list{describe_workers()});
  }

  // Asks every project actor for its description, then calls done(projects) once all answered.
  template <class Done>
  void gather_projects(Done done) {
    struct gathering {
      std::vector<protocol::project_info> projects;
      std::size_t missing = 0;
    };
    auto g = std::make_shared<gathering>();
    g->missing = projects.size();
    if (g->missing == 0) {
      done(g->projects);
      return;
    }
    auto one_answered = [=]() mutable {
      if (--g->missing != 0) return;
      std::sort(g->projects.begin(), g->projects.end(),
                [](const auto& a, const auto& b) { return a.name < b.name; });
      done(g->projects);
    };
    for (const auto& [name, actor] : projects) {
      self->request(actor, std::chrono::seconds(5), info_atom::value)
          .then(
              [=](protocol::project_info& info) mutable {
                g->projects.push_back(std::move(info));
                one_answered();
              },
              [=](caf::error&) mutable { one_answered(); });
    }
  }

  void on(const peer_address& from, std::uint64_t id, protocol::list_projects&) {
    gather_projects([=](std::vector<protocol::project_info>& ps) {
      reply(from, id, protocol::project_list{std::move(ps)});
    });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::get_stats&) {
    gather_projects([=](std::vector<protocol::project_info>& ps) {
      protocol::stats st;
      for (int i = 0; i < task_status_count; ++i)
        st.tasks[std::string(to_string(static_cast<task_status>(i)))] = 0;
      for (const auto& p : ps)
        for (const auto& [status, n] : p.counts) st.tasks[status] += n;
      st.workers = describe_workers();
      st.projects = std::move(ps);
      st.reserve_engagements = policy->engagements();
      st.reserve_releases = policy->releases();
      const auto now = wall_now();
      st.completed_last_minute = recent.completed_within(now, 60);
      st.completed_last_hour = recent.completed_within(now, 3600);
      st.wait_p50_ms = recent.wait_percentile(0.50);
      st.wait_p90_ms = recent.wait_percentile(0.90);
      st.wait_p99_ms = recent.wait_percentile(0.99);
      reply(from, id, std::move(st));
    });
  }

  // The project actor stores new settings first; the policy applies them once they are durable.
  void change_settings(const peer_address& from, std::uint64_t id, const std::string& name,
                       project_settings wanted) {
    const auto before = policy->settings(name);
    self->request(project(name), caf::infinite, settings_atom::value, wanted)
        .then(
            [=](project_settings stored) {
              policy->configure_project(name, stored);
              spdlog::info("project {}: paused={} max_inflight={} weight={}", name, stored.paused,
                           stored.max_inflight, stored.weight);
              if (stored.paused != before.paused)
                events.push_back({stored.paused ? event_kind::project_paused
                                                : event_kind::project_resumed,
                                  wall_now(), 0, name, {}, {}});
              reply(from, id, protocol::ok{});
              schedule_dispatch();
              flush();
            },
            [=](caf::error& e) {
              refuse(from, id, error_code::storage, self->system().render(e));
            });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::pause_project& p) {
    auto wanted = policy->settings(p.project);
    wanted.paused = true;
    change_settings(from, id, p.project, wanted);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::resume_project& p) {
    auto wanted = policy->settings(p.project);
    wanted.paused = false;
    change_settings(from, id, p.project, wanted);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::configure_project& c) {
    auto wanted = policy->settings(c.project);
    if (c.max_inflight) wanted.max_inflight = *c.max_inflight;
    if (c.weight) wanted.weight = *c.weight;
    change_settings(from, id, c.project, wanted);
  }

  // ---------------------------------------------------------------- the policy at work

  void run_dispatch() {
    dispatch_wanted = false;
    assignments.clear();
    policy->dispatch(steady_now(), assignments);
    if (assignments.empty()) return;
    unpark_assigned();
    const auto now = wall_now();
    std::vector<worker_record*> served;
    for (const auto& a : assignments) {
      auto found = find_live(a.task);
      if (found == live.end()) {
        // Unreadable: the store is failing (find_live logged it). The slot goes back; the task
        // stays pending in the store and is queued again after a restart.
        store_failed("queued task " + std::to_string(a.task) + " could not be read back");
        policy->finish(a.task, steady_now());
        continue;
      }
      auto& t = found->second;
      auto& w = workers.find(a.worker)->second;
      t.worker = w.spec.worker;
      t.assigned_at = now;
      t.lease_expires_at = now + t.timeout_ms;
      ++t.attempts;
      const auto wait = now - std::max(t.created_at, t.run_at);
      metrics->queue_wait(static_cast<double>(wait) / 1000.0);
      metrics->queued(t.project, t.priority, -1);
      recent.waited(wait);
      move(t, task_status::running);
      timers.set(timer::lease, t.id, t.lease_expires_at);
      w.held.insert(t.id);
      emit(event_kind::task_assigned, t);
      if (w.handed.empty()) served.push_back(&w);
      w.handed.push_back(
          {t.id, t.project, t.type, t.priority, t.payload, t.attempts, t.timeout_ms});
    }
    // The jobs leave before the write lands: if the dispatcher dies in between, the store still
    // says pending and the task runs again, which at-least-once delivery allows.
    for (auto* w : served) {
      report_running(*w);
      answer_fetch(*w);
    }
    dispatched_since_read_ahead += assignments.size();
    read_ahead();
  }

  void run_tick() {
    reserve_events.clear();
    policy->tick(steady_now(), reserve_events);
    for (const auto& e : reserve_events) {
      const bool engaged = e.what == policy::reserve_event::kind::engaged;
      spdlog::info("reserve worker {} {}", e.worker,
                   engaged ? "engaged: active workers are saturated and tasks wait"
                           : "released to standby after its cooldown");
      emit_worker(engaged ? event_kind::reserve_engaged : event_kind::reserve_released, e.worker);
      if (engaged) {
        metrics->reserve_engaged();
        schedule_dispatch();
      } else {
        metrics->reserve_released();
      }
    }
    if (!reserve_events.empty()) report_workers();
    metrics->mailbox_depth(self->mailbox().size());
    metrics->parked(parked.size());
    run_timers();
  }

  // Acts on every timer that came due: scheduled tasks become pending, expired leases count as
  // failed attempts, passed deadlines mark tasks overdue (once; the flag is stored).
  void run_timers() {
    const auto now = wall_now();
    for (auto tid : timers.take_due(timer::run_at, now)) {
      auto it = live.find(tid);
      if (it != live.end() && it->second.status == task_status::scheduled)
        make_pending(it->second);
    }
    for (auto tid : timers.take_due(timer::lease, now)) {
      auto it = live.find(tid);
      if (it == live.end() || it->second.status != task_status::running) continue;
      const auto& t = it->second;
      auto why = "lease of " + std::to_string(t.timeout_ms) + " ms expired on worker " +
                 t.worker + " (attempt " + std::to_string(t.attempts) + ")";
      emit(event_kind::task_expired, t, why);
      spdlog::warn("task {}: {}", tid, why);
      if (auto w = workers.find(t.worker); w != workers.end()) ++w->second.failed;
      attempt_failed(it, std::move(why), true, true);
    }
    for (auto tid : timers.take_due(timer::deadline, now)) {
      auto it = find_live(tid);
      if (it == live.end() || it->second.overdue) continue;
      auto& t = it->second;
      t.overdue = true;
      writes.put_task(t, t.status);
      emit(event_kind::task_overdue, t, "deadline passed before completion");
    }
  }

  void end_recovery_grace() {
    if (orphans.empty()) return;
    for (const auto& [tid, worker] : orphans) {
      auto it = live.find(tid);
      if (it == live.end()) continue;
      it->second.lease_expires_at = 0;
      make_pending(it->second);
      emit(event_kind::task_requeued, it->second, "its worker did not report it after a restart");
    }
    spdlog::info("{} tasks running before the restart went back to the queue", orphans.size());
    orphans.clear();
  }

  // Retention, in rounds: the store reader finds what has expired (many candidates a search,
  // since a search may sort the index memtable) and the persistence actor deletes them a slice at
  // a time with a pause between slices, so that the writes queued behind a slice wait little. A
  // round ends with the search that reaches the end; the next starts purge_interval later.
  void run_purge() {
    if (!retention.found.empty()) return purge_slice();
    const auto now = wall_now();
    retention.finished_before = now - settings.retention.count();
    retention.keys_before = now - settings.idempotency_window.count();
    self->request(reader, caf::infinite, purge_atom::value, retention.finished_before,
                  retention.keys_before, retention.cursor)
        .then(
            [=](persistence::expired_entries& found, persistence::purge_cursor& cursor) {
              retention.found = std::move(found);
              retention.cursor = std::move(cursor);
              if (retention.found.empty())
                next_purge();
              else
                purge_slice();
            },
            [=](caf::error& e) { purge_failed(e); });
  }

  void purge_slice() {
    ++store_requests;
    self->request(persistence, caf::infinite, purge_atom::value,
                  retention.found.take(purge_slice_size), retention.finished_before,
                  retention.keys_before)
        .then(
            [=](const project_deltas& removed) {
              --store_requests;
              for (const auto& [name, d] : removed) {
                auto& mine = deltas[name];
                for (std::size_t i = 0; i < d.size(); ++i) mine[i] += d[i];
              }
              flush();
              next_purge();
            },
            [=](caf::error& e) {
              --store_requests;
              purge_failed(e);
            });
  }

  void next_purge() {
    const bool more = !retention.found.empty() || retention.found.more;
    self->delayed_send(self, more ? purge_pause : purge_interval, purge_atom::value);
  }

  void purge_failed(const caf::error& e) {
    spdlog::error("retention purge failed: {}", self->system().render(e));
    retention = retention_round{};
    self->delayed_send(self, purge_interval, purge_atom::value);
  }

  struct retention_round {
    persistence::purge_cursor cursor;
    persistence::expired_entries found;  // candidates not yet handed to the persistence actor
    millis finished_before = 0, keys_before = 0;  // the cutoffs they were found by
  } retention;
  static constexpr std::size_t purge_slice_size = 500;  // ~1 ms of the writer's time
  static constexpr std::chrono::milliseconds purge_pause{10};
  static constexpr std::chrono::minutes purge_interval{10};

  void recover(persistence::recovered_state& r) {
    last_id = r.last_id;
    last_created_at = r.last_created_at;
    recovered_counts = std::move(r.counts);
    for (const auto& [name, s] : r.projects) policy->configure_project(name, s);
    for (const auto& [name, s] : r.projects) project(name);
    for (const auto& [name, c] : recovered_counts) project(name);
    std::size_t pending = 0;
    std::size_t scheduled = 0;
    for (auto& t : r.live) {
      last_id = std::max(last_id, t.id);
      if (t.status == task_status::running) {
        orphans.emplace(t.id, t.worker);
      } else if (t.status == task_status::scheduled) {
        timers.set(timer::run_at, t.id, t.run_at);
        ++scheduled;
      } else {
        enqueue(t);
        ++pending;
      }
      if (t.deadline && !t.overdue) timers.set(timer::deadline, t.id, t.deadline);
      keep(std::move(t));
    }
    r.live = {};
    parked.reserve(r.queued.size());
    for (auto& q : r.queued) {
      last_id = std::max(last_id, q.id);
      if (q.deadline && !q.overdue) timers.set(timer::deadline, q.id, q.deadline);
      metrics->queued(q.project, q.priority, +1);
      policy->enqueue(
          {q.id, std::move(q.project), std::move(q.type), q.priority, std::move(q.tags)});
      parked.insert(q.id);
      ++pending;
    }
    r.queued = {};
    if (pending + scheduled + orphans.size() > 0)
      spdlog::info(
          "recovered {} pending ({} parked), {} scheduled and {} running tasks (last id {})",
          pending, parked.size(), scheduled, orphans.size(), last_id);
    if (!orphans.empty()) self->delayed_send(self, settings.recovery_grace, grace_end_atom::value);
  }
};

std::chrono::milliseconds tick_interval(const dispatcher_settings& s) {
  // Often enough to honour scale_interval closely, rarely enough to cost nothing when idle.
  return std::clamp(s.scale_interval / 4, std::chrono::milliseconds(10),
                    std::chrono::milliseconds(250));
}

caf::behavior dispatcher(dispatcher_actor* self, dispatcher_settings settings,
                         shared_recovery recovered, shared_store store, caf::actor persistence,
                         caf::actor notifier, std::shared_ptr<outbox> out,
                         send_replies_now_fn send_replies_now,
                         std::shared_ptr<metrics::dispatcher_metrics> metrics) {
  auto& st = self->state;
  st.self = self;
  st.settings = settings;
  st.store = std::move(store);
  st.persistence = std::move(persistence);
  st.reader = spawn_store_reader(self, st.store);
  st.notifier = std::move(notifier);
  st.out = std::move(out);
  st.send_replies_now = std::move(send_replies_now);
  st.metrics = std::move(metrics);
  st.policy = std::make_unique<policy::scheduler>(
      policy::scheduler_config{settings.scale_interval.count(), settings.reserve_cooldown.count()});
  st.recover(*recovered);
  recovered.reset();
  self->send(self, tick_atom::value);
  self->delayed_send(self, std::chrono::seconds(5), purge_atom::value);
  return {
      [=](inbound_atom, std::vector<inbound>& batch) {
        auto& s = self->state;
        for (auto& in : batch)
          std::visit([&](auto& body) { s.on(in.from, in.request.id, body); }, in.request.body);
        s.flush();
      },
      [=](fetch_end_atom) {
        self->state.on_fetch_timer();
        self->state.flush();
      },
      [=](lost_atom, const std::string& worker, const caf::actor& reporter) {
        self->state.on_lost(worker, reporter);
        self->state.flush();
      },
      [=](tick_atom) {
        self->state.run_tick();
        self->state.flush();
        self->delayed_send(self, tick_interval(self->state.settings), tick_atom::value);
      },
      [=](grace_end_atom) {
        self->state.end_recovery_grace();
        self->state.flush();
      },
      [=](purge_atom) { self->state.run_purge(); },
      [=](events_due_atom) {
        self->state.events_due_armed = false;
        self->state.send_events();
      },
  };
}

}  // namespace

caf::actor spawn_dispatcher(caf::actor_system& system, dispatcher_settings settings,
                            shared_recovery recovered, shared_store store,
                            caf::actor persistence, caf::actor notifier,
                            std::shared_ptr<outbox> out, send_replies_now_fn send_replies_now,
                            std::shared_ptr<metrics::dispatcher_metrics> metrics) {
  return system.spawn(dispatcher, settings, std::move(recovered), std::move(store),
                      std::move(persistence), std::move(notifier), std::move(out),
                      std::move(send_replies_now), std::move(metrics));
}

}  // namespace dispatch::actors
