// Section 4 of the suite: the floor under the lifecycle. The same N tasks as plain ZeroMQ
// round trips (floor/zmq_floor.hpp) and as the store's writes without a dispatcher
// (floor/store_floor.hpp), and, when lifecycle.json of this run is in the results directory,
// how close the lifecycle comes to them.
//
//   floor_bench [--quick] [--tasks N] [--reps R] [--workers 1,4,16] [--groups 1000,8]
#include <cstdio>
#include <exception>
#include <string>

#include "bench/floor/store_floor.hpp"
#include "bench/floor/zmq_floor.hpp"
#include "bench/support/main.hpp"
#include "bench/support/options.hpp"
#include "bench/support/process.hpp"
#include "bench/support/report.hpp"

namespace dispatch::bench {
namespace {

struct store_case {
  store_api api;
  bool fsync;
  std::size_t group;
  std::string label() const {
    return std::string(api == store_api::rocksdb ? "rocksdb" : "task_store") +
           (fsync ? " fsync" : " wal") + " group " + std::to_string(group);
  }
};

// The lifecycle median for `label` from lifecycle.json, 0 when absent.
double lifecycle_median(const nlohmann::json& doc, const std::string& label) {
  if (!doc.contains("results")) return 0;
  for (const auto& r : doc["results"])
    if (r.value("label", "") == label) return r["figures"]["tasks_per_s"].value("median", 0.0);
  return 0;
}

std::string percent(double part, double whole) {
  return whole > 0 && part > 0 ? format(100 * part / whole, 0) + "%" : "-";
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app("The floor: plain ZeroMQ round trips and plain store writes");
  common_options o;
  std::vector<std::size_t> groups = {1000, 8};
  add_common_options(app, o);
  app.add_option("--groups", groups, "Tasks per assignment/completion write")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  apply_quick(app, o);

  report rep("floor", o.repetitions);
  rep.params() = {{"tasks", o.tasks},         {"batch", o.batch},
                  {"in_flight", o.in_flight}, {"payload_bytes", o.payload},
                  {"capacity", o.capacity},   {"groups", groups}};
  rep.note(
      "zmq: submit frames of `batch` payloads, fetch frames answered with up to "
      "`capacity` payloads, one complete and one ok frame per task; a FIFO broker thread, "
      "no codec, no store");
  rep.note(
      "rocksdb: per task the record put at submit (in writes of `batch`), rewritten at "
      "assignment, moved to done with 10 index entries at completion (writes of `group`); "
      "task_store: the same through persistence::task_store");
  rep.note(
      "vs lifecycle: lifecycle tasks/s (lifecycle.json, same results dir) as a percentage "
      "of each floor; 'both' = 1 / (1/zmq + 1/rocksdb wal group 1000), the two paid one "
      "after the other");

  table floors({"floor", "workers", "tasks/s"});
  std::map<std::size_t, summary> zmq_by_k;
  for (std::size_t k : o.workers) {
    std::vector<double> samples;
    for (int r = 0; r < o.repetitions; ++r) {
      zmq_floor_load load{o.tasks, o.batch, o.in_flight, o.payload, k, o.capacity};
      samples.push_back(static_cast<double>(o.tasks) / run_zmq_floor(load));
    }
    auto& row = rep.add("zmq K=" + std::to_string(k), {{"floor", "zmq"}, {"workers", k}});
    row.figures["tasks_per_s"] = zmq_by_k[k] = summarize(samples);
    floors.row({"zmq round trips", std::to_string(k), format(zmq_by_k[k])});
  }

  std::vector<store_case> cases;
  for (auto api : {store_api::rocksdb, store_api::task_store}) {
    for (std::size_t g : groups) cases.push_back({api, false, g});
    cases.push_back({api, true, groups.front()});
  }
  double rocksdb_best = 0;
  for (const auto& c : cases) {
    std::vector<double> samples;
    for (int r = 0; r < o.repetitions; ++r) {
      scratch_dir dir("dispatch-floor");
      store_floor_load load{c.api,   c.fsync,   o.tasks,           o.batch,
                            c.group, o.payload, dir.path() + "/db"};
      samples.push_back(static_cast<double>(o.tasks) / run_store_floor(load));
    }
    auto& row =
        rep.add(c.label(), {{"floor", c.api == store_api::rocksdb ? "rocksdb" : "task_store"},
                            {"durability", c.fsync ? "fsync" : "wal"},
                            {"group", c.group}});
    row.figures["tasks_per_s"] = summarize(samples);
    if (c.api == store_api::rocksdb && !c.fsync && c.group == groups.front())
      rocksdb_best = row.figures["tasks_per_s"].median;
    floors.row({c.label(), "-", format(row.figures["tasks_per_s"])});
  }
  std::printf("\nFloor: %zu tasks of %zu bytes; median [min..max] of %d\n", o.tasks, o.payload,
              o.repetitions);
  floors.print();

  nlohmann::json lifecycle;
  if (read_results(o.out_dir, "lifecycle", lifecycle)) {
    table cmp({"workers", "lifecycle wal", "vs zmq", "vs rocksdb", "vs both"});
    for (std::size_t k : o.workers) {
      const double ours = lifecycle_median(lifecycle, "dispatch wal K=" + std::to_string(k));
      const double z = zmq_by_k[k].median;
      const double both = z > 0 && rocksdb_best > 0 ? 1 / (1 / z + 1 / rocksdb_best) : 0;
      cmp.row({std::to_string(k), format(ours), percent(ours, z), percent(ours, rocksdb_best),
               percent(ours, both)});
      rep.params()["lifecycle_vs_floor"][std::to_string(k)] = {
          {"lifecycle_wal", ours}, {"zmq", z}, {"rocksdb", rocksdb_best}, {"both", both}};
    }
    std::printf("\nHow close the lifecycle (lifecycle.json, %s) comes to the floor\n",
                lifecycle["machine"].value("date", "").c_str());
    cmp.print();
  }
  save(rep, o.out_dir);
  return 0;
}

}  // namespace dispatch::bench

int main(int argc, char** argv) {
  return dispatch::bench::guarded_main("floor_bench", dispatch::bench::run, argc, argv);
}
