#include "dispatchctl/time_format.hpp"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <limits>

#include "protocol/duration.hpp"

namespace dispatch::ctl {
namespace {

// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's days_from_civil).
// Pure arithmetic rather than timegm(): no dependence on the process time zone or on a
// non-standard libc function.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);      // [0, 399]
  const unsigned mp = m > 2 ? m - 3 : m + 9;                   // March = 0: leap day last
  const unsigned doy = (153 * mp + 2) / 5 + d - 1;             // [0, 365]
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;  // [0, 146096]
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool is_leap(unsigned y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(unsigned y, unsigned m) {
  constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Exactly `width` decimal digits at `text[at]`; from_chars alone would also take a sign.
std::optional<unsigned> fixed_digits(std::string_view text, std::size_t at, std::size_t width) {
  if (text.size() < at + width) return std::nullopt;
  unsigned value = 0;
  for (std::size_t i = at; i < at + width; ++i) {
    if (!is_digit(text[i])) return std::nullopt;
    value = value * 10 + static_cast<unsigned>(text[i] - '0');
  }
  return value;
}

}  // namespace

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

std::optional<millis> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS is 19 characters; the separators sit at fixed places.
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  const auto year = fixed_digits(text, 0, 4);
  const auto month = fixed_digits(text, 5, 2);
  const auto day = fixed_digits(text, 8, 2);
  const auto hour = fixed_digits(text, 11, 2);
  const auto minute = fixed_digits(text, 14, 2);
  const auto second = fixed_digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second) return std::nullopt;
  if (*year < 1970 || *month < 1 || *month > 12 || *day < 1 ||
      *day > days_in_month(*year, *month) || *hour > 23 || *minute > 59 || *second > 59)
    return std::nullopt;

  std::size_t at = 19;
  millis fraction_ms = 0;
  if (text[at] == '.') {
    ++at;
    const std::size_t first_digit = at;
    int scale = 100;  // the first fraction digit is hundreds of milliseconds
    while (at < text.size() && is_digit(text[at])) {
      fraction_ms += (text[at] - '0') * scale;
      scale /= 10;  // reaches 0 after three digits: the rest are dropped (truncated)
      ++at;
    }
    if (at == first_digit) return std::nullopt;  // "." without digits
  }
  if (at + 1 != text.size() || (text[at] != 'Z' && text[at] != 'z')) return std::nullopt;

  const std::int64_t days = days_from_civil(*year, *month, *day);
  const millis t = ((days * 24 + *hour) * 60 + *minute) * 60'000 + *second * 1000 + fraction_ms;
  // The epoch itself is 0, which the wire reads as "unset"; refuse rather than drop it.
  if (t <= 0) return std::nullopt;
  return t;
}

std::optional<millis> parse_time_arg(std::string_view text, millis now, bool relative_allowed) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '+') {
    if (!relative_allowed) return std::nullopt;
    const auto d = parse_duration(text.substr(1));
    // "+0s" would be a deadline already passed when the task arrives: surely a mistake.
    if (!d || d->count() <= 0 || d->count() > std::numeric_limits<millis>::max() - now)
      return std::nullopt;
    return now + d->count();
  }
  if (is_digit(text.front()) && text.find_first_not_of("0123456789") == std::string_view::npos) {
    millis value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value <= 0) return std::nullopt;
    return value;
  }
  return parse_rfc3339(text);
}

std::optional<millis> parse_time_filter(std::string_view text, millis now) {
  if (text.empty() || (text.front() != '+' && text.front() != '-'))
    return parse_time_arg(text, now, false);
  const auto d = parse_duration(text.substr(1));
  // Unlike a deadline, a bound may be "now" ("+0s", "-0s"); it must stay after the epoch, which
  // the wire reads as "open".
  if (!d || d->count() < 0) return std::nullopt;
  if (text.front() == '+') {
    if (d->count() > std::numeric_limits<millis>::max() - now) return std::nullopt;
    return now + d->count();
  }
  if (d->count() >= now) return std::nullopt;
  return now - d->count();
}

}  // namespace dispatch::ctl
