// Counts and logs the requests the I/O thread refuses. Every refusal is counted; log lines are
// limited to a few a second, because a hostile or broken client can cause thousands a second and
// must not be able to flood the log (the counts stay exact in the metric). Logs name the peer's
// address and the reason, never the token.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "dispatcher/io_bridge.hpp"

namespace dispatch::metrics {
class dispatcher_metrics;
}

namespace dispatch {

class refusal_reporter {
 public:
  explicit refusal_reporter(std::shared_ptr<metrics::dispatcher_metrics> metrics)
      : metrics_(std::move(metrics)) {}

  // Called by the I/O thread only.
  void operator()(const refusal& r);

 private:
  static constexpr int lines_per_second = 10;

  std::shared_ptr<metrics::dispatcher_metrics> metrics_;
  std::chrono::steady_clock::time_point window_start_{};
  int logged_in_window_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace dispatch
