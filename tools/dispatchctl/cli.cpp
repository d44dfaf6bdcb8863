#include "dispatchctl/cli.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <memory>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "dispatchctl/time_format.hpp"
#include "protocol/duration.hpp"
#include "protocol/wall_clock.hpp"

namespace dispatch::ctl {
namespace {

constexpr const char* footer_text = R"(Exit status: 0 success, 1 the dispatcher refused the request or did not answer,
2 bad command line.

Options before the command may also follow it: 'dispatchctl tasks --json' and
'dispatchctl --json tasks' are the same.

--json output (stable; scripts may rely on it):
  task      {"id","project","type","priority","status","worker","attempts","failures",
             "max_attempts","timeout_ms","tags","idempotency_key","created_at",
             "assigned_at","finished_at","run_at","deadline","overdue",
             "lease_expires_at","error","title","description","payload","result"}
            worker is null when no worker held the task, idempotency_key when
            the task has none; created_at, assigned_at, finished_at, run_at,
            deadline and lease_expires_at are RFC 3339 UTC with milliseconds
            ("2026-11-21T05:40:25.123Z") or null when unset. overdue is a bool.
            payload and result are strings when their bytes are valid UTF-8;
            otherwise they are null and payload_base64 / result_base64 hold
            the bytes in base64.
  submit    {"id": N}
  tasks     array of task objects (with --all too: streamed page by page)
  report    not --json but --format: see 'dispatchctl report --help'
  workers   array of {"id","pool","state","capacity","running","completed",
            "failed","types","tags","last_heartbeat"}
  projects  array of {"name","paused","max_inflight","weight","pending",
            "running","completed","failed","dead","cancelled","scheduled"}
  stats     {"tasks": {status: count}, "workers": [...], "projects": [...],
             "reserve": {"engagements","releases"},
             "throughput": {"last_minute","last_hour"} (tasks completed),
             "queue_wait_ms": {"p50","p90","p99"} (last 10,000 assignments)}
            every status is present in the counts, 0 when there is none.
  pause, resume, configure, cancel, retry, remove, drain, undrain, retire, pool
            {"ok": true})";

constexpr const char* sub_footer_text =
    "--endpoint, --timeout and --json may also be given here; see 'dispatchctl --help' for\n"
    "the --json output shapes and exit codes.";

constexpr const char* tasks_footer_text =
    "TIME is RFC 3339 UTC (2026-11-21T10:00:00Z), integer ms since the epoch, or +DURATION /\n"
    "-DURATION counted from now (-1h: an hour ago). Ranges are [from, to); a time range only\n"
    "matches tasks that have that time (a finished range: finished tasks).\n"
    "--limit is the page size. When there may be more, the table ends with the line\n"
    "'next page: --after ID'; with --json, a full page may have more: continue with --after\n"
    "the last id. --all follows the pages to the end.\n"
    "--endpoint, --timeout and --json may also be given here; see 'dispatchctl --help' for\n"
    "the --json output shapes and exit codes.";

constexpr const char* report_footer_text =
    "Every task that finished in [--from, --to), oldest (lowest id) first, then totals per\n"
    "project and per worker. TIME as for 'tasks': RFC 3339 UTC, ms since the epoch, or\n"
    "+/-DURATION from now. Rows are written as the pages arrive; totals need memory per\n"
    "project and worker only.\n"
    "csv (default): a header row, one row per task:\n"
    "  id,project,type,worker,status,attempts,failures,created_at,assigned_at,finished_at,\n"
    "  wait_ms,run_ms,error\n"
    "then an empty line and a second table, totals:\n"
    "  scope,name,tasks,completed,failed,dead,cancelled,run_ms_total,run_ms_avg\n"
    "  one 'all' row, then one 'project' row per project and one 'worker' row per worker\n"
    "  (name empty for tasks no worker held), each group sorted by name.\n"
    "  RFC 4180 quoting (fields with , \" or a line break are quoted, \" doubled); lines end\n"
    "  in \\n. Times are RFC 3339 UTC, empty when unset; wait_ms = assigned_at - created_at,\n"
    "  run_ms = finished_at - assigned_at, both empty for a task never assigned; run_ms_avg\n"
    "  is rounded to whole ms, empty with no run_ms.\n"
    "json (or --json): one object, written as it goes, one task per line:\n"
    "  {\"tasks\": [{row}, ...], \"totals\": {\"all\": {totals}, \"projects\": [{\"project\",\n"
    "  totals...}], \"workers\": [{\"worker\", totals...}]}}\n"
    "  with the csv's names as keys; unset times, wait_ms, run_ms, run_ms_avg and a missing\n"
    "  worker are null.\n"
    "If a page cannot be fetched the output stops where it is and the exit status is 1.\n"
    "--endpoint and --timeout (per page) may also be given here.";

constexpr const char* submit_footer_text =
    "TIME is RFC 3339 UTC (2026-11-21T10:00:00Z, 2026-11-21T10:00:00.250Z) or integer ms\n"
    "since the epoch; --deadline also takes +DURATION, counted from now.\n"
    "--endpoint, --timeout and --json may also be given here; see 'dispatchctl --help' for\n"
    "the --json output shapes and exit codes.";

// The protocol's bounds for timeout_ms and delay_ms (docs/PROTOCOL.md): a week.
constexpr std::int64_t max_lease_ms = 7LL * 24 * 3600 * 1000;
constexpr std::size_t max_idempotency_key = 256;

// Decimal only: CLI11's own conversion goes through strtoull, which takes "0x10", "010" as
// octal and wraps "-1" around for unsigned types; none of that belongs in an id or a count.
template <class T>
std::optional<T> parse_integer(std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

template <class T>
CLI::Validator integer_in(T min, T max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        const auto value = parse_integer<T>(text);
        if (value && *value >= min && *value <= max) return {};
        return "expected an integer in " + std::to_string(min) + ".." + std::to_string(max) +
               ", got '" + text + "'";
      },
      "");
}

