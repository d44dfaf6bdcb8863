#include "bench/support/options.hpp"

namespace dispatch::bench {

void add_common_options(CLI::App& app, common_options& o) {
  app.add_flag("--quick", o.quick, "Small sizes and one repetition, for a smoke run");
  app.add_option("--reps", o.repetitions, "Repetitions per figure (median, min, max)")
      ->check(CLI::Range(1, 100));
  app.add_option("--tasks", o.tasks, "Tasks per run")->check(CLI::Range(1, 100'000'000));
  app.add_option("--workers", o.workers, "Worker counts to try")->delimiter(',');
  app.add_option("--batch", o.batch, "Tasks per submit")->check(CLI::Range(1, 10'000));
  app.add_option("--in-flight", o.in_flight, "Submits outstanding at once")
      ->check(CLI::Range(1, 1000));
  app.add_option("--payload", o.payload, "Payload bytes per task (at least 8)")
      ->check(CLI::Range(8, 100'000));
  app.add_option("--capacity", o.capacity, "Capacity of each worker (and its fetch max)")
      ->check(CLI::Range(1, 10'000));
  app.add_flag("--complete-each", o.complete_each,
               "Workers send one complete per job instead of one report per batch of jobs");
  app.add_option("--out", o.out_dir, "Directory for the JSON results");
  app.add_option("--dispatcherd", o.dispatcherd, "The dispatcherd binary to measure");
  app.add_option("--storage-cpus", o.storage_cpus,
                 "Passed to dispatcherd: CPUs for its store threads (e.g. 1; default: none)");
}

std::vector<std::string> common_options::daemon_args() const {
  if (storage_cpus.empty()) return {};
  return {"--storage-cpus", storage_cpus};
}

void apply_quick(const CLI::App& app, common_options& o) {
  if (!o.quick) return;
  if (app.count("--reps") == 0) o.repetitions = 1;
  if (app.count("--tasks") == 0) o.tasks = 20'000;
}

}  // namespace dispatch::bench
