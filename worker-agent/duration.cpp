#include "worker-agent/duration.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>

namespace dispatch::worker {
namespace {

struct unit {
  std::string_view suffix;
  std::int64_t millis;
};
// Largest first, for format_duration.
constexpr std::array<unit, 4> units = {
    unit{"h", 3'600'000}, unit{"m", 60'000}, unit{"s", 1'000}, unit{"ms", 1}};

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::int64_t value = 0;
  const auto* first = text.data();
  const auto* last = text.data() + text.size();
  const auto [end, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || end == first || value < 0) return std::nullopt;
  const std::string_view suffix(end, static_cast<std::size_t>(last - end));
  if (suffix.empty()) {
    if (value == 0) return std::chrono::milliseconds(0);
    return std::nullopt;  // "10" is ambiguous: demand a unit
  }
  for (const auto& u : units) {
    if (suffix != u.suffix) continue;
    if (value > std::numeric_limits<std::int64_t>::max() / u.millis) return std::nullopt;
    return std::chrono::milliseconds(value * u.millis);
  }
  return std::nullopt;
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  for (const auto& u : units)
    if (ms % u.millis == 0) return std::to_string(ms / u.millis) + std::string(u.suffix);
  return std::to_string(ms) + "ms";  // unreachable: the last unit divides everything
}

}  // namespace dispatch::worker
