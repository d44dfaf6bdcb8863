// worker-agent: serves dispatcherd's work endpoint with the built-in handlers.
// Parses the command line (and optional INI file), wires SIGINT/SIGTERM to agent::stop() and runs
// the agent until it stops. Exit codes: 0 after a clean stop, 2 for a bad option, 1 otherwise.
#include <cstdio>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "worker-agent/agent.hpp"
#include "worker-agent/builtin_handlers.hpp"
#include "protocol/duration.hpp"
#include "security/credentials_file.hpp"
#include "worker-agent/signal_watcher.hpp"

namespace {

using dispatch::parse_duration;

// More job threads than this is a typo rather than a plan.
constexpr std::uint32_t max_capacity = 1024;

// Accepts a duration between `min` and `max` inclusive; the message names the expected form.
CLI::Validator duration_between(std::chrono::milliseconds min, std::chrono::milliseconds max) {
  using dispatch::format_duration;
  const std::string range = format_duration(min) + ".." + format_duration(max);
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        const auto d = parse_duration(text);
        if (!d) return "'" + text + "' is not a duration like 500ms, 10s, 2m or 1h";
        if (*d < min || *d > max) return "'" + text + "' is outside " + range;
        return {};
      },
      "DURATION in " + range);
}

struct settings {
  dispatch::worker::agent_options agent;
  std::string pool = "active";
  std::string exec_timeout = "60s";
  std::string fetch_wait = "1s";
  std::string log_level = "info";
  std::string token;
  std::string token_file;
  std::string curve_secret_key;
  std::string curve_server_key;
};

}  // namespace

int main(int argc, char** argv) {
  namespace worker = dispatch::worker;

  settings s;
  s.agent.types = worker::handlers::builtin_types();

  CLI::App app{"Runs dispatch jobs for dispatcherd with the built-in handlers exec, sleep, echo "
               "and fail.",
               "worker-agent"};
  app.set_config("--config", "", "Read options from this INI file (keys are the long option names)");
  app.add_option("--endpoint", s.agent.endpoint, "Work endpoint of dispatcherd")
      ->capture_default_str();
  app.add_option("--id", s.agent.id, "Worker name, unique per dispatcher (default: hostname-pid)");
  app.add_option("--capacity", s.agent.capacity, "Jobs run at once")
      ->check(CLI::Range(std::uint32_t{1}, max_capacity))
      ->capture_default_str();
  app.add_option("--pool", s.pool, "Worker pool")
      ->check(CLI::IsMember({"active", "reserve"}))
      ->capture_default_str();
  app.add_option("--types", s.agent.types, "Task types served, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(worker::handlers::builtin_types()))
      ->capture_default_str();
  app.add_option("--tags", s.agent.tags, "Tags of this worker, comma-separated")->delimiter(',');
  app.add_option("--exec-timeout", s.exec_timeout, "Kill an exec job running longer than this")
      ->check(duration_between(std::chrono::milliseconds(1), std::chrono::hours(24 * 365)))
      ->capture_default_str();
  app.add_option("--fetch-wait", s.fetch_wait, "How long one fetch waits at the dispatcher for jobs")
      ->check(duration_between(std::chrono::milliseconds(0), std::chrono::seconds(60)))
      ->capture_default_str();
  app.add_option("--token", s.token,
                 "Worker token (default: --token-file, $DISPATCH_TOKEN, or the worker line of "
                 "./data/credentials)");
  app.add_option("--token-file", s.token_file,
                 "File with the token, alone or as a '<role> <token>' line");
  auto* curve_key = app.add_option("--curve-secret-key", s.curve_secret_key,
                                   "Connect with CURVE, with this client secret key file");
  app.add_option("--curve-server-key", s.curve_server_key,
                 "With --curve-secret-key: the dispatcher's public key (file or Z85 text)")
      ->needs(curve_key);
  curve_key->needs("--curve-server-key");
  app.add_option("--log-level", s.log_level, "Log level (to stderr)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help comes here too, with exit code 0; every real error exits with 2.
    return app.exit(e) == 0 ? 0 : 2;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("worker-agent"));
  spdlog::set_level(spdlog::level::from_str(s.log_level));

  std::string credential_error;
  if (auto token = dispatch::security::resolve_client_token(dispatch::security::role::worker,
                                                            s.token, s.token_file, credential_error))
    s.agent.token = std::move(*token);
  else if (!credential_error.empty()) {
    std::cerr << "worker-agent: " << credential_error << "\n";
    return 2;
  }

  if (!s.curve_secret_key.empty()) {
    dispatch::security::curve_client_keys keys;
    if (!dispatch::security::load_curve_client_keys(s.curve_secret_key, s.curve_server_key, keys,
                                                    credential_error)) {
      std::cerr << "worker-agent: " << credential_error << "\n";
      return 2;
    }
    s.agent.curve = std::move(keys);
  }

  // The validators above guarantee these parse.
  s.agent.pool = *dispatch::parse_worker_pool(s.pool);
  s.agent.fetch_wait = *parse_duration(s.fetch_wait);
  worker::handlers::exec_options exec;
  exec.timeout = *parse_duration(s.exec_timeout);

  try {
    worker::agent agent(s.agent);
    worker::handlers::add_builtin_handlers(agent, exec);
    // After the agent (whose constructor starts no thread), before run() (which does).
    worker::signal_watcher signals([&agent](int sig) {
      spdlog::debug("received signal {}", sig);
      agent.stop();
    });
    return agent.run();
  } catch (const std::invalid_argument& e) {
    std::cerr << "worker-agent: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
