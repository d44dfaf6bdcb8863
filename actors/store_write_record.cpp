#include "actors/store_write_record.hpp"

#include <spdlog/spdlog.h>

#include "metrics/dispatcher_metrics.hpp"

namespace dispatch::actors {

void record_store_write(metrics::dispatcher_metrics& metrics,
                        std::chrono::steady_clock::time_point started,
                        const persistence::status& outcome, std::size_t changes) {
  metrics.store_batch_latency(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (outcome.is_ok()) return;
  metrics.store_error();
  spdlog::error("store write of {} changes failed: {}", changes, outcome.to_string());
}

}  // namespace dispatch::actors
