// Task timestamps as text, both ways: RFC 3339 for output, and the spellings an operator may
// type for a point in time on the command line.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "protocol/task.hpp"

namespace dispatch::ctl {

// UTC with millisecond precision, e.g. "2026-11-21T05:40:25.123Z".
// A task stores 0 for "not yet", which has no time to show: that gives nullopt.
std::optional<std::string> format_rfc3339(millis t);

// The inverse of format_rfc3339, a little more lenient: "2026-11-21T10:00:00Z", with an
// optional fraction of any length (".5", ".123", ".123456"; digits past milliseconds are
// dropped), and 't' / 'z' in lower case as RFC 3339 allows. Only UTC ("Z") is accepted: an
// offset would be easy to misread on a dispatcher in another zone. Years 1970..9999; no leap
// second (":60"), since ms since the epoch cannot name one. nullopt for anything else.
std::optional<millis> parse_rfc3339(std::string_view text);

// A point in time as typed on the command line: RFC 3339 (above) or integer ms since the
// epoch, both > 0 (0 means "unset" on the wire); with `relative_allowed`, also "+DURATION"
// (see protocol/duration.hpp), meaning `now` plus that much. `now` is a parameter so that
// callers and tests decide what the clock says.
std::optional<millis> parse_time_arg(std::string_view text, millis now, bool relative_allowed);

// A bound of a time filter (tasks --created-from, report --from, ...): RFC 3339 or ms since
// the epoch as for parse_time_arg, or "+DURATION" / "-DURATION", `now` plus or less that much
// ("-1h": an hour ago; "-0s": now). The result is > 0 (0 means "open" on the wire).
std::optional<millis> parse_time_filter(std::string_view text, millis now);

}  // namespace dispatch::ctl
