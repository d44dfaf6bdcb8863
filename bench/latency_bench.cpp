// Section 2 of the suite: dispatch latency at a fixed offered rate.
//
// One producer submits at a steady rate (every millisecond, the tasks due by then), each
// payload stamped with the steady_clock time just before the submit was built; K workers
// (capacity C, long poll) complete every job at once. Per task: submit -> a worker holds it,
// and submit -> its completion acknowledged. Both ends are on this machine, so one clock.
// Each repetition then runs the same pattern through the ZeroMQ floor (floor/zmq_floor.hpp):
// what this machine's threads and loopback cost a task with no dispatcher at all.
//
//   latency_bench [--quick] [--rates 1000,10000] [--seconds 10] [--latency-workers 4]
//                 [--samples-dir DIR] [--no-floor]
#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <string>

#include "bench/floor/zmq_floor.hpp"
#include "bench/support/daemon.hpp"
#include "bench/support/main.hpp"
#include "bench/support/options.hpp"
#include "bench/support/producer.hpp"
#include "bench/support/report.hpp"
#include "bench/support/worker_fleet.hpp"

namespace dispatch::bench {
namespace {

struct percentiles {
  double p50 = 0, p99 = 0, p999 = 0;  // microseconds
};

percentiles of(std::vector<double> ns) {
  return {percentile(ns, 0.50) / 1e3, percentile(ns, 0.99) / 1e3, percentile(ns, 0.999) / 1e3};
}

struct run_figures {
  percentiles hold, done;
};

// One line per task, in submission order: when it was submitted (ms after the run's first
// submit) and how long until a worker held it (us). Stalls show as runs of slow tasks.
void write_samples(const std::string& path, const latency_samples& s) {
  std::vector<std::size_t> order(s.hold_ns.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return s.hold_stamp_ns[a] < s.hold_stamp_ns[b]; });
  std::ofstream out(path);
  out << "submitted_ms\thold_us\n";
  const auto first = order.empty() ? 0 : s.hold_stamp_ns[order.front()];
  for (const auto i : order)
    out << (s.hold_stamp_ns[i] - first) / 1e6 << '\t' << s.hold_ns[i] / 1e3 << '\n';
  if (!out) throw std::runtime_error("cannot write the samples to " + path);
}

run_figures figures_of(latency_samples s, const std::string& samples_path) {
  if (!samples_path.empty()) write_samples(samples_path, s);
  return {of(std::move(s.hold_ns)), of(std::move(s.done_ns))};
}

run_figures run_rate(zmq::context_t& context, const common_options& o, double rate,
                     std::size_t tasks, std::size_t workers, const std::string& samples_path) {
  dispatcher_daemon daemon({o.dispatcherd, "wal", "", o.daemon_args()});
  fleet_options f;
  f.endpoint = daemon.work_endpoint();
  f.token = daemon.tokens().token(role::worker);
  f.workers = workers;
  f.capacity = o.capacity;
  f.complete_each = o.complete_each;
  f.record_latency = true;
  worker_fleet fleet(context, f);
  wire_client producer(context, daemon.work_endpoint(), daemon.tokens().token(role::producer));
  priority_source priorities;
  submit_paced(producer, rate, tasks, o.payload, priorities);
  fleet.wait_completed(tasks, std::chrono::seconds(60));
  fleet.stop();
  return figures_of(fleet.take_latencies(), samples_path);
}

run_figures run_floor(const common_options& o, double rate, std::size_t tasks, std::size_t workers,
                      const std::string& samples_path) {
  return figures_of(run_zmq_latency_floor({rate, tasks, o.payload, workers, o.capacity}),
                    samples_path);
}

// The percentiles of every repetition of one rate on one path, and their row.
struct rate_rows {
  std::vector<double> h50, h99, h999, d50, d99, d999;
  void add(const run_figures& f) {
    h50.push_back(f.hold.p50);
    h99.push_back(f.hold.p99);
    h999.push_back(f.hold.p999);
    d50.push_back(f.done.p50);
    d99.push_back(f.done.p99);
    d999.push_back(f.done.p999);
  }
  void publish(report& rep, table& out, const std::string& path, double rate,
               std::size_t tasks) const {
    const std::string label =
        path == "dispatch" ? "rate " + format(rate) : path + " rate " + format(rate);
    auto& row = rep.add(label, {{"path", path}, {"rate_per_s", rate}, {"tasks", tasks}});
    row.figures["hold_p50_us"] = summarize(h50);
    row.figures["hold_p99_us"] = summarize(h99);
    row.figures["hold_p999_us"] = summarize(h999);
    row.figures["done_p50_us"] = summarize(d50);
    row.figures["done_p99_us"] = summarize(d99);
    row.figures["done_p999_us"] = summarize(d999);
    out.row({path, format(rate), std::to_string(tasks), format(summarize(h50)),
             format(summarize(h99)), format(summarize(h999)), format(summarize(d50)),
             format(summarize(d99)), format(summarize(d999))});
  }
};

}  // namespace

