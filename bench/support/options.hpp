// Command line options every benchmark shares, and what --quick changes.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>
#include <vector>

namespace dispatch::bench {

struct common_options {
  bool quick = false;
  int repetitions = 3;
  std::size_t tasks = 200'000;
  std::vector<std::size_t> workers = {1, 4, 16};
  std::size_t batch = 1'000;   // tasks per submit
  std::size_t in_flight = 4;   // submits outstanding at once
  std::size_t payload = 100;   // bytes per task
  std::uint32_t capacity = 8;  // per worker; also the fetch max
  bool complete_each = false;  // workers send one complete per job, not one report per fetch
  std::string out_dir = std::string(DISPATCH_SOURCE_DIR) + "/bench/results";
  std::string dispatcherd = DISPATCHERD_PATH;  // another build can be measured with the same bench
  std::string storage_cpus;                    // dispatcherd --storage-cpus; empty: not given
  // The options every measured dispatcherd gets from these (--storage-cpus).
  std::vector<std::string> daemon_args() const;
};

// Registers the shared options on `app`.
void add_common_options(CLI::App& app, common_options& o);
// After parsing: --quick shrinks whatever the user did not set explicitly (N = 20,000, one
// repetition), so a smoke run finishes in minutes.
void apply_quick(const CLI::App& app, common_options& o);

}  // namespace dispatch::bench
