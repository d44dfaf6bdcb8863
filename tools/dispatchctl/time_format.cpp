#include "dispatchctl/time_format.hpp"

#include <cstdio>
#include <ctime>

namespace dispatch::ctl {

std::optional<std::string> format_rfc3339(millis t) {
  if (t == 0) return std::nullopt;
  // Floor division, so that a (nonsensical but possible) pre-epoch value still yields a
  // millisecond part in 0..999 rather than a negative one.
  millis seconds = t / 1000;
  millis ms = t % 1000;
  if (ms < 0) {
    ms += 1000;
    seconds -= 1;
  }
  const std::time_t whole = static_cast<std::time_t>(seconds);
  std::tm parts{};
  // gmtime_r rather than gmtime: no shared static buffer.
  if (gmtime_r(&whole, &parts) == nullptr) return std::nullopt;
  char text[48];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900,
                parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec,
                static_cast<int>(ms));
  return std::string(text);
}

}  // namespace dispatch::ctl
