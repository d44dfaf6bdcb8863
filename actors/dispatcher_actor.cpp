#include "actors/dispatcher_actor.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "actors/project_actor.hpp"
#include "dispatcher/outbox.hpp"
#include "dispatcher/policy/scheduler.hpp"

namespace dispatch::actors {
namespace {

millis wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

policy::clock_ms steady_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

policy::queued_task queued_view(const task& t) {
  return {t.id, t.project, t.type, t.priority, t.tags};
}

struct open_fetch {
  std::uint64_t request_id = 0;
  std::uint64_t sequence = 0;  // tells a stale fetch_end timer from the current fetch
};

struct worker_record {
  protocol::register_worker spec;
  peer_address peer;
  caf::actor actor;
  std::optional<open_fetch> fetch;
  std::vector<protocol::job> handed;  // jobs assigned in the current dispatch round
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
};

struct dispatcher_state;
using dispatcher_actor = caf::stateful_actor<dispatcher_state>;

struct dispatcher_state {
  static inline const char* name = "dispatcher";

  // Worker and project actors are not linked (a worker actor stopped on purpose must not take the
  // dispatcher with it), so they are stopped here, however the dispatcher ends.
  ~dispatcher_state() {
    for (auto& [id, w] : workers)
      if (w.actor) caf::anon_send_exit(w.actor, caf::exit_reason::user_shutdown);
    for (auto& [name, p] : projects) caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
  }

  dispatcher_actor* self = nullptr;
  dispatcher_settings settings;
  caf::actor persistence;
  caf::actor notifier;
  std::shared_ptr<outbox> out;

  std::unique_ptr<policy::scheduler> policy;
  std::unordered_map<task_id, task> live;  // pending and running
  // Tasks found running after a restart, waiting for their worker during the recovery grace.
  std::unordered_map<task_id, std::string> orphans;
  task_id last_id = 0;
  std::map<std::string, worker_record, std::less<>> workers;
  std::unordered_map<std::string, std::string> worker_by_peer;  // work-endpoint routing id -> id
  std::map<std::string, caf::actor, std::less<>> projects;
  std::map<std::string, persistence::status_counts> recovered_counts;
  std::uint64_t fetch_sequence = 0;
  bool dispatch_queued = false;

  // Produced while handling one message, sent once at its end (see flush()).
  event_list events;
  std::map<std::string, status_deltas, std::less<>> deltas;
  std::vector<policy::assignment> assignments;
  std::vector<policy::reserve_event> reserve_events;

  // ---------------------------------------------------------------- helpers

  void reply(const peer_address& to, std::uint64_t id, protocol::reply_body body) {
    out->send(to, id, std::move(body));
  }

  void refuse(const peer_address& to, std::uint64_t id, protocol::error_code code,
              std::string message) {
    reply(to, id, protocol::error{code, std::move(message)});
  }

  void emit(event_kind kind, const task& t, std::string detail = {}) {
    events.push_back({kind, wall_now(), t.id, t.project, t.worker, std::move(detail)});
  }

  void emit_worker(event_kind kind, std::string worker, std::string detail = {}) {
    events.push_back({kind, wall_now(), 0, {}, std::move(worker), std::move(detail)});
  }

  // Records a status change for the project's counts.
  void moved(const task& t, std::optional<task_status> from) {
    auto& d = deltas[t.project];
    if (from) --d[static_cast<std::size_t>(*from)];
    ++d[static_cast<std::size_t>(t.status)];
  }

  caf::actor& project(const std::string& name) {
    auto it = projects.find(name);
    if (it != projects.end()) return it->second;
    persistence::status_counts counts{};
    if (auto c = recovered_counts.find(name); c != recovered_counts.end()) counts = c->second;
    auto actor = spawn_project(self, name, policy->settings(name), counts, persistence);
    return projects.emplace(name, std::move(actor)).first->second;
  }

