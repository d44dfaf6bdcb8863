#include "actors/persistence_actor.hpp"

#include "actors/pin_actor_thread.hpp"
#include "actors/store_write_record.hpp"
#include "metrics/dispatcher_metrics.hpp"

namespace dispatch::actors {
namespace {

struct persistence_state {
  shared_store store;
  persistence::write_batch group;             // writes waiting for the next flush
  std::vector<caf::response_promise> waiting;  // one per write in `group`
  bool flush_queued = false;
  std::shared_ptr<metrics::dispatcher_metrics> metrics;
  static inline const char* name = "persistence";
};

using persistence_actor = caf::stateful_actor<persistence_state>;

// The counts a purge took away, as the dispatcher's count changes.
project_deltas removed_counts(const persistence::purge_result& outcome) {
  project_deltas changes;
  for (const auto& [name, removed] : outcome.removed) {
    auto& d = changes[name];
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = -static_cast<std::int64_t>(removed[i]);
  }
  return changes;
}

void flush(persistence_actor* self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.waiting.empty()) return;
  const auto started = std::chrono::steady_clock::now();
  const auto result = st.store->apply(st.group);
  record_store_write(*st.metrics, started, result, st.group.size());
  st.group.clear();
  auto waiting = std::move(st.waiting);
  st.waiting.clear();
  if (result.is_ok()) {
    for (auto& rp : waiting) rp.deliver(caf::ok_atom::value);
    return;
  }
  for (auto& rp : waiting) rp.deliver(caf::make_error(caf::sec::runtime_error, result.to_string()));
}

caf::behavior persistence(persistence_actor* self, shared_store store,
                          std::shared_ptr<metrics::dispatcher_metrics> metrics) {
  pin_actor_thread("persistence", store->cpus());  // detached: this is the actor's own thread
  self->state.store = std::move(store);
  self->state.metrics = std::move(metrics);
  return {
      [=](write_atom, persistence::write_batch& batch) {
        auto& st = self->state;
        st.group.append(std::move(batch));
        st.waiting.push_back(self->make_response_promise());
        // The flush message queues behind every write already in the mailbox, so all of them
        // join this group: the batch grows with the load, with no timer and no added latency.
        if (!st.flush_queued) {
          st.flush_queued = true;
          self->send(self, flush_atom::value);
        }
        return st.waiting.back();
      },
      [=](flush_atom) { flush(self); },
      [=](find_atom, task_id id) -> caf::result<task> {
        task t;
        const auto s = self->state.store->get(id, t);
        if (!s.is_ok()) return caf::make_error(caf::sec::runtime_error, s.to_string());
        return t;
      },
      [=](purge_atom, const persistence::expired_entries& found, millis finished_before,
          millis keys_before) -> caf::result<project_deltas> {
        persistence::purge_result outcome;
        const auto s = self->state.store->purge(found, finished_before, keys_before, outcome);
        if (!s.is_ok()) return caf::make_error(caf::sec::runtime_error, s.to_string());
        return removed_counts(outcome);
      },
      [=](shutdown_atom) {
        flush(self);
        self->quit();
      },
  };
}

}  // namespace

caf::actor spawn_persistence(caf::actor_system& system, shared_store store,
                             std::shared_ptr<metrics::dispatcher_metrics> metrics) {
  return system.spawn<caf::detached>(persistence, std::move(store), std::move(metrics));
}

}  // namespace dispatch::actors
