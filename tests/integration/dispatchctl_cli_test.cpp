// The real dispatchctl binary against a real dispatcherd's admin endpoint: each command's exit
// code and output (mostly --json, parsed), checked against what the daemon holds.
#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/wall_clock.hpp"
#include "tests/integration/harness.hpp"

using namespace dispatch;
using namespace dispatch::testing;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

struct ctl_result {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// Runs dispatchctl with `args` (after --endpoint when one is given) and waits for it to exit.
class ctl {
 public:
  explicit ctl(std::string endpoint = {}) : endpoint_(std::move(endpoint)) {}

  ctl_result operator()(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {dispatchctl_path()};
    if (!endpoint_.empty()) {
      argv.push_back("--endpoint");
      argv.push_back(endpoint_);
      argv.push_back("--token");
      argv.push_back(test_admin_token);
    }
    argv.insert(argv.end(), args.begin(), args.end());
    std::string line;
    for (const auto& a : args) line += " " + a;
    child_process p(argv, logs_.path() + "/ctl-" + std::to_string(++runs_) + ".log");
    const auto code = p.wait(10s);
    INFO("dispatchctl" << line);
    REQUIRE(code.has_value());  // it must finish on its own
    return {*code, p.log()};
  }

  // Runs a command that must succeed with --json output; returns the parsed document.
  json json_of(std::vector<std::string> args) {
    args.push_back("--json");
    const auto r = (*this)(args);
    std::string line;
    for (const auto& a : args) line += " " + a;
    INFO("dispatchctl" << line << "\n" << r.out);
    REQUIRE(r.code == 0);
    REQUIRE(json::accept(r.out));
    return json::parse(r.out);
  }

 private:
  std::string endpoint_;
  temp_dir logs_;
  int runs_ = 0;
};

const std::regex rfc3339_ms(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)");

bool is_rfc3339_ms(const json& j) {
  return j.is_string() && std::regex_match(j.get<std::string>(), rfc3339_ms);
}

// The RFC 3339 text dispatchctl must print for `ms` since the epoch.
std::string rfc3339(millis ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm parts{};
  gmtime_r(&secs, &parts);
  char text[48];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900,
                parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec,
                static_cast<int>(ms % 1000));
  return text;
}

task_id submit_via_ctl(ctl& run, const std::string& project, const std::string& priority,
                       const std::string& payload) {
  const auto r = run({"submit", "--project", project, "--type", "echo", "--priority", priority,
                      "--payload", payload});
  INFO(r.out);
  REQUIRE(r.code == 0);
  std::smatch m;
  REQUIRE(std::regex_match(r.out, m, std::regex(R"(^(\d+)\n$)")));
  return std::stoull(m[1].str());
}

task wire_task(dispatcher_process& d, task_id id) {
  wire_client c(d.admin_endpoint());
  return expect<protocol::task_info>(c.call(protocol::get_task{id})).t;
}

std::vector<std::uint64_t> ids_of(const json& list) {
  std::vector<std::uint64_t> ids;
  for (const auto& t : list) ids.push_back(t.at("id").get<std::uint64_t>());
  return ids;
}

const json* find_by(const json& list, const std::string& key, const std::string& value) {
  for (const auto& item : list)
    if (item.at(key) == value) return &item;
  return nullptr;
}

const char* const statuses[] = {"pending",   "running",  "completed", "failed",
                                "dead",      "cancelled", "scheduled"};

// The id a human-readable submit printed.
task_id id_printed(const ctl_result& r) {
  INFO(r.out);
  REQUIRE(r.code == 0);
  std::smatch m;
  REQUIRE(std::regex_match(r.out, m, std::regex(R"(^(\d+)\n$)")));
  return std::stoull(m[1].str());
}

}  // namespace