  // Sends the events and count changes gathered while handling one message: one message per
  // touched project and one to the notifier, however many tasks moved.
  void flush() {
    for (auto& [name, d] : deltas) self->send(project(name), moved_atom::value, d);
    deltas.clear();
    if (!events.empty()) {
      self->send(notifier, events_atom::value, std::move(events));
      events.clear();
    }
  }

  // Runs the policy once the current mailbox burst is handled, so that many submits or fetches
  // share one dispatch pass.
  void schedule_dispatch() {
    if (dispatch_queued) return;
    dispatch_queued = true;
    self->send(self, dispatch_atom::value);
  }

  // Writes a batch; the continuation runs once it is stored, the failure handler if it is not.
  template <class OnStored, class OnFailed>
  void store(persistence::write_batch batch, OnStored on_stored, OnFailed on_failed) {
    self->request(persistence, caf::infinite, write_atom::value, std::move(batch))
        .then([=](caf::ok_atom) mutable { on_stored(); },
              [=](caf::error& e) mutable { on_failed(self->system().render(e)); });
  }

  // Writes a batch nobody waits for; a failure is logged (the task is then re-run after a
  // restart, which at-least-once delivery allows).
  void store_in_background(persistence::write_batch batch) {
    if (batch.empty()) return;
    store(std::move(batch), [] {},
          [](const std::string& why) { spdlog::error("background store write failed: {}", why); });
  }

  void acknowledge_when_stored(persistence::write_batch batch, peer_address to, std::uint64_t id) {
    store(
        std::move(batch), [=] { reply(to, id, protocol::ok{}); },
        [=](const std::string& why) { refuse(to, id, protocol::error_code::storage, why); });
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
      refuse(from, id, protocol::error_code::not_registered,
             "this connection has not registered as a worker (register first)");
    return w;
  }

  // Puts a task that was running back into the queue (worker left, lost or did not report it).
  void requeue(task& t, persistence::write_batch& batch, event_kind kind, std::string why) {
    const auto from = t.status;
    t.status = task_status::pending;
    policy->enqueue(queued_view(t));
    batch.put_task(t, from);
    moved(t, from);
    emit(kind, t, std::move(why));
  }

  void answer_fetch(worker_record& w) {
    if (!w.fetch) return;
    reply(w.peer, w.fetch->request_id, protocol::jobs{std::move(w.handed)});
    w.handed.clear();
    w.fetch.reset();
    policy->withdraw(w.spec.worker);
  }

  // Forgets a worker: its open fetch is answered empty, its tasks (except `keep`) go back to the
  // queue, its actor stops.
  void drop_worker(const std::string& id, persistence::write_batch& batch, const char* why,
                   const std::unordered_set<task_id>& keep = {}) {
    auto it = workers.find(id);
    if (it == workers.end()) return;
    auto& w = it->second;
    answer_fetch(w);
    for (auto tid : policy->remove_worker(id)) {
      auto t = live.find(tid);
      if (t == live.end() || keep.count(tid)) continue;
      requeue(t->second, batch, event_kind::task_requeued, why);
    }
    worker_by_peer.erase(w.peer.routing_id);
    if (w.actor) self->send_exit(w.actor, caf::exit_reason::user_shutdown);
    workers.erase(it);
  }

  // Finishes a running or pending task with a final status and removes it from the live table.
  task finish(std::unordered_map<task_id, task>::iterator it, task_status final_status,
              persistence::write_batch& batch) {
    auto& t = it->second;
    const auto from = t.status;
    if (from == task_status::running) {
      if (orphans.erase(t.id) == 0) policy->finish(t.id, steady_now());
    } else {
      policy->cancel(queued_view(t));
    }
    t.status = final_status;
    t.finished_at = wall_now();
    batch.put_task(t, from);
    moved(t, from);
    task done = std::move(t);
    live.erase(it);
    schedule_dispatch();  // a slot or a project cap may have opened
    return done;
  }

