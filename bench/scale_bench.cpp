// Section 5 of the suite: how dispatcherd behaves at scale.
//   backlog   queue M pending tasks with no worker: RSS per queued task (VmRSS after - before,
//             over M), then the dispatch rate of K workers draining part of that backlog
//   recovery  the backlog topped up to M again, SIGTERM, start again on the same data dir: time
//             from the process start until a waiting worker holds the first job
//   idle      W registered idle workers (long-poll fetch outstanding, heartbeats at the
//             announced interval): the daemon's CPU over a few seconds, % of one core
//   finished  a store of F finished tasks (written directly with persistence::task_store):
//             daemon start until `stats` answers, and a `tasks` query with status pending
// Fewer repetitions than elsewhere by default (one): each step is long and its figures large.
//
//   scale_bench [--quick] [--backlog M] [--idle-workers W] [--finished F] [--reps R]
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include "bench/scale/finished_store.hpp"
#include "bench/support/daemon.hpp"
#include "bench/support/main.hpp"
#include "bench/support/options.hpp"
#include "bench/support/producer.hpp"
#include "bench/support/report.hpp"
#include "bench/support/worker_fleet.hpp"

namespace dispatch::bench {
namespace {

struct scale_options {
  std::size_t backlog = 1'000'000;
  std::size_t drain = 100'000;
  std::size_t drain_workers = 4;
  std::size_t idle_workers = 1'000;
  double idle_seconds = 10;
  std::size_t finished = 1'000'000;
  std::size_t pending_in_store = 100;
  std::size_t queries = 5;
};

double seconds_between(std::int64_t from_ns, std::int64_t to_ns) {
  return static_cast<double>(to_ns - from_ns) / 1e9;
}

std::int64_t ns_of(bench_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

fleet_options workers_of(const dispatcher_daemon& d, std::size_t n, std::uint32_t capacity,
                         const std::string& prefix) {
  fleet_options f;
  f.endpoint = d.work_endpoint();
  f.token = d.tokens().token(role::worker);
  f.workers = n;
  f.capacity = capacity;
  f.id_prefix = prefix;
  return f;
}

struct backlog_figures {
  double bytes_per_task = 0;
  double submit_per_s = 0;
  double dispatch_per_s = 0;
  double recovery_s = 0;
  double stop_s = 0;
  bool stop_killed = false;  // SIGTERM was not enough (stop_s is then the 20 s grace)
};

backlog_figures run_backlog(zmq::context_t& context, const common_options& o,
                            const scale_options& s) {
  backlog_figures out;
  dispatcher_daemon daemon({o.dispatcherd, "wal", "", o.daemon_args()});
  // The daemon's baseline settles within a moment of its start.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::uint64_t before = resident_bytes(daemon.pid());
  {
    wire_client producer(context, daemon.work_endpoint(), daemon.tokens().token(role::producer));
    priority_source priorities;
    const submit_timing t =
        submit_all(producer, s.backlog, o.batch, o.in_flight, o.payload, priorities);
    out.submit_per_s =
        static_cast<double>(s.backlog) / seconds_between(t.first_send_ns, t.last_ack_ns);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::uint64_t after = resident_bytes(daemon.pid());
  out.bytes_per_task =
      (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(s.backlog);

  {
    worker_fleet fleet(context, workers_of(daemon, s.drain_workers, o.capacity, "drain"));
    const std::int64_t start = now_ns();
    const std::int64_t end = fleet.wait_completed(s.drain, std::chrono::seconds(60));
    fleet.stop();
    out.dispatch_per_s = static_cast<double>(s.drain) / seconds_between(start, end);
  }
  {
    // Topped up again, so the restart below recovers the whole backlog.
    wire_client producer(context, daemon.work_endpoint(), daemon.tokens().token(role::producer));
    priority_source priorities;
    submit_all(producer, s.drain, o.batch, o.in_flight, o.payload, priorities);
  }

  // Recovery: the worker is connecting while the daemon starts, as a fleet would be.
  const auto stop_start = bench_clock::now();
  out.stop_killed = !daemon.stop();
  out.stop_s = std::chrono::duration<double>(bench_clock::now() - stop_start).count();
  daemon.spawn();
  const std::int64_t spawned = ns_of(daemon.last_spawn());
  worker_fleet waiting(context, workers_of(daemon, 1, o.capacity, "recovery"));
  if (!wait_until([&] { return waiting.first_job_ns() != 0; }, std::chrono::seconds(300)))
    throw std::runtime_error("no job reached the worker within 300 s of the restart");
  out.recovery_s = seconds_between(spawned, waiting.first_job_ns());
  waiting.stop();
  return out;
}

double run_idle(zmq::context_t& context, const common_options& o, const scale_options& s) {
  dispatcher_daemon daemon({o.dispatcherd, "wal", "", o.daemon_args()});
  fleet_options f = workers_of(daemon, s.idle_workers, o.capacity, "idle");
  f.threads = 4;  // a few threads poll all connections: the load is on the daemon
  worker_fleet fleet(context, f);
  // Registrations are over; let the first heartbeats pass before measuring.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double cpu_before = cpu_seconds(daemon.pid());
  const auto start = bench_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(s.idle_seconds));
  const double cpu = cpu_seconds(daemon.pid()) - cpu_before;
  const double wall = std::chrono::duration<double>(bench_clock::now() - start).count();
  fleet.stop();
  return 100 * cpu / wall;
}

struct finished_figures {
  double build_s = 0;
  double start_s = 0;
  std::vector<double> query_ms;
  std::size_t pending_found = 0;
};

finished_figures run_finished(const common_options& o, const scale_options& s) {
  finished_figures out;
  scratch_dir dir("dispatch-finished");
  const std::string data = dir.path() + "/data";
  out.build_s = build_finished_store(data, s.finished, s.pending_in_store, o.payload);
  dispatcher_daemon daemon({o.dispatcherd, "wal", data, o.daemon_args()});
  out.start_s = std::chrono::duration<double>(daemon.last_start_duration()).count();
  zmq::context_t context(1);
  wire_client admin(context, daemon.admin_endpoint(), daemon.tokens().token(role::admin));
  for (std::size_t q = 0; q < s.queries; ++q) {
    protocol::list_tasks query;
    query.status = task_status::pending;
    query.limit = 100;
    const auto start = bench_clock::now();
    const auto reply = admin.call(query, std::chrono::seconds(120));
    out.query_ms.push_back(
        std::chrono::duration<double, std::milli>(bench_clock::now() - start).count());
    out.pending_found = expect<protocol::task_list>(reply).tasks.size();
  }
  return out;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app("dispatcherd at scale: backlog, recovery, idle workers, a large store");
  common_options o;
  scale_options s;
  add_common_options(app, o);
  app.add_option("--backlog", s.backlog, "Pending tasks queued with no worker");
  app.add_option("--drain", s.drain, "Tasks dispatched from the backlog to measure the rate");
  app.add_option("--idle-workers", s.idle_workers, "Registered idle workers");
  app.add_option("--idle-seconds", s.idle_seconds, "How long the idle CPU is measured");
  app.add_option("--finished", s.finished, "Finished tasks in the large store (5000000 for 5M)");
  CLI11_PARSE(app, argc, argv);
  apply_quick(app, o);
  if (app.count("--reps") == 0) o.repetitions = 1;
  if (o.quick) {
    if (app.count("--backlog") == 0) s.backlog = 100'000;
    if (app.count("--drain") == 0) s.drain = 20'000;
    if (app.count("--idle-workers") == 0) s.idle_workers = 200;
    if (app.count("--idle-seconds") == 0) s.idle_seconds = 5;
    if (app.count("--finished") == 0) s.finished = 100'000;
  }
  s.drain = std::min(s.drain, s.backlog);
  raise_open_file_limit();

  report rep("scale", o.repetitions);
  rep.params() = {{"storage_cpus", o.storage_cpus},
                  {"backlog", s.backlog},
                  {"drain", s.drain},
                  {"drain_workers", s.drain_workers},
                  {"idle_workers", s.idle_workers},
                  {"idle_seconds", s.idle_seconds},
                  {"finished", s.finished},
                  {"pending_in_store", s.pending_in_store},
                  {"payload_bytes", o.payload},
                  {"capacity", o.capacity}};
  rep.note("rss_per_task: (VmRSS after queueing - VmRSS before) / backlog, /proc/<pid>/status");
  rep.note(
      "dispatch_per_s: completions of drain_workers workers over the first `drain` tasks "
      "of the backlog");
  rep.note(
      "recovery_s: SIGTERM, then from the new process's spawn until a worker that was "
      "connecting meanwhile holds its first job");
  rep.note(
      "idle_cpu_percent: (utime+stime) / wall over idle_seconds, % of one core, with "
      "idle_workers registered, each with a long-poll fetch outstanding and heartbeating");
  rep.note(
      "finished store: written directly with persistence::task_store; start_s from spawn "
      "to the first `stats` answer; query: `tasks` status=pending limit=100, each of "
      "`queries` calls a sample (the first is cold)");

  zmq::context_t context(2);
  // 1,000 worker sockets and more: above ZeroMQ's default of 1,023 sockets per context.
  context.set(zmq::ctxopt::max_sockets, 65536);

  std::vector<double> rss, submit, dispatch, recovery, stop, killed, idle, build, start, query;
  std::size_t pending_found = 0;
  for (int r = 0; r < o.repetitions; ++r) {
    std::printf("  backlog of %zu, repetition %d/%d ...\n", s.backlog, r + 1, o.repetitions);
    std::fflush(stdout);
    const backlog_figures b = run_backlog(context, o, s);
    rss.push_back(b.bytes_per_task);
    submit.push_back(b.submit_per_s);
    dispatch.push_back(b.dispatch_per_s);
    recovery.push_back(b.recovery_s);
    stop.push_back(b.stop_s);
    killed.push_back(b.stop_killed ? 1 : 0);
    std::printf("  %zu idle workers ...\n", s.idle_workers);
    std::fflush(stdout);
    idle.push_back(run_idle(context, o, s));
    std::printf("  store of %zu finished tasks ...\n", s.finished);
    std::fflush(stdout);
    finished_figures f = run_finished(o, s);
    build.push_back(f.build_s);
    start.push_back(f.start_s);
    query.insert(query.end(), f.query_ms.begin(), f.query_ms.end());
    pending_found = f.pending_found;
  }

  auto& bl = rep.add("backlog", {{"tasks", s.backlog}});
  bl.figures["rss_bytes_per_task"] = summarize(rss);
  bl.figures["submit_per_s"] = summarize(submit);
  bl.figures["dispatch_per_s"] = summarize(dispatch);
  auto& rc = rep.add("recovery", {{"pending_at_restart", s.backlog}});
  rc.figures["recovery_s"] = summarize(recovery);
  rc.figures["stop_s"] = summarize(stop);
  rc.figures["stop_killed"] = summarize(killed);
  auto& id = rep.add("idle workers", {{"workers", s.idle_workers}});
  id.figures["idle_cpu_percent"] = summarize(idle);
  auto& fs = rep.add("finished store", {{"finished", s.finished}, {"pending", s.pending_in_store}});
  fs.figures["build_s"] = summarize(build);
  fs.figures["start_s"] = summarize(start);
  fs.figures["pending_query_ms"] = summarize(query);

  table out({"figure", "value", "what"});
  out.row({"RSS per queued task", format(summarize(rss)) + " B",
           std::to_string(s.backlog) + " pending, no workers"});
  out.row({"submit rate", format(summarize(submit)) + "/s", "while queueing the backlog"});
  out.row({"dispatch rate", format(summarize(dispatch)) + "/s",
           std::to_string(s.drain_workers) + " workers, " + std::to_string(s.drain) +
               " tasks from the backlog"});
  const bool any_killed = summarize(killed).max > 0;
  out.row({"stop (SIGTERM)", format(summarize(stop), 2) + " s",
           any_killed ? "did NOT exit: killed after the 20 s grace" : "until the process exited"});
  out.row({"recovery", format(summarize(recovery), 2) + " s",
           "spawn -> first job held, " + std::to_string(s.backlog) + " pending"});
  out.row({"idle CPU", format(summarize(idle), 1) + " %",
           std::to_string(s.idle_workers) + " idle workers, % of one core"});
  out.row({"store build", format(summarize(build), 1) + " s",
           std::to_string(s.finished) + " finished tasks, written directly"});
  out.row({"start", format(summarize(start), 2) + " s", "spawn -> `stats` answered"});
  out.row({"pending query", format(summarize(query), 1) + " ms",
           "`tasks` status=pending limit 100 (" + std::to_string(pending_found) + " found)"});
  std::printf("\nScale (%s store of %zu finished tasks); median [min..max] of %d\n",
              s.finished >= 5'000'000 ? "full" : "reduced", s.finished, o.repetitions);
  publish(out, rep, o.out_dir);
  return 0;
}

}  // namespace dispatch::bench

int main(int argc, char** argv) {
  return dispatch::bench::guarded_main("scale_bench", dispatch::bench::run, argc, argv);
}
