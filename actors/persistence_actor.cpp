#include "actors/persistence_actor.hpp"

#include <spdlog/spdlog.h>

namespace dispatch::actors {
namespace {

struct persistence_state {
  shared_store store;
  persistence::write_batch group;             // writes waiting for the next flush
  std::vector<caf::response_promise> waiting;  // one per write in `group`
  bool flush_queued = false;
  static inline const char* name = "persistence";
};

using persistence_actor = caf::stateful_actor<persistence_state>;

void flush(persistence_actor* self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.waiting.empty()) return;
  const auto result = st.store->apply(st.group);
  st.group.clear();
  auto waiting = std::move(st.waiting);
  st.waiting.clear();
  if (result.is_ok()) {
    for (auto& rp : waiting) rp.deliver(caf::ok_atom::value);
    return;
  }
  spdlog::error("store write of a group of {} requests failed: {}", waiting.size(),
                result.to_string());
  for (auto& rp : waiting) rp.deliver(caf::make_error(caf::sec::runtime_error, result.to_string()));
}

caf::behavior persistence(persistence_actor* self, shared_store store) {
  self->state.store = std::move(store);
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
      [=](list_atom, const persistence::task_filter& filter) -> caf::result<task_list> {
        task_list out;
        const auto s = self->state.store->list(filter, out);
        if (!s.is_ok()) return caf::make_error(caf::sec::runtime_error, s.to_string());
        return out;
      },
      [=](shutdown_atom) {
        flush(self);
        self->quit();
      },
  };
}

}  // namespace

caf::actor spawn_persistence(caf::actor_system& system, shared_store store) {
  return system.spawn<caf::detached>(persistence, std::move(store));
}

}  // namespace dispatch::actors
