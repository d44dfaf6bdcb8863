// Task timestamps as RFC 3339 text.
#pragma once

#include <optional>
#include <string>

#include "protocol/task.hpp"

namespace dispatch::ctl {

// UTC with millisecond precision, e.g. "2026-11-21T05:40:25.123Z".
// A task stores 0 for "not yet", which has no time to show: that gives nullopt.
std::optional<std::string> format_rfc3339(millis t);

}  // namespace dispatch::ctl
