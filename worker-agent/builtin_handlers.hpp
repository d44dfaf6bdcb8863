// The handlers shipped with worker-agent. Payloads and outcomes are documented in agent.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "worker-agent/agent.hpp"

namespace dispatch::worker::handlers {

struct exec_options {
  std::chrono::milliseconds timeout{60'000};  // the process group is killed after this
  std::size_t max_output = 1 << 20;           // bytes of output kept in the result
};

// Runs the payload with /bin/sh -c; see agent.hpp for the result format.
handler make_exec(exec_options options);

job_outcome sleep(const job& j, job_control& control);
job_outcome echo(const job& j, job_control& control);
job_outcome fail(const job& j, job_control& control);

// "exec", "sleep", "echo", "fail".
const std::vector<std::string>& builtin_types();

// Adds every built-in handler to `a`.
void add_builtin_handlers(agent& a, const exec_options& exec);

}  // namespace dispatch::worker::handlers