  // A complete / fail / cancel names a task that is not live: say precisely why.
  void refuse_not_live(const peer_address& to, std::uint64_t id, task_id tid) {
    if (tid != 0 && tid <= last_id)
      refuse(to, id, protocol::error_code::invalid_state,
             "task " + std::to_string(tid) + " is not running (it finished or was cancelled)");
    else
      refuse(to, id, protocol::error_code::unknown_task, "no task " + std::to_string(tid));
  }

  // Checks that `w` holds task `tid` under lease `attempt`; answers the refusal otherwise.
  task* held_task(const peer_address& from, std::uint64_t id, const worker_record& w, task_id tid,
                  std::uint32_t attempt) {
    auto it = live.find(tid);
    if (it == live.end()) {
      refuse_not_live(from, id, tid);
      return nullptr;
    }
    auto& t = it->second;
    if (t.status != task_status::running || t.worker != w.spec.worker || orphans.count(tid)) {
      refuse(from, id, protocol::error_code::not_owner,
             "task " + std::to_string(tid) + " is not held by worker " + w.spec.worker);
      return nullptr;
    }
    if (attempt != 0 && attempt != t.attempts) {
      refuse(from, id, protocol::error_code::stale_lease,
             "attempt " + std::to_string(attempt) + " of task " + std::to_string(tid) +
                 " is stale; the current attempt is " + std::to_string(t.attempts));
      return nullptr;
    }
    return &t;
  }

  // ---------------------------------------------------------------- worker messages

  void on(const peer_address& from, std::uint64_t id, protocol::register_worker& spec) {
    if (spec.worker.empty()) {
      refuse(from, id, protocol::error_code::bad_field, "worker: must not be empty");
      return;
    }
    persistence::write_batch batch;
    const std::unordered_set<task_id> reported(spec.running.begin(), spec.running.end());
    // The same connection registering under another name gives up the old name first.
    if (auto* previous = worker_of(from); previous && previous->spec.worker != spec.worker)
      drop_worker(previous->spec.worker, batch, "worker re-registered under another id");
    const bool reconnect = workers.count(spec.worker) > 0;
    drop_worker(spec.worker, batch, "worker re-registered without it", reported);

    policy->add_worker({spec.worker, spec.types, spec.tags, spec.capacity, spec.pool},
                       steady_now());
    // Adopt what the worker still holds: tasks it held before this registration, and tasks found
    // running under its name after a restart (orphans).
    for (auto tid : spec.running) {
      auto it = live.find(tid);
      if (it == live.end() || it->second.status != task_status::running ||
          it->second.worker != spec.worker)
        continue;
      orphans.erase(tid);
      policy->adopt(queued_view(it->second), spec.worker);
    }

    auto& w = workers[spec.worker];
    w.peer = from;
    w.actor = spawn_worker(self, spec.worker, from, out, settings.liveness);
    w.spec = std::move(spec);
    worker_by_peer[from.routing_id] = w.spec.worker;
    spdlog::info("worker {} {} ({} pool, capacity {}, types {})", w.spec.worker,
                 reconnect ? "re-registered" : "registered", to_string(w.spec.pool),
                 w.spec.capacity, fmt_list(w.spec.types));
    emit_worker(event_kind::worker_joined, w.spec.worker, std::string(to_string(w.spec.pool)));
    store_in_background(std::move(batch));
    const auto hb = static_cast<std::uint32_t>(settings.liveness.heartbeat.count());
    reply(from, id, protocol::registered{hb, settings.liveness.liveness});
    schedule_dispatch();
  }

  static std::string fmt_list(const std::vector<std::string>& items) {
    std::string s;
    for (const auto& i : items) s += (s.empty() ? "" : ",") + i;
    return s;
  }

  void on(const peer_address& from, std::uint64_t id, protocol::fetch& f) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    answer_fetch(*w);  // one open fetch per worker: the newer one wins
    const auto sequence = ++fetch_sequence;
    w->fetch = open_fetch{id, sequence};
    policy->offer(w->spec.worker, f.max);
    schedule_dispatch();
    // A fetch that waits 0 ms is answered right after the dispatch pass queued above.
    if (f.wait_ms == 0)
      self->send(self, fetch_end_atom::value, w->spec.worker, sequence);
    else
      self->delayed_send(self, std::chrono::milliseconds(f.wait_ms), fetch_end_atom::value,
                         w->spec.worker, sequence);
  }

