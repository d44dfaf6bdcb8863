// The wall clock as the protocol counts time: milliseconds since the Unix epoch (created_at,
// run_at, deadline, event times...).
#pragma once

#include <chrono>

#include "protocol/task.hpp"

namespace dispatch {

inline millis wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace dispatch
