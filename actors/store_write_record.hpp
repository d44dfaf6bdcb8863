// What every store write leaves in the metrics and the log, wherever it was made: the
// persistence actor's group commit, or a small write the dispatcher makes itself (its
// write_inline()). Both count into the same histogram and error counter, so an operator sees one
// store, not two.
#pragma once

#include <chrono>
#include <cstddef>

#include "persistence/status.hpp"

namespace dispatch::metrics {
class dispatcher_metrics;
}

namespace dispatch::actors {

// A write of `changes` changes, begun at `started`, ended with `outcome`: its time into
// dispatch_store_batch_seconds and, if it failed, dispatch_store_errors_total and an error line.
void record_store_write(metrics::dispatcher_metrics& metrics,
                        std::chrono::steady_clock::time_point started,
                        const persistence::status& outcome, std::size_t changes);

}  // namespace dispatch::actors
