// Time budgets of integration tests on slower builds. Under ASan+UBSan, and with two test
// processes sharing two cores, the binaries under test run several times slower: a heartbeat that
// a normal build never misses can then be missed for no reason but scheduling, and a deadline
// sized for a normal build runs out before the work is done. DISPATCH_TEST_TIME_SCALE (a number
// from 1 to 20, default 1; scripts/test-sanitized.sh sets it) stretches the waits, timeouts and
// liveness intervals that tests pass through scaled(). Only what a slow machine needs is
// stretched: what a test checks stays the same, and no check depends on the factor.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace dispatch::testing {

inline double time_scale() {
  static const double scale = [] {
    const char* text = std::getenv("DISPATCH_TEST_TIME_SCALE");
    if (text == nullptr || *text == '\0') return 1.0;
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    // A typo must not quietly run the tests unscaled (or scaled by 0).
    if (end == text || *end != '\0' || !(value >= 1.0 && value <= 20.0))
      throw std::invalid_argument(std::string("DISPATCH_TEST_TIME_SCALE: expected a number "
                                              "from 1 to 20, got '") + text + "'");
    return value;
  }();
  return scale;
}

// `d` stretched by the factor, rounded up to whole milliseconds.
inline std::chrono::milliseconds scaled(std::chrono::milliseconds d) {
  const double ms = static_cast<double>(d.count()) * time_scale();
  const auto whole = static_cast<std::int64_t>(ms);
  return std::chrono::milliseconds(whole + (static_cast<double>(whole) < ms ? 1 : 0));
}

// The same as a duration argument of dispatcherd or worker-agent, e.g. "600ms".
inline std::string scaled_arg(std::chrono::milliseconds d) {
  return std::to_string(scaled(d).count()) + "ms";
}

}  // namespace dispatch::testing
