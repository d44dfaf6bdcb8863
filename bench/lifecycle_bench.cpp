// Section 1 and 3 of the suite: lifecycle throughput of dispatcherd, and of beanstalkd under
// the same load.
//
// N tasks (payload bytes, random priorities) are submitted by one producer in submits of
// `batch`, several in flight, while K workers (capacity C, fetch max C, long poll) fetch and
// complete them over tcp loopback against a fresh dispatcherd. tasks/s counts from the first
// submit to the last completion acknowledged. The same is done with --durability fsync, and
// against beanstalkd (binlog on) with the bench's own client. Repetitions are interleaved
// (wal, fsync, beanstalkd for one K, then again), so a noisy moment on the shared machine hits
// all three alike, and "vs beanstalkd" is the ratio within each repetition.
//
//   lifecycle_bench [--quick] [--tasks N] [--reps R] [--workers 1,4,16] [--no-beanstalkd]
#include <cstdio>
#include <exception>
#include <string>

#include "bench/support/beanstalk_load.hpp"
#include "bench/support/beanstalkd_server.hpp"
#include "bench/support/daemon.hpp"
#include "bench/support/main.hpp"
#include "bench/support/options.hpp"
#include "bench/support/producer.hpp"
#include "bench/support/report.hpp"
#include "bench/support/worker_fleet.hpp"

namespace dispatch::bench {
namespace {

struct run_figures {
  double tasks_per_s = 0;   // first submit -> last completion acknowledged
  double submit_per_s = 0;  // first submit -> last submit acknowledged
};

run_figures run_dispatch(zmq::context_t& context, const common_options& o,
                         const std::string& durability, std::size_t workers) {
  dispatcher_daemon daemon({o.dispatcherd, durability, "", o.daemon_args()});
  fleet_options f;
  f.endpoint = daemon.work_endpoint();
  f.token = daemon.tokens().token(role::worker);
  f.workers = workers;
  f.threads = max_worker_threads;
  f.capacity = o.capacity;
  f.complete_each = o.complete_each;
  worker_fleet fleet(context, f);
  wire_client producer(context, daemon.work_endpoint(), daemon.tokens().token(role::producer));
  priority_source priorities;
  const submit_timing t =
      submit_all(producer, o.tasks, o.batch, o.in_flight, o.payload, priorities);
  const std::int64_t end = fleet.wait_completed(o.tasks, std::chrono::seconds(60));
  fleet.stop();
  const double n = static_cast<double>(o.tasks);
  return {n / (static_cast<double>(end - t.first_send_ns) / 1e9),
          n / (static_cast<double>(t.last_ack_ns - t.first_send_ns) / 1e9)};
}

double run_beanstalkd(const common_options& o, std::size_t workers) {
  beanstalkd_server server;
  beanstalk_load load;
  load.port = server.port();
  load.tasks = o.tasks;
  load.batch = o.batch;
  load.in_flight = o.in_flight;
  load.payload = o.payload;
  load.workers = workers;
  load.capacity = o.capacity;
  return static_cast<double>(o.tasks) / run_beanstalk_load(load);
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app("Lifecycle throughput: dispatcherd (wal, fsync) and beanstalkd");
  common_options o;
  bool no_beanstalkd = false;
  add_common_options(app, o);
  app.add_flag("--no-beanstalkd", no_beanstalkd, "Skip the beanstalkd comparison");
  CLI11_PARSE(app, argc, argv);
  apply_quick(app, o);
  raise_open_file_limit();

  report rep("lifecycle", o.repetitions);
  rep.params() = {{"storage_cpus", o.storage_cpus},
                  {"tasks", o.tasks},
                  {"batch", o.batch},
                  {"in_flight", o.in_flight},
                  {"payload_bytes", o.payload},
                  {"capacity", o.capacity},
                  {"fetch_max", o.capacity},
                  {"fetch_wait_ms", fleet_options{}.wait_ms},
                  {"completion", o.complete_each ? "complete per job" : "report per fetch"},
                  {"priorities", priority_levels},
                  {"max_worker_threads", max_worker_threads}};
  rep.note("tasks_per_s: from the first submit sent to the last completion acknowledged");
  rep.note(
      "beanstalkd: binlog on (-b), no fsync option; a worker of capacity C is C "
      "connections each holding one job (reserve, then delete + next reserve in one write)");
  rep.note("vs_beanstalkd: dispatch tasks/s divided by beanstalkd tasks/s of the same repetition");

  zmq::context_t context(2);
  table out({"system", "workers", "tasks/s", "submits/s", "vs beanstalkd"});
  for (std::size_t k : o.workers) {
    std::vector<double> wal, wal_submit, fsync, fsync_submit, bean, wal_ratio, fsync_ratio;
    for (int r = 0; r < o.repetitions; ++r) {
      std::printf("  K=%zu repetition %d/%d ...\n", k, r + 1, o.repetitions);
      std::fflush(stdout);
      const run_figures a = run_dispatch(context, o, "wal", k);
      wal.push_back(a.tasks_per_s);
      wal_submit.push_back(a.submit_per_s);
      const run_figures b = run_dispatch(context, o, "fsync", k);
      fsync.push_back(b.tasks_per_s);
      fsync_submit.push_back(b.submit_per_s);
      if (!no_beanstalkd) {
        bean.push_back(run_beanstalkd(o, k));
        wal_ratio.push_back(a.tasks_per_s / bean.back());
        fsync_ratio.push_back(b.tasks_per_s / bean.back());
      }
    }
    auto& rw = rep.add("dispatch wal K=" + std::to_string(k),
                       {{"system", "dispatch"}, {"durability", "wal"}, {"workers", k}});
    rw.figures["tasks_per_s"] = summarize(wal);
    rw.figures["submit_per_s"] = summarize(wal_submit);
    auto& rf = rep.add("dispatch fsync K=" + std::to_string(k),
                       {{"system", "dispatch"}, {"durability", "fsync"}, {"workers", k}});
    rf.figures["tasks_per_s"] = summarize(fsync);
    rf.figures["submit_per_s"] = summarize(fsync_submit);
    const std::string none = "-";
    if (!no_beanstalkd) {
      rw.figures["vs_beanstalkd"] = summarize(wal_ratio);
      rf.figures["vs_beanstalkd"] = summarize(fsync_ratio);
      auto& rb = rep.add("beanstalkd K=" + std::to_string(k),
                         {{"system", "beanstalkd"}, {"binlog", true}, {"workers", k}});
      rb.figures["tasks_per_s"] = summarize(bean);
    }
    out.row({"dispatch wal", std::to_string(k), format(summarize(wal)),
             format(summarize(wal_submit)),
             no_beanstalkd ? none : format(summarize(wal_ratio), 2)});
    out.row({"dispatch fsync", std::to_string(k), format(summarize(fsync)),
             format(summarize(fsync_submit)),
             no_beanstalkd ? none : format(summarize(fsync_ratio), 2)});
    if (!no_beanstalkd)
      out.row({"beanstalkd", std::to_string(k), format(summarize(bean)), none, none});
  }
  std::printf(
      "\nLifecycle: %zu tasks of %zu bytes, submits of %zu (%zu in flight), capacity %u; "
      "median [min..max] of %d\n",
      o.tasks, o.payload, o.batch, o.in_flight, o.capacity, o.repetitions);
  publish(out, rep, o.out_dir);
  return 0;
}

}  // namespace dispatch::bench

int main(int argc, char** argv) {
  return dispatch::bench::guarded_main("lifecycle_bench", dispatch::bench::run, argc, argv);
}