TEST_CASE("dispatchctl submit, task, tasks and cancel") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());

  const task_id id = submit_via_ctl(run, "P", "3", "hi");
  CHECK(id > 0);
  const task stored = wire_task(d, id);
  CHECK(stored.project == "P");
  CHECK(stored.type == "echo");
  CHECK(stored.priority == 3);
  CHECK(stored.payload == "hi");

  // task ID --json
  const json t = run.json_of({"task", std::to_string(id)});
  INFO(t.dump(2));
  REQUIRE(t.is_object());
  for (const char* key : {"id", "project", "type", "priority", "status", "worker", "attempts",
                          "created_at", "assigned_at", "finished_at", "timeout_ms", "run_at",
                          "deadline", "overdue", "idempotency_key", "lease_expires_at"}) {
    INFO("key " << key);
    CHECK(t.contains(key));
  }
  CHECK(t.at("id") == id);
  CHECK(t.at("project") == "P");
  CHECK(t.at("type") == "echo");
  CHECK(t.at("priority") == 3);
  CHECK(t.at("status") == "pending");
  CHECK(t.at("worker").is_null());
  CHECK(t.at("attempts") == 0);
  CHECK(is_rfc3339_ms(t.at("created_at")));
  CHECK(t.at("created_at") == rfc3339(stored.created_at));
  CHECK(t.at("assigned_at").is_null());
  CHECK(t.at("finished_at").is_null());
  CHECK(t.at("payload") == "hi");
  CHECK(t.at("timeout_ms") == 300000);  // the protocol default, sent by dispatchctl
  CHECK(t.at("run_at").is_null());
  CHECK(t.at("deadline").is_null());
  CHECK(t.at("overdue") == false);
  CHECK(t.at("idempotency_key").is_null());
  CHECK(t.at("lease_expires_at").is_null());

  // tasks --project P --status pending --json: newest first, only P, only pending.
  const task_id other = submit_via_ctl(run, "Q", "0", "q");
  const task_id id2 = submit_via_ctl(run, "P", "-5", "second");
  CHECK(other > id);
  CHECK(id2 > other);
  json list = run.json_of({"tasks", "--project", "P", "--status", "pending"});
  REQUIRE(list.is_array());
  CHECK(ids_of(list) == std::vector<std::uint64_t>{id2, id});
  CHECK(list.at(1).at("priority") == 3);
  CHECK(list.at(0).at("priority") == -5);
  CHECK(ids_of(run.json_of({"tasks"})) == std::vector<std::uint64_t>{id2, other, id});

  // cancel ID
  const auto cancelled = run({"cancel", std::to_string(id)});
  INFO(cancelled.out);
  CHECK(cancelled.code == 0);
  CHECK(wire_task(d, id).status == task_status::cancelled);
  CHECK(run.json_of({"task", std::to_string(id)}).at("status") == "cancelled");
  CHECK(ids_of(run.json_of({"tasks", "--project", "P", "--status", "pending"})) ==
        std::vector<std::uint64_t>{id2});
  CHECK(ids_of(run.json_of({"tasks", "--status", "cancelled"})) ==
        std::vector<std::uint64_t>{id});
  // Cancelling a final task is refused by the daemon: exit 1 with its error code.
  const auto again = run({"cancel", std::to_string(id)});
  CHECK(again.code == 1);
  CHECK_THAT(again.out, Contains("invalid_state"));
  const auto missing = run({"task", "999999"});
  CHECK(missing.code == 1);
  CHECK_THAT(missing.out, Contains("unknown_task"));
}

TEST_CASE("dispatchctl task shows the worker and assignment time of a running task") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  const task_id id = submit_via_ctl(run, "P", "0", "run me");

  wire_client worker(d.work_endpoint());
  protocol::register_worker reg;
  reg.worker = "w-run";
  reg.types = {"echo"};
  expect<protocol::registered>(worker.call(reg));
  const auto jobs = expect<protocol::jobs>(worker.call(protocol::fetch{1, 2000})).jobs;
  REQUIRE(jobs.size() == 1);
  REQUIRE(jobs[0].task == id);

  const task stored = wire_task(d, id);
  const json t = run.json_of({"task", std::to_string(id)});
  INFO(t.dump(2));
  CHECK(t.at("status") == "running");
  CHECK(t.at("worker") == "w-run");
  CHECK(t.at("attempts") == 1);
  CHECK(is_rfc3339_ms(t.at("assigned_at")));
  CHECK(t.at("assigned_at") == rfc3339(stored.assigned_at));
  CHECK(t.at("finished_at").is_null());

  expect<protocol::ok>(worker.call(protocol::complete{id, 1, "done"}));
  const json done = run.json_of({"task", std::to_string(id)});
  CHECK(done.at("status") == "completed");
  CHECK(is_rfc3339_ms(done.at("finished_at")));
  CHECK(done.at("result") == "done");
}

