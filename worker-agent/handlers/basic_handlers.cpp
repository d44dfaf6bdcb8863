// The small built-in handlers (sleep, echo, fail) and the registration of all built-ins.
#include <algorithm>
#include <charconv>
#include <cstdint>

#include "worker-agent/builtin_handlers.hpp"

namespace dispatch::worker::handlers {

job_outcome sleep(const job& j, job_control& control) {
  std::uint64_t ms = 0;
  const auto* first = j.payload.data();
  const auto* last = first + j.payload.size();
  const auto [end, ec] = std::from_chars(first, last, ms);
  // Running it again cannot fix a bad payload, hence not retryable.
  if (j.payload.empty() || ec != std::errc() || end != last)
    return {false, "sleep: payload must be a decimal number of milliseconds, got '" +
                       j.payload + "'",
            false};
  // Capped so that the conversion cannot overflow; nobody sleeps for a year in a job.
  constexpr std::uint64_t max_ms = 365ULL * 24 * 3600 * 1000;
  if (control.wait_for(std::chrono::milliseconds(std::min(ms, max_ms))))
    return {false, "stopped", true};
  return {true, "", true};
}

job_outcome echo(const job& j, job_control&) { return {true, j.payload, true}; }

job_outcome fail(const job& j, job_control&) {
  return {false, "fail handler: " + j.payload, j.payload != "fatal"};
}

const std::vector<std::string>& builtin_types() {
  static const std::vector<std::string> types = {"exec", "sleep", "echo", "fail"};
  return types;
}

void add_builtin_handlers(agent& a, const exec_options& exec) {
  a.add_handler("exec", make_exec(exec));
  a.add_handler("sleep", sleep);
  a.add_handler("echo", echo);
  a.add_handler("fail", fail);
}

}  // namespace dispatch::worker::handlers
