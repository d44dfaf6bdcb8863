#include "dispatcher/refusal_reporter.hpp"

#include <spdlog/spdlog.h>

#include "metrics/dispatcher_metrics.hpp"

namespace dispatch {

void refusal_reporter::operator()(const refusal& r) {
  const std::string endpoint = r.endpoint == endpoint_kind::work ? "work" : "admin";
  const std::string code(protocol::to_string(r.code));
  metrics_->refused(endpoint, code);

  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= std::chrono::seconds(1)) {
    if (suppressed_ > 0)
      spdlog::warn("{} more refused requests not logged in the last second", suppressed_);
    window_start_ = now;
    logged_in_window_ = 0;
    suppressed_ = 0;
  }
  if (logged_in_window_ >= lines_per_second) {
    ++suppressed_;
    return;
  }
  ++logged_in_window_;
  // Malformed input is routine noise from broken clients; refusals of who may do what are not.
  const bool security_relevant =
      r.code == protocol::error_code::unauthenticated || r.code == protocol::error_code::forbidden ||
      r.code == protocol::error_code::rate_limited || r.code == protocol::error_code::too_many_peers;
  spdlog::log(security_relevant ? spdlog::level::warn : spdlog::level::debug,
              "refused a request on the {} endpoint from {}: {}: {}", endpoint, r.peer, code,
              r.reason);
}

}  // namespace dispatch