TEST_CASE("dispatchctl stats, projects, pause, resume and configure") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  submit_via_ctl(run, "P", "0", "a");
  submit_via_ctl(run, "P", "0", "b");

  const json s = run.json_of({"stats"});
  INFO(s.dump(2));
  REQUIRE(s.is_object());
  REQUIRE(s.contains("tasks"));
  REQUIRE(s.at("tasks").is_object());
  for (const char* status : statuses) {
    INFO("status " << status);
    REQUIRE(s.at("tasks").contains(status));
    CHECK(s.at("tasks").at(status) == (std::string(status) == "pending" ? 2 : 0));
  }
  CHECK(s.at("tasks").size() == std::size_t(dispatch::task_status_count));
  REQUIRE(s.contains("workers"));
  CHECK(s.at("workers").is_array());
  CHECK(s.at("workers").empty());
  REQUIRE(s.contains("projects"));
  REQUIRE(s.at("projects").is_array());
  REQUIRE(s.at("projects").size() == 1);
  CHECK(s.at("projects").at(0).at("name") == "P");
  CHECK(s.at("projects").at(0).at("pending") == 2);

  auto project_p = [&] {
    const json projects = run.json_of({"projects"});
    INFO(projects.dump(2));
    REQUIRE(projects.is_array());
    const json* p = find_by(projects, "name", "P");
    REQUIRE(p != nullptr);
    return *p;
  };
  CHECK(project_p().at("paused") == false);

  auto r = run({"pause", "P"});
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(project_p().at("paused") == true);

  r = run({"resume", "P"});
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(project_p().at("paused") == false);

  r = run({"configure", "P", "--max-inflight", "2", "--weight", "3"});
  INFO(r.out);
  CHECK(r.code == 0);
  const json p = project_p();
  CHECK(p.at("max_inflight") == 2);
  CHECK(p.at("weight") == 3);
  CHECK(p.at("paused") == false);
  CHECK(p.at("pending") == 2);

  // The daemon agrees.
  const auto wire_projects = d.stats().projects;
  REQUIRE(wire_projects.size() == 1);
  CHECK(wire_projects[0].max_inflight == 2);
  CHECK(wire_projects[0].weight == 3);
  CHECK_FALSE(wire_projects[0].paused);

  // --json on an "ok" command.
  CHECK(run.json_of({"pause", "P"}) == json{{"ok", true}});
  CHECK(project_p().at("paused") == true);
}

TEST_CASE("dispatchctl submit with a delay, deadline, lease and idempotency key") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  const millis before = wall_now();
  const std::vector<std::string> args = {"submit", "--project", "P", "--type", "echo",
                                         "--task-timeout", "90s", "--delay", "1h", "--deadline", "+2h",
                                         "--idempotency-key", "order-17"};
  const task_id id = id_printed(run(args));
  const millis after = wall_now();

  const task stored = wire_task(d, id);
  CHECK(stored.status == task_status::scheduled);
  CHECK(stored.timeout_ms == 90000);
  CHECK(stored.run_at >= before + 3'600'000);
  CHECK(stored.run_at <= after + 3'600'000);
  CHECK(stored.deadline >= before + 7'200'000);
  CHECK(stored.deadline <= after + 7'200'000);
  CHECK(stored.idempotency_key == "order-17");

  const json t = run.json_of({"task", std::to_string(id)});
  INFO(t.dump(2));
  CHECK(t.at("status") == "scheduled");
  CHECK(t.at("timeout_ms") == 90000);
  CHECK(t.at("run_at") == rfc3339(stored.run_at));
  CHECK(t.at("deadline") == rfc3339(stored.deadline));
  CHECK(t.at("overdue") == false);
  CHECK(t.at("idempotency_key") == "order-17");
  CHECK(ids_of(run.json_of({"tasks", "--status", "scheduled"})) ==
        std::vector<std::uint64_t>{id});
  const json s = run.json_of({"stats"});
  CHECK(s.at("tasks").at("scheduled") == 1);
  CHECK(s.at("projects").at(0).at("scheduled") == 1);
  const auto shown = run({"task", std::to_string(id)});
  CHECK(shown.code == 0);
  CHECK_THAT(shown.out, Contains("run_at:"));
  CHECK_THAT(shown.out, Contains("deadline:"));

  // The same key in the same project names the same task.
  CHECK(id_printed(run(args)) == id);

  // An absolute start time is sent as given.
  const task_id at = id_printed(run({"submit", "--project", "P", "--type", "echo", "--run-at",
                                     "2099-01-01T00:00:00Z"}));
  CHECK(wire_task(d, at).run_at == 4070908800000);
}

