// The storage floor: the writes the dispatcher's store makes per task, with no dispatcher
// around them. Per task, as persistence/task_store.cpp stages them:
//   submit      the record put into "live" (plus the id counter and the project's counts)
//   assignment  the record rewritten in "live" as running
//   completion  the record put into "done", deleted from "live", its index entries put (project,
//               type, worker, status, and three time buckets each for created_at and
//               finished_at), and the counts
// Submits are written in groups of `batch` tasks (one submit); assignments and completions in
// groups of `group` (the dispatcher's group commit merges whatever is queued: 1,000 is its
// best case, the capacity of one worker's fetch a pessimistic one).
#pragma once

#include <cstddef>
#include <string>

namespace dispatch::bench {

enum class store_api {
  rocksdb,     // plain RocksDB WriteBatches, keys and values shaped like the store's
  task_store,  // the project's persistence::task_store (its encoding and index code included)
};

struct store_floor_load {
  store_api api = store_api::rocksdb;
  bool fsync = false;
  std::size_t tasks = 0;
  std::size_t batch = 1000;
  std::size_t group = 1000;
  std::size_t payload = 100;
  std::string dir;  // an empty directory for the database
};

// Seconds for all writes of all tasks.
double run_store_floor(const store_floor_load& load);

}  // namespace dispatch::bench
