// The wall clock as the protocol counts it (ms since the epoch), for tests that set run_at,
// deadlines or time filters relative to now.
#pragma once

#include <chrono>

#include "protocol/task.hpp"

namespace dispatch::testing {

inline millis wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace dispatch::testing
