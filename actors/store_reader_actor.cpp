#include "actors/store_reader_actor.hpp"

#include <caf/all.hpp>

#include "actors/pin_actor_thread.hpp"
#include "persistence/idle_priority.hpp"
#include "persistence/task_store.hpp"

namespace dispatch::actors {
namespace {

// Entries one retention search examines at most. Each search may sort the index memtable (tens
// of ms when it is full), so a search finds many candidates, which the dispatcher hands to the
// persistence actor in small slices. The search runs at idle priority (on a thread of its own,
// so that this actor's reads keep their priority): with --storage-cpus it shares its CPUs with
// the store's writer, which would otherwise wait behind the sort.
constexpr std::size_t expired_per_find = 20'000;

caf::behavior store_reader(caf::event_based_actor*, shared_store store) {
  pin_actor_thread("store reader", store->cpus());  // detached: this is the actor's own thread
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
      [store](purge_atom, millis finished_before, millis keys_before,
              persistence::purge_cursor& cursor)
          -> caf::result<persistence::expired_entries, persistence::purge_cursor> {
        persistence::expired_entries found;
        persistence::status s;
        persistence::run_at_idle_priority([&] {  // see expired_per_find
          s = store->find_expired(finished_before, keys_before, expired_per_find, cursor, found);
        });
        if (!s.is_ok()) return caf::make_error(caf::sec::runtime_error, s.to_string());
        return {std::move(found), std::move(cursor)};
      },
  };
}

}  // namespace

caf::actor spawn_store_reader(caf::local_actor* owner, shared_store store) {
  // Detached: a query blocks on RocksDB and must not hold a scheduler thread.
  return owner->spawn<caf::detached + caf::linked>(store_reader, std::move(store));
}

}  // namespace dispatch::actors