int run(int argc, char** argv) {
  CLI::App app("Dispatch latency at a fixed offered rate");
  common_options o;
  std::vector<double> rates = {1000, 10000};
  double seconds = 10;
  std::size_t workers = 4;
  std::string samples_dir;
  bool no_floor = false;
  add_common_options(app, o);
  app.add_option("--rates", rates, "Offered rates in tasks/s")->delimiter(',');
  app.add_option("--seconds", seconds, "Length of each run at its rate")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--latency-workers", workers, "Workers during the latency runs")
      ->check(CLI::Range(1, 10000));
  app.add_option("--samples-dir", samples_dir,
                 "Also write every task's submit time and hold time, one file per run "
                 "(latency-<rate>-<repetition>.tsv)")
      ->check(CLI::ExistingDirectory);
  app.add_flag("--no-floor", no_floor, "Skip the runs through the ZeroMQ floor");
  CLI11_PARSE(app, argc, argv);
  apply_quick(app, o);
  if (o.quick && app.count("--seconds") == 0) seconds = 2;
  raise_open_file_limit();

  report rep("latency", o.repetitions);
  rep.params() = {{"storage_cpus", o.storage_cpus},
                  {"seconds", seconds},
                  {"workers", workers},
                  {"capacity", o.capacity},
                  {"payload_bytes", o.payload},
                  {"durability", "wal"},
                  {"tick_ms", 1},
                  {"completion", o.complete_each ? "complete per job" : "report per fetch"}};
  rep.note(
      "hold: submit (payload stamp) -> the worker received the job; done: submit -> the "
      "worker received the ok to its complete; microseconds; the percentiles of each "
      "repetition, then median [min..max] over repetitions. Path 'zmq floor': the same "
      "pattern through a plain ZeroMQ broker thread (its own context, one I/O thread) with "
      "no codec, store or scheduling, right after the dispatch run of each repetition; its "
      "workers send one complete frame per fetch, answered by one ok");

  zmq::context_t context(2);
  table out({"path", "rate/s", "tasks", "hold p50 us", "hold p99 us", "hold p99.9 us",
             "done p50 us", "done p99 us", "done p99.9 us"});
  for (double rate : rates) {
    const auto tasks = static_cast<std::size_t>(rate * seconds);
    rate_rows dispatch, floor;
    for (int r = 0; r < o.repetitions; ++r) {
      std::printf("  %.0f tasks/s repetition %d/%d ...\n", rate, r + 1, o.repetitions);
      std::fflush(stdout);
      const auto samples_path = [&](const std::string& path) {
        return samples_dir.empty() ? std::string()
                                   : samples_dir + "/" + path + "-" + format(rate) + "-" +
                                         std::to_string(r + 1) + ".tsv";
      };
      dispatch.add(run_rate(context, o, rate, tasks, workers, samples_path("latency")));
      if (!no_floor) floor.add(run_floor(o, rate, tasks, workers, samples_path("floor")));
    }
    dispatch.publish(rep, out, "dispatch", rate, tasks);
    if (!no_floor) floor.publish(rep, out, "zmq floor", rate, tasks);
  }
  std::printf(
      "\nLatency: %zu workers of capacity %u, %zu-byte payloads, durability wal; "
      "median [min..max] of %d\n",
      workers, o.capacity, o.payload, o.repetitions);
  publish(out, rep, o.out_dir);
  return 0;
}

}  // namespace dispatch::bench

int main(int argc, char** argv) {
  return dispatch::bench::guarded_main("latency_bench", dispatch::bench::run, argc, argv);
}
