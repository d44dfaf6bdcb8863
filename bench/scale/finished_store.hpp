// Builds a data directory holding many finished tasks quickly, by writing completed records
// directly through persistence::task_store (the daemon's own store code, so the records,
// indexes and counts are exactly what a daemon would have left), plus a few pending tasks.
#pragma once

#include <cstddef>
#include <string>

namespace dispatch::bench {

// Writes `finished` completed tasks and `pending` pending ones into a new store in `dir`.
// Returns the seconds it took.
double build_finished_store(const std::string& dir, std::size_t finished, std::size_t pending,
                            std::size_t payload);

}  // namespace dispatch::bench
