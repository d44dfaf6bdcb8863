#include "actors/store_reader_actor.hpp"

#include <caf/all.hpp>

#include "persistence/task_store.hpp"

namespace dispatch::actors {
namespace {

caf::behavior store_reader(caf::event_based_actor*, shared_store store) {
  return {
      [store](list_atom,
              const persistence::task_filter& filter) -> caf::result<protocol::task_list> {
        protocol::task_list page;
        const auto s = store->list(filter, page.tasks, page.next);
        if (!s.is_ok()) return caf::make_error(caf::sec::runtime_error, s.to_string());
        return page;
      },
      [store](read_atom, const std::vector<task_id>& ids) -> caf::result<task_list> {
        task_list tasks;
        const auto s = store->get_unfinished(ids, tasks);
        if (!s.is_ok()) return caf::make_error(caf::sec::runtime_error, s.to_string());
        return tasks;
      },
  };
}

}  // namespace

caf::actor spawn_store_reader(caf::local_actor* owner, shared_store store) {
  // Detached: a query blocks on RocksDB and must not hold a scheduler thread.
  return owner->spawn<caf::detached + caf::linked>(store_reader, std::move(store));
}

}  // namespace dispatch::actors