  void on_fetch_end(const std::string& worker, std::uint64_t sequence) {
    auto it = workers.find(worker);
    if (it == workers.end() || !it->second.fetch || it->second.fetch->sequence != sequence) return;
    answer_fetch(it->second);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::complete& c) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    auto* t = held_task(from, id, *w, c.task, c.attempt);
    if (!t) return;
    t->result = std::move(c.result);
    ++w->completed;
    persistence::write_batch batch;
    auto done = finish(live.find(c.task), task_status::completed, batch);
    emit(event_kind::task_completed, done);
    acknowledge_when_stored(std::move(batch), from, id);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::fail& f) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    auto* t = held_task(from, id, *w, f.task, f.attempt);
    if (!t) return;
    ++w->failed;
    t->error = std::move(f.error);
    persistence::write_batch batch;
    if (f.retryable && t->attempts < t->max_attempts) {
      policy->finish(t->id, steady_now());
      requeue(*t, batch, event_kind::task_retried, t->error);
      schedule_dispatch();
    } else {
      const auto final_status = f.retryable ? task_status::dead : task_status::failed;
      auto done = finish(live.find(f.task), final_status, batch);
      emit(final_status == task_status::dead ? event_kind::task_dead : event_kind::task_failed,
           done, done.error);
    }
    acknowledge_when_stored(std::move(batch), from, id);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::heartbeat&) {
    if (auto* w = registered_or_refuse(from, id)) self->send(w->actor, heartbeat_atom::value, id);
  }

  void on(const peer_address& from, std::uint64_t id, protocol::goodbye&) {
    auto* w = registered_or_refuse(from, id);
    if (!w) return;
    const auto name = w->spec.worker;
    persistence::write_batch batch;
    drop_worker(name, batch, "worker said goodbye");
    spdlog::info("worker {} left", name);
    emit_worker(event_kind::worker_left, name);
    acknowledge_when_stored(std::move(batch), from, id);
    schedule_dispatch();
  }

  void on_lost(const std::string& worker, const caf::actor& reporter) {
    auto it = workers.find(worker);
    // A worker actor replaced by a newer registration may still report; only the current counts.
    if (it == workers.end() || it->second.actor != reporter) return;
    it->second.actor = nullptr;  // it has stopped by itself
    persistence::write_batch batch;
    drop_worker(worker, batch, "worker lost");
    spdlog::warn("worker {} lost: no heartbeat for {} ms", worker,
                 settings.liveness.heartbeat.count() * settings.liveness.liveness);
    emit_worker(event_kind::worker_lost, worker);
    store_in_background(std::move(batch));
    schedule_dispatch();
  }

  // ---------------------------------------------------------------- producer messages

  void on(const peer_address& from, std::uint64_t id, protocol::submit& s) {
    auto tasks = std::make_shared<std::vector<task>>();
    tasks->reserve(s.tasks.size());
    persistence::write_batch batch;
    const auto now = wall_now();
    for (auto& spec : s.tasks) {
      task t;
      t.id = ++last_id;
      t.project = std::move(spec.project);
      t.type = std::move(spec.type);
      t.priority = spec.priority;
      t.payload = std::move(spec.payload);
      t.tags = std::move(spec.tags);
      t.max_attempts = spec.max_attempts;
      t.created_at = now;
      batch.put_task(t, std::nullopt);
      tasks->push_back(std::move(t));
    }
    batch.set_last_id(last_id);
    // Tasks enter the queue only once stored: a worker can never run a task the store would
    // forget in a crash, and the producer's acknowledgement means "durable".
    store(
        std::move(batch),
        [=] {
          protocol::submitted ack;
          ack.ids.reserve(tasks->size());
          for (auto& t : *tasks) {
            ack.ids.push_back(t.id);
            project(t.project);  // the project exists from its first task on
            policy->enqueue(queued_view(t));
            moved(t, std::nullopt);
            emit(event_kind::task_submitted, t);
            const auto tid = t.id;
            live.emplace(tid, std::move(t));
          }
          reply(from, id, std::move(ack));
          schedule_dispatch();
          flush();
        },
        [=](const std::string& why) {
          refuse(from, id, protocol::error_code::storage, "tasks not stored: " + why);
        });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::get_task& g) {
    if (auto it = live.find(g.task); it != live.end()) {
      reply(from, id, protocol::task_info{it->second});
      return;
    }
    self->request(persistence, caf::infinite, find_atom::value, g.task)
        .then([=](task& t) { reply(from, id, protocol::task_info{std::move(t)}); },
              [=](caf::error&) {
                refuse(from, id, protocol::error_code::unknown_task,
                       "no task " + std::to_string(g.task));
              });
  }

  void on(const peer_address& from, std::uint64_t id, protocol::cancel& c) {
    auto it = live.find(c.task);
    if (it == live.end()) {
      refuse_not_live(from, id, c.task);
      return;
    }
    persistence::write_batch batch;
    auto done = finish(it, task_status::cancelled, batch);
    emit(event_kind::task_cancelled, done);
    acknowledge_when_stored(std::move(batch), from, id);
  }

  // ---------------------------------------------------------------- admin messages

  void on(const peer_address& from, std::uint64_t id, protocol::list_tasks& q) {
    persistence::task_filter filter;
    filter.project = q.project;
    filter.status = q.status;
    filter.limit = q.limit;
    self->request(persistence, caf::infinite, list_atom::value, filter)
        .then([=](task_list& tasks) { reply(from, id, protocol::task_list{std::move(tasks)}); },
              [=](caf::error& e) {
                refuse(from, id, protocol::error_code::storage, self->system().render(e));
              });
  }

  std::vector<protocol::worker_info> describe_workers() const {
    std::vector<protocol::worker_info> out;
    for (const auto& [name, w] : workers) {
      protocol::worker_info info;
      info.id = name;
      info.pool = w.spec.pool;
      info.capacity = w.spec.capacity;
      info.completed = w.completed;
      info.failed = w.failed;
      info.types = w.spec.types;
      info.tags = w.spec.tags;
      info.state = "active";
      if (auto view = policy->worker(name)) {
        info.running = view->running;
        info.pool = view->pool;
        info.state = view->state == policy::worker_state::active    ? "active"
                     : view->state == policy::worker_state::engaged ? "engaged"
                                                                    : "standby";
      }
      out.push_back(std::move(info));
    }
    return out;
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
    for (const auto& [name, actor] : projects) {
      self->request(actor, std::chrono::seconds(5), info_atom::value)
          .then(
              [=](protocol::project_info& info) mutable {
                g->projects.push_back(std::move(info));
                if (--g->missing == 0) {
                  std::sort(g->projects.begin(), g->projects.end(),
                            [](const auto& a, const auto& b) { return a.name < b.name; });
                  done(g->projects);
                }
              },
              [=](caf::error&) mutable {
                if (--g->missing == 0) done(g->projects);
              });
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
              if (stored.paused != before.paused) {
                events.push_back({stored.paused ? event_kind::project_paused
                                                : event_kind::project_resumed,
                                  wall_now(), 0, name, {}, {}});
                flush();
              }
              reply(from, id, protocol::ok{});
              schedule_dispatch();
            },
            [=](caf::error& e) {
              refuse(from, id, protocol::error_code::storage, self->system().render(e));
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
    dispatch_queued = false;
    assignments.clear();
    policy->dispatch(steady_now(), assignments);
    if (assignments.empty()) return;
    persistence::write_batch batch;
    const auto now = wall_now();
    std::vector<worker_record*> served;
    for (const auto& a : assignments) {
      auto& t = live.at(a.task);
      auto& w = workers.find(a.worker)->second;
      const auto from = t.status;
      t.status = task_status::running;
      t.worker = w.spec.worker;
      t.assigned_at = now;
      ++t.attempts;
      batch.put_task(t, from);
      moved(t, from);
      emit(event_kind::task_assigned, t);
      if (w.handed.empty()) served.push_back(&w);
      w.handed.push_back({t.id, t.project, t.type, t.priority, t.payload, t.attempts});
    }
    // The jobs leave before the write lands: if the dispatcher dies in between, the store still
    // says pending and the task runs again, which at-least-once delivery allows.
    for (auto* w : served) answer_fetch(*w);
    store_in_background(std::move(batch));
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
      if (engaged) schedule_dispatch();
    }
  }

  void end_recovery_grace() {
    if (orphans.empty()) return;
    persistence::write_batch batch;
    for (const auto& [tid, worker] : orphans) {
      auto it = live.find(tid);
      if (it != live.end())
        requeue(it->second, batch, event_kind::task_requeued,
                "its worker did not report it after a restart");
    }
    spdlog::info("{} tasks running before the restart went back to the queue", orphans.size());
    orphans.clear();
    store_in_background(std::move(batch));
    schedule_dispatch();
  }

  void recover(persistence::recovered_state& r) {
    last_id = r.last_id;
    recovered_counts = std::move(r.counts);
    for (const auto& [name, s] : r.projects) policy->configure_project(name, s);
    for (const auto& [name, s] : r.projects) project(name);
    for (const auto& [name, c] : recovered_counts) project(name);
    std::size_t pending = 0;
    for (auto& t : r.live) {
      last_id = std::max(last_id, t.id);
      if (t.status == task_status::running) {
        orphans.emplace(t.id, t.worker);
      } else {
        policy->enqueue(queued_view(t));
        ++pending;
      }
      const auto tid = t.id;
      live.emplace(tid, std::move(t));
    }
    r.live.clear();
    if (!live.empty())
      spdlog::info("recovered {} pending and {} running tasks (last id {})", pending,
                   orphans.size(), last_id);
    if (!orphans.empty())
      self->delayed_send(self, settings.recovery_grace, grace_end_atom::value);
  }
};

