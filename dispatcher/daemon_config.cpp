#include "dispatcher/daemon_config.hpp"

#include <CLI/CLI.hpp>

#include "persistence/cpu_pinning.hpp"
#include "protocol/duration.hpp"

namespace dispatch {
namespace {

// Durations are read as text and converted after parsing, so that the error names the option.
struct duration_option {
  std::string text;
  std::chrono::milliseconds* target;
};

const CLI::Validator duration_check(
    [](std::string& text) -> std::string {
      return parse_duration(text) ? std::string()
                                  : "'" + text + "' is not a duration (use e.g. 500ms, 10s, 2m)";
    },
    "DURATION");

}  // namespace

std::optional<int> parse_daemon_config(int argc, char** argv, daemon_config& out) {
  CLI::App app{"dispatcherd: the dispatch work dispatcher daemon"};
  app.set_config("--config", "", "Read options from this INI file (command line wins)");
  app.get_config_ptr()->type_name("FILE");

  std::string durability = "wal";
  duration_option durations[] = {
      {format_duration(out.scale_interval), &out.scale_interval},
      {format_duration(out.reserve_cooldown), &out.reserve_cooldown},
      {format_duration(out.heartbeat), &out.heartbeat},
      {format_duration(out.recovery_grace), &out.recovery_grace},
      {format_duration(out.retry_base), &out.retry_base},
      {format_duration(out.retry_cap), &out.retry_cap},
      {format_duration(out.idempotency_window), &out.idempotency_window},
      {format_duration(out.retention), &out.retention},
      {format_duration(out.event_retention), &out.event_retention},
      {format_duration(out.peers.idle), &out.peers.idle},
  };
  std::string auth = out.auth ? "on" : "off";

  app.add_option("--data-dir", out.data_dir, "Directory of the RocksDB store")->capture_default_str();
  app.add_option("--work-endpoint", out.work_endpoint, "ZeroMQ endpoint for workers and producers")
      ->capture_default_str();
  app.add_option("--admin-endpoint", out.admin_endpoint, "ZeroMQ endpoint for dispatchctl")
      ->capture_default_str();
  app.add_option("--scale-interval", durations[0].text,
                 "Engage at most one reserve worker per interval while tasks back up")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--reserve-cooldown", durations[1].text,
                 "Release an engaged reserve worker after it was idle this long")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--heartbeat", durations[2].text, "Heartbeat interval asked of workers")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--liveness", out.liveness, "Missed heartbeats before a worker is lost")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  app.add_option("--recovery-grace", durations[3].text,
                 "After a restart, how long running tasks wait for their worker to report them")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--retry-base", durations[4].text,
                 "Backoff before the second attempt; doubles per attempt, with jitter")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--retry-cap", durations[5].text, "Longest backoff between attempts")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--idempotency-window", durations[6].text,
                 "How long an idempotency key keeps returning its first task")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--retention", durations[7].text,
                 "Finished tasks are removed this long after they finished")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--metrics-address", out.metrics_address,
                 "Serve Prometheus /metrics on HOST:PORT (port 0 turns it off)")
      ->capture_default_str();
  app.add_option("--events-endpoint", out.events_endpoint,
                 "ZeroMQ PUB endpoint for events, topic = event kind (\"off\" turns it off)")
      ->capture_default_str();
  app.add_option("--event-retention", durations[8].text, "Events are kept this long")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--event-command", out.event_command,
                 "Run this shell command for every event, with the event as JSON on stdin");
  app.add_option("--durability", durability,
                 "wal: survive a process crash; fsync: also survive power loss")
      ->check(CLI::IsMember({"wal", "fsync"}))
      ->capture_default_str();
  app.add_option("--resident-tasks", out.resident_tasks,
                 "Live tasks kept whole in memory; pending tasks beyond them keep only their id "
                 "there and are read back from the store when dispatched")
      ->check(CLI::Range(std::size_t{0}, std::size_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--auth", auth, "on: every request needs a token (see docs/SECURITY.md)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--tokens-file", out.tokens_file,
                 "Accepted token hashes, one '<role> <projects> sha256:<hex> [label]' per line "
                 "(default DATA_DIR/tokens, made with fresh tokens on the first start)");
  app.add_option("--token-hash", out.token_hashes,
                 "One more accepted token, in the tokens file's line format (repeatable)");
  auto* curve_key =
      app.add_option("--curve-secret-key", out.curve_secret_key,
                     "Encrypt the work and admin endpoints with CURVE, with this server secret key "
                     "file (dispatchctl keygen makes one)");
  app.add_option("--curve-allow", out.curve_allow,
                 "With --curve-secret-key: file of client public keys allowed to connect")
      ->needs(curve_key);
  curve_key->needs("--curve-allow");
  app.add_option("--max-frame", out.max_frame, "Largest accepted message body in bytes")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{256} << 20))
      ->capture_default_str();
  // The upper bounds are the protocol's own caps (docs/PROTOCOL.md): these can only tighten them.
  app.add_option("--max-payload", out.limits.max_payload,
                 "Largest task payload or completion result in bytes")
      ->check(CLI::Range(std::size_t{0}, std::size_t{256} << 20))
      ->capture_default_str();
  app.add_option("--max-batch", out.limits.max_batch,
                 "Most tasks per submit and results per report; fetches and queries asking for "
                 "more get this many")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}))
      ->capture_default_str();
  app.add_option("--max-name", out.limits.max_name,
                 "Longest project, type, worker or tag name in bytes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{128}))
      ->capture_default_str();
  app.add_option("--max-text", out.limits.max_text,
                 "Longest title, description, error or search text in bytes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  app.add_option("--max-tags", out.limits.max_tags, "Most tags per task or worker")
      ->check(CLI::Range(std::size_t{0}, std::size_t{32}))
      ->capture_default_str();
  app.add_option("--max-rate", out.peers.rate,
                 "Messages a second one connection may send (0 = unlimited)")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  app.add_option("--max-peers", out.peers.max_peers, "Connections served at once")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
      ->capture_default_str();
  app.add_option("--peer-idle", durations[9].text,
                 "A connection silent this long no longer counts against --max-peers")
      ->check(duration_check)
      ->capture_default_str();
  app.add_option("--threads", out.threads, "Actor scheduler threads (0 = one per core)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{256}))
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--storage-cpus",
         [&out](const std::string& text) {
           std::string error;
           if (!persistence::parse_cpu_list(text, out.storage_cpus, error))
             throw CLI::ValidationError("--storage-cpus", error);
         },
         "Keep the store's threads (writer, reader, notifier, RocksDB flushes and "
         "compactions) on these CPUs, e.g. 1 or 2-3 (default: anywhere)")
      ->type_name("CPUS");
  app.add_option("--log-level", out.log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help or the error
    return code == 0 ? 0 : 2;
  }
  for (auto& d : durations) *d.target = *parse_duration(d.text);
  if (out.events_endpoint == "off") out.events_endpoint.clear();
  out.auth = auth == "on";
  if (out.tokens_file.empty()) out.tokens_file = out.data_dir + "/tokens";
  out.durability =
      durability == "fsync" ? persistence::durability::fsync : persistence::durability::wal;
  return std::nullopt;
}

}  // namespace dispatch