TEST_CASE("dispatchctl retry and remove") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  const task_id id = submit_via_ctl(run, "P", "0", "again");
  // A live task can be neither retried nor removed.
  for (const char* command : {"retry", "remove"}) {
    const auto live = run({command, std::to_string(id)});
    INFO(command << ": " << live.out);
    CHECK(live.code == 1);
    CHECK_THAT(live.out, Contains("invalid_state"));
  }
  REQUIRE(run({"cancel", std::to_string(id)}).code == 0);

  auto r = run({"retry", std::to_string(id)});
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(r.out == "task " + std::to_string(id) + " queued again\n");
  CHECK(wire_task(d, id).status == task_status::pending);
  CHECK(wire_task(d, id).attempts == 0);

  REQUIRE(run({"cancel", std::to_string(id)}).code == 0);
  CHECK(run.json_of({"remove", std::to_string(id)}) == json{{"ok", true}});
  const auto gone = run({"task", std::to_string(id)});
  CHECK(gone.code == 1);
  CHECK_THAT(gone.out, Contains("unknown_task"));
  const auto missing = run({"retry", "999999"});
  CHECK(missing.code == 1);
  CHECK_THAT(missing.out, Contains("unknown_task"));
}

TEST_CASE("dispatchctl drain, undrain and retire reach the worker's heartbeat") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  wire_client worker(d.work_endpoint());
  protocol::register_worker reg;
  reg.worker = "w-order";
  reg.types = {"echo"};
  expect<protocol::registered>(worker.call(reg));
  const auto next_order = [&] {
    return expect<protocol::heartbeat_reply>(worker.call(protocol::heartbeat{})).order;
  };
  CHECK(next_order() == "none");

  auto r = run({"drain", "w-order"});
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(r.out == "worker w-order draining\n");
  CHECK(next_order() == "drain");
  const json workers = run.json_of({"workers"});
  INFO(workers.dump(2));
  REQUIRE(workers.size() == 1);
  CHECK(workers.at(0).at("state") == "draining");

  r = run({"undrain", "w-order"});
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(r.out == "worker w-order taking work again\n");
  CHECK(next_order() == "none");

  CHECK(run.json_of({"retire", "w-order"}) == json{{"ok", true}});
  CHECK(next_order() == "stop");

  const auto nobody = run({"drain", "w-nobody"});
  CHECK(nobody.code == 1);
  CHECK_THAT(nobody.out, Contains("unknown_worker"));
}

TEST_CASE("dispatchctl workers lists a worker registered over the wire") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  CHECK(run.json_of({"workers"}) == json::array());

  wire_client worker(d.work_endpoint());
  protocol::register_worker reg;
  reg.worker = "w-cli";
  reg.types = {"echo", "resize"};
  reg.tags = {"gpu"};
  reg.capacity = 4;
  expect<protocol::registered>(worker.call(reg));

  const json workers = run.json_of({"workers"});
  INFO(workers.dump(2));
  REQUIRE(workers.is_array());
  REQUIRE(workers.size() == 1);
  const json& w = workers.at(0);
  CHECK(w.at("id") == "w-cli");
  CHECK(w.at("pool") == "active");
  CHECK(w.at("capacity") == 4);
  CHECK(w.at("running") == 0);
  CHECK(w.at("types") == json::array({"echo", "resize"}));
  CHECK(w.at("tags") == json::array({"gpu"}));
  const json s = run.json_of({"stats"});
  REQUIRE(s.at("workers").size() == 1);
  CHECK(s.at("workers").at(0).at("id") == "w-cli");
}