CLI::Validator task_id_check() {
  return integer_in<task_id>(1, std::numeric_limits<task_id>::max());
}

CLI::Validator status_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_task_status(text)) return {};
        std::string names;
        for (int i = 0; i < task_status_count; ++i)
          names += std::string(i == 0 ? "" : ", ") +
                   std::string(to_string(static_cast<task_status>(i)));
        return "unknown status '" + text + "' (expected one of " + names + ")";
      },
      "");
}

// A duration within min_ms..max_ms, for task fields; the message names the allowed range.
CLI::Validator duration_in(std::int64_t min_ms, std::int64_t max_ms) {
  return CLI::Validator(
      [min_ms, max_ms](std::string& text) -> std::string {
        const auto d = parse_duration(text);
        if (d && d->count() >= min_ms && d->count() <= max_ms) return {};
        return "bad duration '" + text + "' (expected " +
               format_duration(std::chrono::milliseconds(min_ms)) + ".." +
               format_duration(std::chrono::milliseconds(max_ms)) +
               ", e.g. 500ms, 30s, 5m, 2h; a bare number is ms)";
      },
      "");
}

CLI::Validator time_check(millis now, bool relative_allowed) {
  return CLI::Validator(
      [now, relative_allowed](std::string& text) -> std::string {
        if (parse_time_arg(text, now, relative_allowed)) return {};
        return "bad time '" + text + "' (expected RFC 3339 UTC like 2026-11-21T10:00:00Z" +
               (relative_allowed ? ", ms since the epoch, or +DURATION like +10m)"
                                 : " or ms since the epoch)");
      },
      "");
}

