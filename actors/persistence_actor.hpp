// The one actor that writes to the store. It runs detached (its own thread) because RocksDB
// writes block, and it commits in groups: every write request already in its mailbox when a
// flush comes up shares one RocksDB batch, and each is answered only after that batch is written.
//
//   (write_atom, write_batch)  -> ok_atom, or an error naming the store failure
//   (find_atom, task_id)       -> task, or an error (not found)
//   (purge_atom, expired_entries, finished_before, keys_before)
//                              -> project_deltas: one retention step, deleting those of the
//                                 candidates (found by the store reader) still expired
//   (shutdown_atom)            -> writes what is queued, then quits
#pragma once

#include <caf/fwd.hpp>

#include "actors/atoms.hpp"

namespace dispatch::metrics {
class dispatcher_metrics;
}

namespace dispatch::actors {

// Its thread runs on the store's CPUs (store_options::cpus, --storage-cpus).
caf::actor spawn_persistence(caf::actor_system& system, shared_store store,
                             std::shared_ptr<metrics::dispatcher_metrics> metrics);

}  // namespace dispatch::actors
