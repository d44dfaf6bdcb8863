// The benchmark suite itself, run small: every bench binary against a real dispatcherd (and a
// real beanstalkd where the bench compares with it; scripts/setup.sh installs it) must finish and
// write the figures it promises in its JSON file. No figure is judged by its size: speed is the bench's to report, not a test's to
// assert (bench/README.md).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.hpp"
#include "tests/support/temp_dir.hpp"

using nlohmann::json;
using namespace dispatch::testing;
using namespace std::chrono_literals;

namespace {

const std::string bench_dir = BENCH_BIN_DIR;

// Runs bench `name` (a binary in the build's bin directory) with `args` and `--out dir`, and
// returns the JSON file it wrote there.
json run_bench(const std::string& name, std::vector<std::string> args, const temp_dir& dir) {
  std::vector<std::string> argv{bench_dir + "/" + name};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--out");
  argv.push_back(dir.path());
  child_process bench(argv, dir.path() + "/" + name + ".log");
  const auto code = bench.wait(240s);
  INFO(bench.log_tail());
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);
  const std::string section = name.substr(0, name.size() - std::string("_bench").size());
  std::ifstream in(dir.path() + "/" + section + ".json");
  REQUIRE(in.good());
  json j = json::parse(in);
  CHECK(j.at("name") == section);
  CHECK(j.at("machine").at("cores").get<int>() >= 1);
  CHECK(!j.at("machine").at("commit").get<std::string>().empty());
  return j;
}

// Every figure is the median of its samples (at least one per repetition), and its min and max
// are theirs.
void check_figures(const json& j) {
  const auto reps = j.at("repetitions").get<std::size_t>();
  REQUIRE(!j.at("results").empty());
  for (const auto& row : j.at("results")) {
    INFO(row.at("label").get<std::string>());
    REQUIRE(!row.at("figures").empty());
    for (const auto& [name, f] : row.at("figures").items()) {
      INFO(name);
      auto samples = f.at("samples").get<std::vector<double>>();
      REQUIRE(samples.size() >= reps);
      std::sort(samples.begin(), samples.end());
      CHECK(f.at("min").get<double>() == samples.front());
      CHECK(f.at("max").get<double>() == samples.back());
      CHECK(f.at("min").get<double>() <= f.at("median").get<double>());
      CHECK(f.at("median").get<double>() <= f.at("max").get<double>());
    }
  }
}

const json* row_where(const json& j, const json& config) {
  for (const auto& row : j.at("results")) {
    bool all = true;
    for (const auto& [key, value] : config.items())
      all = all && row.at("config").contains(key) && row.at("config").at(key) == value;
    if (all) return &row;
  }
  return nullptr;
}

double median(const json& row, const std::string& figure) {
  return row.at("figures").at(figure).at("median").get<double>();
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool built_with_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool built_with_asan = true;
#else
constexpr bool built_with_asan = false;
#endif
#else
constexpr bool built_with_asan = false;
#endif

}  // namespace

TEST_CASE("bench: lifecycle runs both systems, and floor compares with it") {
  temp_dir dir("dispatch-bench");
  INFO("beanstalkd is the comparison's peer: scripts/setup.sh installs it");
  REQUIRE(std::filesystem::exists("/usr/bin/beanstalkd"));
  const json life =
      run_bench("lifecycle_bench", {"--quick", "--tasks", "2000", "--workers", "1", "2"}, dir);
  check_figures(life);
  for (int workers : {1, 2}) {
    for (const std::string durability : {"wal", "fsync"}) {
      INFO("K=" << workers << " " << durability);
      const json* row = row_where(
          life, {{"system", "dispatch"}, {"workers", workers}, {"durability", durability}});
      REQUIRE(row != nullptr);
      CHECK(median(*row, "tasks_per_s") > 0);
      CHECK(median(*row, "vs_beanstalkd") > 0);
    }
    const json* peer = row_where(life, {{"system", "beanstalkd"}, {"workers", workers}});
    REQUIRE(peer != nullptr);
    CHECK(median(*peer, "tasks_per_s") > 0);
  }

  const json floor = run_bench("floor_bench", {"--quick", "--tasks", "2000"}, dir);
  check_figures(floor);
  std::set<std::string> kinds;
  for (const auto& row : floor.at("results")) {
    kinds.insert(row.at("config").at("floor").get<std::string>());
    CHECK(median(row, "tasks_per_s") > 0);
  }
  CHECK(kinds == std::set<std::string>{"zmq", "rocksdb", "task_store"});
}

TEST_CASE("bench: latency measures the daemon and the ZeroMQ floor at an offered rate") {
  temp_dir dir("dispatch-bench");
  const json j = run_bench(
      "latency_bench", {"--quick", "--tasks", "2000", "--rates", "1000", "--seconds", "1"}, dir);
  check_figures(j);
  for (const std::string path : {"dispatch", "zmq floor"}) {
    INFO(path);
    const json* row = row_where(j, {{"path", path}});
    REQUIRE(row != nullptr);
    CHECK(median(*row, "hold_p50_us") > 0);
    CHECK(median(*row, "hold_p50_us") <= median(*row, "hold_p99_us"));
    CHECK(median(*row, "hold_p99_us") <= median(*row, "hold_p999_us"));
    // Every task's acknowledged completion comes after the worker held it, so each percentile
    // of the one is at least that of the other.
    CHECK(median(*row, "done_p50_us") >= median(*row, "hold_p50_us"));
    CHECK(median(*row, "done_p99_us") >= median(*row, "hold_p99_us"));
  }
}

TEST_CASE("bench: scale reports backlog, recovery, idle workers and a finished store") {
  temp_dir dir("dispatch-bench");
  const json j = run_bench("scale_bench",
                           {"--quick", "--backlog", "5000", "--drain", "1000", "--idle-workers",
                            "20", "--idle-seconds", "1", "--finished", "10000"},
                           dir);
  check_figures(j);
  const json* backlog = row_where(j, {{"tasks", 5000}});
  REQUIRE(backlog != nullptr);
  CHECK(median(*backlog, "rss_bytes_per_task") > 0);
  CHECK(median(*backlog, "dispatch_per_s") > 0);
  const json* recovery = row_where(j, {{"pending_at_restart", 5000}});
  REQUIRE(recovery != nullptr);
  CHECK(median(*recovery, "recovery_s") > 0);
  CHECK(median(*recovery, "stop_killed") == 0);  // the daemon stopped on SIGTERM by itself
  const json* idle = row_where(j, {{"workers", 20}});
  REQUIRE(idle != nullptr);
  CHECK(median(*idle, "idle_cpu_percent") >= 0);
  const json* finished = row_where(j, {{"finished", 10000}});
  REQUIRE(finished != nullptr);
  CHECK(median(*finished, "start_s") > 0);
  CHECK(median(*finished, "pending_query_ms") > 0);
}

TEST_CASE("bench: policy times decisions for every size it lists") {
  temp_dir dir("dispatch-bench");
  const json j = run_bench("policy_bench", {"--quick"}, dir);
  check_figures(j);
  for (const auto& row : j.at("results")) {
    CHECK(median(row, "ns_per_decision") > 0);
    // The heap is read with mallinfo2, which knows nothing of AddressSanitizer's allocator: the
    // bench writes 0 ("unknown") in a sanitized build.
    if (!built_with_asan) CHECK(median(row, "bytes_per_queued") > 0);
  }
}