// A bound of a time filter: parse_time_filter's spellings.
CLI::Validator time_filter_check(millis now) {
  return CLI::Validator(
      [now](std::string& text) -> std::string {
        if (parse_time_filter(text, now)) return {};
        return "bad time '" + text +
               "' (expected RFC 3339 UTC like 2026-11-21T10:00:00Z, ms since the epoch, or "
               "+DURATION / -DURATION from now like -1h)";
      },
      "");
}

// Free text the protocol bounds in bytes (title, description, text search).
CLI::Validator bytes_at_most(std::size_t max) {
  return CLI::Validator(
      [max](std::string& text) -> std::string {
        if (text.size() <= max) return {};
        return "expected at most " + std::to_string(max) + " bytes, got " +
               std::to_string(text.size());
      },
      "");
}

CLI::Validator idempotency_key_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (!text.empty() && text.size() <= max_idempotency_key) return {};
        return "expected 1.." + std::to_string(max_idempotency_key) + " bytes, got " +
               std::to_string(text.size());
      },
      "");
}

CLI::Validator duration_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        // Zero would time out before the request is even sent.
        const auto d = parse_duration(text);
        if (d && d->count() > 0) return {};
        return "bad duration '" + text + "' (expected e.g. 500ms, 3s, 1m; a bare number is ms)";
      },
      "");
}

// Option values as CLI11 stores them. Numbers stay text until parsing succeeded; by then the
// validators above have vouched for them, so the conversion afterwards cannot fail.
struct raw_args {
  std::string timeout = "3s";
  protocol::task_spec spec;
  std::string priority = "0";
  std::string max_attempts = "3";
  std::string task_timeout = "5m";  // the protocol's default lease, 300000 ms
  std::optional<std::string> delay;
  std::optional<std::string> run_at;
  std::optional<std::string> deadline;
  std::optional<std::string> idempotency_key;
  std::string worker_name;
  std::string id;
  std::string project_name;
  std::optional<std::string> filter_project;
  std::optional<std::string> filter_status;
  std::string limit = "100";
  // tasks filters and paging, report bounds
  std::optional<std::string> filter_type;
  std::optional<std::string> filter_worker;
  std::optional<std::string> priority_min;
  std::optional<std::string> priority_max;
  std::optional<std::string> created_from;
  std::optional<std::string> created_to;
  std::optional<std::string> finished_from;
  std::optional<std::string> finished_to;
  std::string text;
  std::optional<std::string> after;
  bool oldest = false;
  bool all_pages = false;
  std::string report_from;
  std::string report_to;
  std::string report_format = "csv";
  std::optional<std::string> max_inflight;
  std::optional<std::string> weight;
};

std::string usage_failure(const CLI::Formatter& formatter, const CLI::App* app,
                          const CLI::Error& e) {
  // Point at the command the mistake was made in; its --help has the details. The full help
  // is not repeated here: it would bury the one line that matters.
  const CLI::App* where = app;
  std::string path = "dispatchctl";
  const auto selected = app->get_subcommands();
  if (!selected.empty()) {
    where = selected.front();
    path += " " + where->get_name();
  }
  std::string what = e.what();
  // CLI11 reports "A subcommand is required" both for a missing and a misspelt command.
  if (selected.empty() && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr)
    what = app->remaining().empty() ? "missing command"
                                    : "unknown command '" + app->remaining().front() + "'";
  return "dispatchctl: " + what + "\n" + formatter.make_usage(where, path) + "Run '" +
         path + " --help' for more information.\n";
}

}  // namespace

parse_result parse_args(int argc, const char* const* argv) {
  return parse_args(argc, argv, wall_now());
}