TEST_CASE("dispatchctl refuses bad command lines with exit code 2 and a message") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"task", "abc"}, "abc"},
      {{"task", "-1"}, "-1"},
      {{"task"}, "ID"},
      {{"tasks", "--status", "nope"}, "nope"},
      {{"tasks", "--limit", "0"}, "--limit"},
      {{"frobnicate"}, "frobnicate"},
      {{"submit", "--type", "echo", "--payload", "x"}, "--project"},
      {{"submit", "--project", "P", "--type", "echo", "--priority", "high"}, "high"},
      {{"configure", "P", "--weight", "0"}, "--weight"},
      {{"--timeout", "soon", "stats"}, "soon"},
      {{"submit", "--project", "P", "--type", "echo", "--deadline", "tomorrow"}, "--deadline"},
      {{"submit", "--project", "P", "--type", "echo", "--task-timeout", "0s"}, "--task-timeout"},
      {{"retry", "x"}, "x"},
      {{"drain"}, "WORKER"},
      {{}, "command"},
  };
  for (const auto& [args, mention] : cases) {
    std::string line;
    for (const auto& a : args) line += " " + a;
    const auto r = run(args);
    INFO("dispatchctl" << line << "\n" << r.out);
    CHECK(r.code == 2);
    CHECK_THAT(r.out, Contains("dispatchctl"));
    CHECK_THAT(r.out, Contains(mention));
  }
  // None of them reached the daemon.
  const auto s = d.stats();
  for (const char* status : statuses) CHECK(s.tasks.at(status) == 0);
  CHECK(s.projects.empty());
}

TEST_CASE("dispatchctl gives up on an endpoint where nothing listens") {
  const int port = free_ports(1)[0];
  const std::string endpoint = tcp_endpoint(port);
  ctl run;  // no default endpoint: given explicitly below
  const auto r = run({"--endpoint", endpoint, "--timeout", "500ms", "stats"});
  INFO(r.out);
  CHECK(r.code != 0);
  CHECK(r.code == 1);  // "could not be reached", not a usage error
  CHECK_THAT(r.out, Contains(endpoint));
  // A malformed endpoint is a usage error.
  const auto bad = run({"--endpoint", "nonsense://x", "--timeout", "500ms", "stats"});
  INFO(bad.out);
  CHECK(bad.code == 2);
}

