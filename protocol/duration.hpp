// Durations as people write them on command lines and in config files: "250ms", "10s", "2m",
// "1h". A bare number means milliseconds. Shared by every binary so that they all accept the
// same spellings.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// The largest unit that states `d` exactly: "1500ms", "10s", "2m", "1h".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace dispatch