parse_result parse_args(int argc, const char* const* argv, millis now) {
  invocation inv;
  raw_args raw;

  CLI::App app{"Inspect and steer a dispatch dispatcher through its admin endpoint.",
               "dispatchctl"};
  // Shared with every subcommand (they copy the pointer when added) and with the failure
  // message, which needs the concrete Formatter for its usage line.
  auto formatter = std::make_shared<CLI::Formatter>();
  formatter->label("SUBCOMMAND", "COMMAND");
  app.formatter(formatter);
  // Subcommands inherit the root's group, which titles their section of the help.
  app.group("Commands");
  app.failure_message([formatter](const CLI::App* where, const CLI::Error& e) {
    return usage_failure(*formatter, where, e);
  });
  // Subcommands copy the footer current when they are added: they get this short one, the
  // root gets the full reference once they exist.
  app.footer(sub_footer_text);
  // Set before adding subcommands, which copy it: lets global options follow the command.
  app.fallthrough();
  app.require_subcommand(1);
  app.add_option("--endpoint", inv.endpoint, "Admin endpoint of the dispatcher")
      ->capture_default_str();
  app.add_option("--timeout", raw.timeout, "Give up after this long (e.g. 500ms, 3s, 1m)")
      ->check(duration_check())
      ->capture_default_str()
      ->type_name("DURATION");
  app.add_flag("--json", inv.json, "Print JSON instead of tables (shapes below)");
  app.add_option("--token", inv.token,
                 "Token to send (default: --token-file, $DISPATCH_TOKEN, or the admin line of "
                 "./data/credentials)");
  app.add_option("--token-file", inv.token_file,
                 "File with the token, alone or as a '<role> <token>' line (the admin one is used)");
  app.add_option("--curve-secret-key", inv.curve_secret_key,
                 "Connect with CURVE, with this client secret key file (see keygen)");
  app.add_option("--curve-server-key", inv.curve_server_key,
                 "With --curve-secret-key: the dispatcher's public key (file or Z85 text)");

  auto* submit = app.add_subcommand("submit", "Submit one task and print its id");
  submit->add_option("--project", raw.spec.project, "Project name")->required();
  submit->add_option("--type", raw.spec.type, "Task type")->required();
  submit->add_option("--priority", raw.priority, "Higher runs first (default 0)")
      ->check(integer_in<std::int32_t>(std::numeric_limits<std::int32_t>::min(),
                                       std::numeric_limits<std::int32_t>::max()))
      ->type_name("INT");
  submit->add_option("--payload", raw.spec.payload, "Payload text (default empty)");
  submit->add_option("--tags", raw.spec.tags, "Tags a worker must carry, comma-separated")
      ->delimiter(',')
      ->type_name("TAG,...");
  submit->add_option("--max-attempts", raw.max_attempts, "Attempts before the task is dead")
      ->check(integer_in<std::uint32_t>(1, 1000))  // the protocol's cap (docs/PROTOCOL.md)
      ->type_name("N")
      ->capture_default_str();
  // Not "--timeout": that is dispatchctl's own reply timeout, which may follow the command too.
  submit->add_option("--task-timeout", raw.task_timeout,
                     "Lease of one attempt; past it the attempt has failed")
      ->check(duration_in(1, max_lease_ms))
      ->type_name("DURATION")
      ->capture_default_str();
  auto* delay = submit->add_option("--delay", raw.delay, "Not before this long from now")
                    ->check(duration_in(0, max_lease_ms))
                    ->type_name("DURATION");
  submit->add_option("--run-at", raw.run_at, "Not before this time")
      ->check(time_check(now, false))
      ->type_name("TIME")
      // Both at once is ambiguous (the dispatcher would silently ignore the delay).
      ->excludes(delay);
  submit->add_option("--deadline", raw.deadline,
                     "Overdue if not completed by then (TIME or +DURATION)")
      ->check(time_check(now, true))
      ->type_name("TIME");
  submit->add_option("--idempotency-key", raw.idempotency_key,
                     "A repeated submit with this key in the project returns the first task")
      ->check(idempotency_key_check())
      ->type_name("KEY");
  submit->add_option("--title", raw.spec.title, "Short title for people and text search")
      ->check(bytes_at_most(256))
      ->type_name("TEXT");
  submit->add_option("--description", raw.spec.description, "Longer description, searchable")
      ->check(bytes_at_most(4096))
      ->type_name("TEXT");
  submit->footer(submit_footer_text);

  auto* task_cmd = app.add_subcommand("task", "Show one task");
  task_cmd->add_option("ID", raw.id, "Task id")->required()->check(task_id_check())->type_name("");

  auto* tasks = app.add_subcommand("tasks", "List tasks, newest first");
  tasks->add_option("--project", raw.filter_project, "Only this project");
  tasks->add_option("--status", raw.filter_status,
                    "Only this status: pending, scheduled, running, completed, failed, dead, "
                    "cancelled")
      ->check(status_check())
      ->type_name("STATUS");
  tasks->add_option("--type", raw.filter_type, "Only this task type");
  tasks->add_option("--worker", raw.filter_worker, "Only tasks this worker holds or last held");
  for (auto [flag, value, what] :
       {std::tuple{"--priority-min", &raw.priority_min, "Only this priority or higher"},
        std::tuple{"--priority-max", &raw.priority_max, "Only this priority or lower"}})
    tasks->add_option(flag, *value, what)
        ->check(integer_in<std::int32_t>(std::numeric_limits<std::int32_t>::min(),
                                         std::numeric_limits<std::int32_t>::max()))
        ->type_name("INT");
  for (auto [flag, value, what] :
       {std::tuple{"--created-from", &raw.created_from, "Only tasks created at or after TIME"},
        std::tuple{"--created-to", &raw.created_to, "Only tasks created before TIME"},
        std::tuple{"--finished-from", &raw.finished_from, "Only tasks finished at or after TIME"},
        std::tuple{"--finished-to", &raw.finished_to, "Only tasks finished before TIME"}})
    tasks->add_option(flag, *value, what)->check(time_filter_check(now))->type_name("TIME");
  tasks->add_option("--text", raw.text,
                    "Only tasks whose type, title or description contains TEXT (any case)")
      ->check(bytes_at_most(256))
      ->type_name("TEXT");
  tasks->add_option("--limit", raw.limit, "Page size: at most this many (1..10000)")
      ->check(integer_in<std::uint32_t>(1, 10000))
      ->type_name("N")
      ->capture_default_str();
  tasks->add_option("--after", raw.after, "Continue after this task id (a previous page's cursor)")
      ->check(task_id_check())
      ->type_name("ID");
  tasks->add_flag("--oldest", raw.oldest, "Oldest (lowest id) first");
  tasks->add_flag("--all", raw.all_pages, "Every page to the end, printed as it arrives");
  tasks->footer(tasks_footer_text);

  auto* workers = app.add_subcommand("workers", "List connected workers");
  auto* projects = app.add_subcommand("projects", "List projects and their task counts");
  auto* stats = app.add_subcommand("stats", "Task counts, workers, projects and reserve pool");
  auto* pause = app.add_subcommand("pause", "Stop assigning a project's tasks");
  pause->add_option("PROJECT", raw.project_name, "Project name")->required();
  auto* resume = app.add_subcommand("resume", "Assign a paused project's tasks again");
  resume->add_option("PROJECT", raw.project_name, "Project name")->required();
  auto* configure = app.add_subcommand("configure", "Change a project's limits");
  configure->add_option("PROJECT", raw.project_name, "Project name")->required();
  configure->add_option("--max-inflight", raw.max_inflight, "Running tasks at once, 0 = no cap")
      ->check(integer_in<std::uint32_t>(0, 1000000))
      ->type_name("N");
  configure->add_option("--weight", raw.weight, "Share against other projects at equal priority")
      ->check(integer_in<std::uint32_t>(1, 1000))
      ->type_name("N");
  auto* cancel = app.add_subcommand("cancel", "Cancel a task that has not finished");
  cancel->add_option("ID", raw.id, "Task id")->required()->check(task_id_check())->type_name("");
  auto* retry = app.add_subcommand("retry", "Queue a dead, failed or cancelled task again");
  retry->add_option("ID", raw.id, "Task id")->required()->check(task_id_check())->type_name("");
  auto* remove = app.add_subcommand("remove", "Delete a finished task");
  remove->add_option("ID", raw.id, "Task id")->required()->check(task_id_check())->type_name("");
  auto* drain = app.add_subcommand("drain", "Tell a worker to take no new work");
  drain->add_option("WORKER", raw.worker_name, "Worker id")->required();
  auto* undrain = app.add_subcommand("undrain", "Let a draining worker take work again");
  undrain->add_option("WORKER", raw.worker_name, "Worker id")->required();
  auto* retire = app.add_subcommand("retire", "Tell a worker to finish its tasks and leave");
  retire->add_option("WORKER", raw.worker_name, "Worker id")->required();
  auto* pool = app.add_subcommand("pool", "Move a worker to the active or the reserve pool");
  pool->add_option("WORKER", raw.worker_name, "Worker id")->required();
  std::string pool_name;
  pool->add_option("POOL", pool_name, "active or reserve")
      ->required()
      ->check(CLI::IsMember({"active", "reserve"}));

  // watch: kept in locals of its own rather than raw_args, so it stays apart from the rest.
  watch_options watch_opts;
  std::optional<std::string> watch_project;
  std::optional<std::string> watch_from;
  auto* watch = app.add_subcommand("watch", "Print events as they happen, until interrupted");
  watch->add_option("--events-endpoint", watch_opts.events_endpoint,
                    "Event (PUB) endpoint of the dispatcher")
      ->capture_default_str();
  watch->add_option("--project", watch_project, "Only this project's events");
  watch->add_option("--types", watch_opts.types,
                    "Only these kinds or kind prefixes, comma-separated (task.,worker.lost)")
      ->delimiter(',')
      ->type_name("KIND,...");
  watch->add_option("--from-seq", watch_from,
                    "First print the stored events after this seq (from --endpoint), then "
                    "follow live: nothing missed, nothing twice")
      ->check(integer_in<std::uint64_t>(0, std::numeric_limits<std::uint64_t>::max()))
      ->type_name("N");
  watch->footer(
      "One line per event: SEQ  TIME  KIND  task=.. project=.. worker=..  DETAIL (fields that\n"
      "are not set are left out). --json: one object per line, {\"seq\",\"kind\",\"at\",\"task\",\n"
      "\"project\",\"worker\",\"detail\"}; at is RFC 3339 UTC, task / project / worker null when\n"
      "not set. Runs until SIGINT or SIGTERM, then exits 0.\n"
      "--endpoint, --timeout and --json may also be given here.");

  auto* report = app.add_subcommand("report", "Tasks finished in a time range, with totals");
  report->add_option("--from", raw.report_from, "Finished at or after TIME")
      ->required()
      ->check(time_filter_check(now))
      ->type_name("TIME");
  report->add_option("--to", raw.report_to, "Finished before TIME")
      ->required()
      ->check(time_filter_check(now))
      ->type_name("TIME");
  report->add_option("--project", raw.filter_project, "Only this project");
  auto* report_format_option =
      report->add_option("--format", raw.report_format, "csv or json")
          ->check(CLI::IsMember({"csv", "json"}))
          ->capture_default_str()
          ->type_name("FORMAT");
  report->footer(report_footer_text);

  new_token_options token_opts;
  auto* token_cmd = app.add_subcommand(
      "token", "Make a new token and print it with the line to add to the tokens file");
  token_cmd->add_option("--role", token_opts.role, "admin, producer or worker")
      ->required()
      ->check(CLI::IsMember({"admin", "producer", "worker"}));
  token_cmd->add_option("--projects", token_opts.projects,
                        "Producer only: the projects it may use, comma-separated (default all)")
      ->delimiter(',')
      ->type_name("PROJECT,...");
  token_cmd->add_option("--label", token_opts.label, "Name of the token in the daemon's logs");
  token_cmd->footer(
      "Nothing is sent to the dispatcher. Give the token to the client, and add the printed\n"
      "line to the dispatcher's tokens file (or pass it with --token-hash); restart it to load.");

  keygen_options keygen_opts;
  auto* keygen = app.add_subcommand("keygen", "Make a CURVE key pair: PREFIX.key and PREFIX.pub");
  keygen->add_option("PREFIX", keygen_opts.prefix, "Path and name of the two files")->required();
  keygen->add_flag("--force", keygen_opts.force, "Replace existing files");
  keygen->footer(
      "Nothing is sent to the dispatcher. PREFIX.key is the secret key (created 0600, never\n"
      "share it); PREFIX.pub is the public key to give to the other side: clients need the\n"
      "dispatcher's, the dispatcher's --curve-allow file lists the clients'.");

  app.footer(footer_text);

  parse_result result;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out;
    std::ostringstream err;
    // CLI11 has its own exit codes per error; ours are 0 for help and 2 for any usage error.
    result.exit_code = app.exit(e, out, err) == 0 ? exit_ok : exit_usage;
    result.out = out.str();
    // CLI11 ends the help with the footer but no newline; the shell prompt would follow it.
    if (!result.out.empty() && result.out.back() != '\n') result.out += '\n';
    result.err = err.str();
    return result;
  }

  inv.timeout = *parse_duration(raw.timeout);
  if (app.got_subcommand(submit)) {
    raw.spec.priority = *parse_integer<std::int32_t>(raw.priority);
    raw.spec.max_attempts = *parse_integer<std::uint32_t>(raw.max_attempts);
    // The validators bounded both durations by a week, so they fit the uint32 fields.
    raw.spec.timeout_ms = static_cast<std::uint32_t>(parse_duration(raw.task_timeout)->count());
    if (raw.delay)
      raw.spec.delay_ms = static_cast<std::uint32_t>(parse_duration(*raw.delay)->count());
    if (raw.run_at) raw.spec.run_at = *parse_time_arg(*raw.run_at, now, false);
    if (raw.deadline) raw.spec.deadline = *parse_time_arg(*raw.deadline, now, true);
    if (raw.idempotency_key) raw.spec.idempotency_key = std::move(*raw.idempotency_key);
    // "--tags a,,b" or a trailing comma should not create empty tags.
    auto& tags = raw.spec.tags;
    tags.erase(std::remove(tags.begin(), tags.end(), std::string()), tags.end());
    inv.request = protocol::submit{{std::move(raw.spec)}};
  } else if (app.got_subcommand(report)) {
    protocol::list_tasks pages;
    pages.project = raw.filter_project;
    pages.finished_from = *parse_time_filter(raw.report_from, now);
    pages.finished_to = *parse_time_filter(raw.report_to, now);
    if (pages.finished_to <= pages.finished_from) {
      result.exit_code = exit_usage;
      result.err = "dispatchctl: report: --to must be later than --from\n";
      return result;
    }
    pages.oldest_first = true;
    pages.limit = report_page_size;
    inv.request = std::move(pages);
    report_options options;
    // --json asks for JSON too, unless --format says otherwise.
    const bool json = report_format_option->count() > 0 ? raw.report_format == "json" : inv.json;
    options.format = json ? report_format::json : report_format::csv;
    inv.report = options;
  } else if (app.got_subcommand(task_cmd)) {
    inv.request = protocol::get_task{*parse_integer<task_id>(raw.id)};
  } else if (app.got_subcommand(tasks)) {
    protocol::list_tasks list;
    list.project = raw.filter_project;
    if (raw.filter_status) list.status = parse_task_status(*raw.filter_status);
    list.limit = *parse_integer<std::uint32_t>(raw.limit);
    list.type = raw.filter_type;
    list.worker = raw.filter_worker;
    if (raw.priority_min) list.priority_min = parse_integer<std::int32_t>(*raw.priority_min);
    if (raw.priority_max) list.priority_max = parse_integer<std::int32_t>(*raw.priority_max);
    // The validators accepted these, so they parse; each is > 0, which the wire keeps apart
    // from "open".
    const auto time = [&](const std::optional<std::string>& text) {
      return text ? *parse_time_filter(*text, now) : millis{0};
    };
    list.created_from = time(raw.created_from);
    list.created_to = time(raw.created_to);
    list.finished_from = time(raw.finished_from);
    list.finished_to = time(raw.finished_to);
    list.text = raw.text;
    if (raw.after) list.after = *parse_integer<task_id>(*raw.after);
    list.oldest_first = raw.oldest;
    inv.all_pages = raw.all_pages;
    inv.request = list;
  } else if (app.got_subcommand(workers)) {
    inv.request = protocol::list_workers{};
  } else if (app.got_subcommand(projects)) {
    inv.request = protocol::list_projects{};
  } else if (app.got_subcommand(stats)) {
    inv.request = protocol::get_stats{};
  } else if (app.got_subcommand(pause)) {
    inv.request = protocol::pause_project{raw.project_name};
  } else if (app.got_subcommand(resume)) {
    inv.request = protocol::resume_project{raw.project_name};
  } else if (app.got_subcommand(configure)) {
    protocol::configure_project c;
    c.project = raw.project_name;
    if (raw.max_inflight) c.max_inflight = parse_integer<std::uint32_t>(*raw.max_inflight);
    if (raw.weight) c.weight = parse_integer<std::uint32_t>(*raw.weight);
    inv.request = std::move(c);
  } else if (app.got_subcommand(cancel)) {
    inv.request = protocol::cancel{*parse_integer<task_id>(raw.id)};
  } else if (app.got_subcommand(retry)) {
    inv.request = protocol::retry_task{*parse_integer<task_id>(raw.id)};
  } else if (app.got_subcommand(remove)) {
    inv.request = protocol::remove_task{*parse_integer<task_id>(raw.id)};
  } else if (app.got_subcommand(drain)) {
    inv.request = protocol::worker_order{raw.worker_name, "drain"};
  } else if (app.got_subcommand(undrain)) {
    inv.request = protocol::worker_order{raw.worker_name, "resume"};
  } else if (app.got_subcommand(retire)) {
    inv.request = protocol::worker_order{raw.worker_name, "stop"};
  } else if (app.got_subcommand(pool)) {
    inv.request = protocol::set_pool{raw.worker_name, *parse_worker_pool(pool_name)};
  } else if (app.got_subcommand(watch)) {
    watch_opts.project = std::move(watch_project);
    if (watch_from) watch_opts.from_seq = parse_integer<std::uint64_t>(*watch_from);
    // "--types a,,b" or a trailing comma should not subscribe to everything by accident.
    auto& types = watch_opts.types;
    types.erase(std::remove(types.begin(), types.end(), std::string()), types.end());
    inv.watch = std::move(watch_opts);
  } else if (app.got_subcommand(token_cmd)) {
    auto& projects = token_opts.projects;
    projects.erase(std::remove(projects.begin(), projects.end(), std::string()), projects.end());
    if (!projects.empty() && token_opts.role != "producer") {
      result.exit_code = exit_usage;
      result.err = "dispatchctl: token: --projects applies to producer tokens only\n";
      return result;
    }
    inv.new_token = std::move(token_opts);
  } else if (app.got_subcommand(keygen)) {
    inv.keygen = std::move(keygen_opts);
  }
  if (inv.curve_secret_key.empty() != inv.curve_server_key.empty()) {
    result.exit_code = exit_usage;
    result.err = "dispatchctl: --curve-secret-key and --curve-server-key go together\n";
    return result;
  }
  result.run = std::move(inv);
  return result;
}

}  // namespace dispatch::ctl
