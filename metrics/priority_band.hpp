// Priorities are any int32, so they cannot be a label value as they are: every distinct priority
// would become a series of its own. The queue depth is reported per band instead; the bands are
// fixed, so a project has at most priority_band_count depth series.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dispatch::metrics {

constexpr std::size_t priority_band_count = 5;

// Index into the bands, in label order: "negative", "0", "1-9", "10-99", "100+".
constexpr std::size_t priority_band_index(std::int32_t priority) {
  if (priority < 0) return 0;
  if (priority == 0) return 1;
  if (priority < 10) return 2;
  if (priority < 100) return 3;
  return 4;
}

constexpr std::string_view priority_band_name(std::size_t index) {
  constexpr std::array<std::string_view, priority_band_count> names{"negative", "0", "1-9",
                                                                    "10-99", "100+"};
  return index < names.size() ? names[index] : std::string_view{};
}

constexpr std::string_view priority_band(std::int32_t priority) {
  return priority_band_name(priority_band_index(priority));
}

}  // namespace dispatch::metrics
