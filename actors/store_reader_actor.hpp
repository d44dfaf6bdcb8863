// Answers operators' task queries from the store, on its own thread. A query over finished
// tasks may walk many index entries and sort the index memtable (persistence/task_store.cpp,
// make_index_options): tens of ms under load. On the persistence actor's thread that would hold
// up every write queued behind it, and with them the acks producers and workers wait for.
// RocksDB reads need no coordination with the writer; a query sees every write acknowledged
// before it was asked, which is all a client can have observed.
//
//   (list_atom, task_filter)   -> task_list, newest first (or an error naming the read failure)
//   (read_atom, vector<id>)    -> task_list of those unfinished tasks, in that order (or an error
//                                 if one is not unfinished or cannot be read): the dispatcher's
//                                 read-ahead of parked tasks
//   (purge_atom, finished_before, keys_before, purge_cursor)
//                              -> (expired_entries, purge_cursor): the next candidates of a
//                                 retention round, for the persistence actor to delete; the
//                                 search may sort the index memtable, so it runs here
//
// It quits with the actor that spawned it (linked).
#pragma once

#include <caf/fwd.hpp>

#include "actors/atoms.hpp"

namespace dispatch::actors {

// Its thread runs on the store's CPUs (store_options::cpus, --storage-cpus).
caf::actor spawn_store_reader(caf::local_actor* owner, shared_store store);

}  // namespace dispatch::actors