std::chrono::milliseconds tick_interval(const dispatcher_settings& s) {
  // Often enough to honour scale_interval closely, rarely enough to cost nothing when idle.
  return std::clamp(s.scale_interval / 4, std::chrono::milliseconds(10),
                    std::chrono::milliseconds(250));
}

caf::behavior dispatcher(dispatcher_actor* self, dispatcher_settings settings,
                         shared_recovery recovered, caf::actor persistence, caf::actor notifier,
                         std::shared_ptr<outbox> out) {
  auto& st = self->state;
  st.self = self;
  st.settings = settings;
  st.persistence = std::move(persistence);
  st.notifier = std::move(notifier);
  st.out = std::move(out);
  st.policy = std::make_unique<policy::scheduler>(
      policy::scheduler_config{settings.scale_interval.count(), settings.reserve_cooldown.count()});
  st.recover(*recovered);
  recovered.reset();
  self->send(self, tick_atom::value);
  return {
      [=](inbound_atom, inbound& in) {
        auto& s = self->state;
        std::visit([&](auto& body) { s.on(in.from, in.request.id, body); }, in.request.body);
        s.flush();
      },
      [=](dispatch_atom) {
        self->state.run_dispatch();
        self->state.flush();
      },
      [=](fetch_end_atom, const std::string& worker, std::uint64_t sequence) {
        self->state.on_fetch_end(worker, sequence);
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
  };
}

}  // namespace

caf::actor spawn_dispatcher(caf::actor_system& system, dispatcher_settings settings,
                            shared_recovery recovered, caf::actor persistence,
                            caf::actor notifier, std::shared_ptr<outbox> out) {
  return system.spawn(dispatcher, settings, std::move(recovered), std::move(persistence),
                      std::move(notifier), std::move(out));
}

}  // namespace dispatch::actors