TEST_CASE("dispatchctl tasks filters and pages, submit titles, and report") {
  dispatcher_process d;
  ctl run(d.admin_endpoint());

  const task_id id1 = id_printed(run({"submit", "--project", "R", "--type", "echo", "--title",
                                      "Nightly Report", "--description", "sums the day"}));
  const task_id id2 = id_printed(run({"submit", "--project", "R", "--type", "echo"}));
  const task_id id3 =
      id_printed(run({"submit", "--project", "S", "--type", "echo", "--priority", "5"}));

  const json t = run.json_of({"task", std::to_string(id1)});
  CHECK(t.at("title") == "Nightly Report");
  CHECK(t.at("description") == "sums the day");
  const auto shown = run({"task", std::to_string(id1)});
  CHECK_THAT(shown.out, Contains("title:") && Contains("Nightly Report"));

  using ids = std::vector<std::uint64_t>;
  CHECK(ids_of(run.json_of({"tasks", "--text", "nightly"})) == ids{id1});
  CHECK(ids_of(run.json_of({"tasks", "--text", "SUMS"})) == ids{id1});
  CHECK(ids_of(run.json_of({"tasks", "--text", "ECH"})) == ids{id3, id2, id1});  // the type
  CHECK(ids_of(run.json_of({"tasks", "--priority-min", "5"})) == ids{id3});
  CHECK(ids_of(run.json_of({"tasks", "--priority-max", "0", "--project", "R"})) == ids{id2, id1});
  CHECK(ids_of(run.json_of({"tasks", "--oldest"})) == ids{id1, id2, id3});
  CHECK(ids_of(run.json_of({"tasks", "--created-from", "-1h", "--created-to", "+1h"})) ==
        ids{id3, id2, id1});
  CHECK(run.json_of({"tasks", "--created-to", "-1h"}).empty());

  // Pages: the table names the cursor, --after follows it, --all does it all.
  const auto first = run({"tasks", "--limit", "2"});
  INFO(first.out);
  REQUIRE(first.code == 0);
  CHECK_THAT(first.out, Contains("next page: --after " + std::to_string(id2) + "\n"));
  CHECK(ids_of(run.json_of({"tasks", "--limit", "2", "--after", std::to_string(id2)})) ==
        ids{id1});
  CHECK(ids_of(run.json_of({"tasks", "--all", "--limit", "1"})) == ids{id3, id2, id1});
  const auto all_table = run({"tasks", "--all", "--limit", "1", "--oldest"});
  REQUIRE(all_table.code == 0);
  std::istringstream lines(all_table.out);
  std::vector<std::string> got;
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  REQUIRE(got.size() == 4);  // one header, three rows
  CHECK(got[0].rfind("ID", 0) == 0);
  CHECK(got[1].rfind(std::to_string(id1), 0) == 0);
  CHECK(got[3].rfind(std::to_string(id3), 0) == 0);

  // Finish them: id1 completed and id2 failed by worker w1, id3 cancelled while pending.
  wire_client worker(d.work_endpoint());
  expect<protocol::registered>(worker.call(worker_spec("w1", 2, {"echo"})));
  expect<protocol::ok>(wire_client(d.admin_endpoint()).call(protocol::cancel{id3}));
  auto jobs = fetch(worker, 2);
  REQUIRE(jobs.size() == 2);
  for (const auto& j : jobs) {
    if (j.task == id1)
      expect<protocol::ok>(worker.call(protocol::complete{j.task, j.attempt, "done"}));
    else
      expect<protocol::ok>(worker.call(protocol::fail{j.task, j.attempt, "no, \"really\"", false}));
  }
  CHECK(ids_of(run.json_of({"tasks", "--finished-from", "-1h"})) == ids{id3, id2, id1});
  CHECK(run.json_of({"tasks", "--finished-to", "-1h"}).empty());
  CHECK(ids_of(run.json_of({"tasks", "--worker", "w1"})) == ids{id2, id1});
  CHECK(ids_of(run.json_of({"tasks", "--type", "echo", "--status", "completed"})) == ids{id1});

  const auto csv = run({"report", "--from", "-1h", "--to", "+1m"});
  INFO(csv.out);
  REQUIRE(csv.code == 0);
  const std::string a = std::to_string(id1), b = std::to_string(id2), c = std::to_string(id3);
  CHECK(csv.out.rfind("id,project,type,worker,status,attempts,failures,created_at,assigned_at,"
                      "finished_at,wait_ms,run_ms,error\n" +
                          a + ",R,echo,w1,completed,1,0,",
                      0) == 0);
  CHECK_THAT(csv.out, Contains("\n" + b + ",R,echo,w1,failed,1,1,") &&
                          Contains(",\"no, \"\"really\"\"\"\n" + c + ",S,echo,,cancelled,0,0,"));
  CHECK_THAT(csv.out, Contains("\n\nscope,name,tasks,completed,failed,dead,cancelled,"
                               "run_ms_total,run_ms_avg\nall,,3,1,1,0,1,"));
  CHECK_THAT(csv.out, Contains("\nproject,R,2,1,1,0,0,") &&
                          Contains("\nproject,S,1,0,0,0,1,0,\n") &&
                          Contains("\nworker,,1,0,0,0,1,0,\nworker,w1,2,1,1,0,0,"));

  const auto j = run({"report", "--from", "-1h", "--to", "+1m", "--project", "R", "--json"});
  INFO(j.out);
  REQUIRE(j.code == 0);
  REQUIRE(json::accept(j.out));
  const json doc = json::parse(j.out);
  CHECK(ids_of(doc.at("tasks")) == ids{id1, id2});
  CHECK(doc.at("totals").at("all").at("tasks") == 2);
  CHECK(doc.at("totals").at("workers").size() == 1);

  // A report's range must be one.
  const auto backwards = run({"report", "--from", "+1m", "--to", "-1h"});
  CHECK(backwards.code == 2);
  CHECK_THAT(backwards.out, Contains("--to must be later than --from"));
}
