// Human-readable durations for options and messages: "250ms", "10s", "2m", "1h" (a whole number
// and a unit; "0" alone is accepted too).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch::worker {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// The largest unit that represents `d` exactly: 1500 -> "1500ms", 60000 -> "1m".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace dispatch::worker
