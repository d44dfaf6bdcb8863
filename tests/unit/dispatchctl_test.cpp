// dispatchctl: time and JSON formatting, tables, argument parsing, and the admin client
// against a real ZeroMQ ROUTER played by the test.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "dispatchctl/admin_client.hpp"
#include "dispatchctl/cli.hpp"
#include "dispatchctl/commands.hpp"
#include "dispatchctl/json_render.hpp"
#include "dispatchctl/table_render.hpp"
#include "dispatchctl/text_encoding.hpp"
#include "dispatchctl/text_table.hpp"
#include "dispatchctl/time_format.hpp"
#include "protocol/codec.hpp"
#include "protocol/wall_clock.hpp"

using namespace dispatch;
using namespace dispatch::ctl;
using namespace std::chrono_literals;

namespace {

// 2026-11-21T05:40:25.123Z
constexpr millis known_time = 1795239625123;

parse_result parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"dispatchctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parse_args(static_cast<int>(argv.size()), argv.data());
}

// The same with the clock fixed, for relative times.
parse_result parse_at(millis now, const std::vector<const char*>& args) {
  std::vector<const char*> argv{"dispatchctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parse_args(static_cast<int>(argv.size()), argv.data(), now);
}

// The one spec of a parsed submit; fails the test if the command line was not a submit.
protocol::task_spec submitted_spec(const parse_result& r) {
  INFO(r.err);
  REQUIRE(r.run);
  const auto* s = std::get_if<protocol::submit>(&r.run->request);
  REQUIRE(s);
  REQUIRE(s->tasks.size() == 1);
  return s->tasks[0];
}

// print_reply of `reply` to `request`: exit code, stdout, stderr.
struct printed {
  int code = -1;
  std::string out;
  std::string err;
};
printed print(const protocol::request_body& request, bool json, const protocol::reply_body& reply) {
  std::ostringstream out;
  std::ostringstream err;
  const int code = print_reply(request, json, reply, out, err);
  return {code, out.str(), err.str()};
}

task sample_task() {
  task t;
  t.id = 42;
  t.project = "alpha";
  t.type = "resize";
  t.priority = -3;
  t.payload = "{\"w\":10}";
  t.tags = {"gpu", "eu"};
  t.status = task_status::running;
  t.attempts = 1;
  t.max_attempts = 5;
  t.worker = "w-1";
  t.created_at = known_time;
  t.assigned_at = known_time + 1000;
  return t;
}

// Column start offsets of a table line: where a non-blank follows two blanks (or line start).
std::vector<std::size_t> column_starts(const std::string& line) {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < line.size(); ++i)
    if (line[i] != ' ' && (i == 0 || (i >= 2 && line[i - 1] == ' ' && line[i - 2] == ' ')))
      starts.push_back(i);
  return starts;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A ROUTER on a free loopback port that answers exactly one request on its own thread.
// `make_replies` turns the decoded request into the frames to send back, in order.
class fake_dispatcher {
 public:
  template <class MakeReplies>
  fake_dispatcher(zmq::context_t& context, MakeReplies make_replies)
      : router_(context, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this, make_replies] {
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      // Bounded wait: a broken client must fail the test, not hang it.
      if (zmq::poll(&item, 1, 5s) <= 0) return;
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(router_, std::back_inserter(parts))) return;
      frame_count_ = parts.size();
      protocol::request request;
      protocol::decode_failure why;
      const auto& body = parts.back();
      if (!protocol::decode(std::string_view(body.data<char>(), body.size()), request, why))
        return;
      received_ = request;
      for (const protocol::reply& reply : make_replies(request)) {
        std::string bytes;
        protocol::encode(reply, bytes);
        router_.send(zmq::buffer(parts.front().to_string()), zmq::send_flags::sndmore);
        router_.send(zmq::buffer(bytes), zmq::send_flags::none);
      }
    });
  }
  ~fake_dispatcher() {
    if (thread_.joinable()) thread_.join();
  }
  fake_dispatcher(const fake_dispatcher&) = delete;
  fake_dispatcher& operator=(const fake_dispatcher&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  // Valid after join().
  void join() { thread_.join(); }
  const std::optional<protocol::request>& received() const { return received_; }
  std::size_t frame_count() const { return frame_count_; }

 private:
  zmq::socket_t router_;
  std::string endpoint_;
  std::optional<protocol::request> received_;
  std::size_t frame_count_ = 0;
  std::thread thread_;
};

}  // namespace

TEST_CASE("RFC 3339 formatting", "[dispatchctl][time]") {
  CHECK_FALSE(format_rfc3339(0).has_value());
  CHECK(format_rfc3339(known_time) == std::optional<std::string>("2026-11-21T05:40:25.123Z"));
  CHECK(format_rfc3339(1) == std::optional<std::string>("1970-01-01T00:00:00.001Z"));
  CHECK(format_rfc3339(951782400000) == std::optional<std::string>("2000-02-29T00:00:00.000Z"));
}

TEST_CASE("RFC 3339 parsing", "[dispatchctl][time]") {
  using opt = std::optional<millis>;
  CHECK(parse_rfc3339("2026-11-21T05:40:25.123Z") == opt(known_time));
  CHECK(parse_rfc3339("2026-11-21T05:40:25Z") == opt(known_time - 123));
  CHECK(parse_rfc3339("2026-11-21t05:40:25.123z") == opt(known_time));  // RFC 3339 5.6 note
  CHECK(parse_rfc3339("2026-11-21T05:40:25.1Z") == opt(known_time - 23));
  CHECK(parse_rfc3339("2026-11-21T05:40:25.123999Z") == opt(known_time));  // truncated, not rounded
  CHECK(parse_rfc3339("1970-01-01T00:00:00.001Z") == opt(1));
  CHECK(parse_rfc3339("2000-02-29T00:00:00Z") == opt(951782400000));
  CHECK(parse_rfc3339("9999-12-31T23:59:59.999Z") == opt(253402300799999));

  for (const char* bad : {
           "",
           "2026-11-21",                      // no time
           "2026-11-21T05:40:25",             // no zone
           "2026-11-21T05:40:25+01:00",       // offsets are refused, only UTC
           "2026-11-21 05:40:25Z",            // space separator
           "2026-11-21T05:40:25.Z",           // fraction without digits
           "2026-11-21T05:40:25.123ZZ",       // trailing garbage
           "2026-11-21T5:40:25Z",             // short field
           "2026-13-01T00:00:00Z",            // month 13
           "2026-00-01T00:00:00Z",            // month 0
           "2026-04-31T00:00:00Z",            // April has 30 days
           "2025-02-29T00:00:00Z",            // not a leap year
           "2100-02-29T00:00:00Z",            // century, not a leap year
           "2026-11-21T24:00:00Z",            // hour 24
           "2026-11-21T23:60:00Z",            // minute 60
           "2026-12-31T23:59:60Z",            // leap second
           "1969-12-31T23:59:59Z",            // before the epoch
           "1970-01-01T00:00:00Z",            // the epoch itself is "unset" on the wire
           "+026-11-21T05:40:25Z",            // sign in the year
       }) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("RFC 3339 round trip with the formatter", "[dispatchctl][time]") {
  // Spread over the whole supported range, odd milliseconds included; leap days on the way.
  for (millis t = 1; t < 253402300799999; t += 7'777'777'777 + 13) {
    const auto text = format_rfc3339(t);
    REQUIRE(text);
    INFO(*text);
    CHECK(parse_rfc3339(*text) == std::optional<millis>(t));
  }
  CHECK(parse_rfc3339(*format_rfc3339(951868799999)) == std::optional<millis>(951868799999));
}

TEST_CASE("time arguments: RFC 3339, ms since the epoch, +DURATION", "[dispatchctl][time]") {
  using opt = std::optional<millis>;
  const millis now = known_time;
  CHECK(parse_time_arg("2026-11-21T05:40:25.123Z", now, false) == opt(known_time));
  CHECK(parse_time_arg("1795239625123", now, false) == opt(known_time));
  CHECK(parse_time_arg("+10s", now, true) == opt(now + 10'000));
  CHECK(parse_time_arg("+250", now, true) == opt(now + 250));  // bare number: ms
  CHECK(parse_time_arg("+2h", now, true) == opt(now + 7'200'000));
  CHECK_FALSE(parse_time_arg("+10s", now, false));  // only where relative times make sense
  CHECK_FALSE(parse_time_arg("+0s", now, true));    // already passed
  CHECK_FALSE(parse_time_arg("+", now, true));
  CHECK_FALSE(parse_time_arg("+10 s", now, true));
  CHECK_FALSE(parse_time_arg("+-10s", now, true));
  CHECK_FALSE(parse_time_arg("0", now, true));  // 0 is "unset" on the wire
  CHECK_FALSE(parse_time_arg("-5", now, true));
  CHECK_FALSE(parse_time_arg("12x", now, true));
  CHECK_FALSE(parse_time_arg("99999999999999999999", now, true));  // beyond int64
  CHECK_FALSE(parse_time_arg("", now, true));
}

TEST_CASE("UTF-8 check and base64", "[dispatchctl][encoding]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80"));
  CHECK_FALSE(is_valid_utf8("\xC3"));              // truncated
  CHECK_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(is_valid_utf8(std::string("\xFF\x00", 2)));
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode(std::string("\x00\xFF\xFE", 3)) == "AP/+");
}

TEST_CASE("task JSON has the documented keys and values", "[dispatchctl][json]") {
  const json j = task_json(sample_task());
  std::vector<std::string> keys;
  for (const auto& item : j.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{
                     "id", "project", "type", "priority", "status", "worker", "attempts",
                     "failures", "max_attempts", "timeout_ms", "tags", "idempotency_key", "created_at",
                     "assigned_at", "finished_at", "run_at", "deadline", "overdue",
                     "lease_expires_at", "error", "title", "description", "payload", "result"});
  CHECK(j["id"] == 42);
  CHECK(j["project"] == "alpha");
  CHECK(j["type"] == "resize");
  CHECK(j["priority"] == -3);
  CHECK(j["status"] == "running");
  CHECK(j["worker"] == "w-1");
  CHECK(j["attempts"] == 1);
  CHECK(j["max_attempts"] == 5);
  CHECK(j["timeout_ms"] == 300000);
  CHECK(j["tags"] == json::array({"gpu", "eu"}));
  CHECK(j["idempotency_key"].is_null());
  CHECK(j["created_at"] == "2026-11-21T05:40:25.123Z");
  CHECK(j["assigned_at"] == "2026-11-21T05:40:26.123Z");
  CHECK(j["finished_at"].is_null());
  CHECK(j["run_at"].is_null());
  CHECK(j["deadline"].is_null());
  CHECK(j["overdue"] == false);
  CHECK(j["lease_expires_at"].is_null());
  CHECK(j["error"] == "");
  CHECK(j["title"] == "");
  CHECK(j["description"] == "");
  CHECK(j["payload"] == "{\"w\":10}");
  CHECK(j["result"] == "");

  SECTION("no worker gives null, binary bytes go to *_base64") {
    task t = sample_task();
    t.worker.clear();
    t.payload = std::string("\x00\xFF\xFE", 3);
    const json b = task_json(t);
    CHECK(b["worker"].is_null());
    CHECK(b["payload"].is_null());
    CHECK(b["payload_base64"] == "AP/+");
    CHECK_FALSE(b.contains("result_base64"));
    // Must serialise even though the bytes are not text.
    CHECK_NOTHROW(dump_json(b));
  }

  SECTION("scheduling fields, when set") {
    task t = sample_task();
    t.status = task_status::scheduled;
    t.timeout_ms = 90'000;
    t.run_at = known_time + 60'000;
    t.deadline = known_time + 3'600'000;
    t.overdue = true;
    t.idempotency_key = "order-17";
    t.lease_expires_at = known_time + 5'000;
    const json k = task_json(t);
    CHECK(k["status"] == "scheduled");
    CHECK(k["timeout_ms"] == 90000);
    CHECK(k["run_at"] == "2026-11-21T05:41:25.123Z");
    CHECK(k["deadline"] == "2026-11-21T06:40:25.123Z");
    CHECK(k["overdue"] == true);
    CHECK(k["idempotency_key"] == "order-17");
    CHECK(k["lease_expires_at"] == "2026-11-21T05:40:30.123Z");
  }
}

TEST_CASE("stats JSON has every status and the documented shape", "[dispatchctl][json]") {
  protocol::stats s;
  s.tasks = {{"pending", 3}, {"running", 1}};
  protocol::worker_info w;
  w.id = "w-1";
  w.pool = worker_pool::reserve;
  w.state = "standby";
  w.capacity = 4;
  w.running = 2;
  w.completed = 10;
  w.failed = 1;
  w.types = {"resize"};
  w.tags = {"gpu"};
  s.workers = {w};
  protocol::project_info p;
  p.name = "alpha";
  p.paused = true;
  p.max_inflight = 8;
  p.weight = 2;
  p.counts = {{"completed", 7}};
  s.projects = {p};
  s.reserve_engagements = 5;
  s.reserve_releases = 4;
  s.completed_last_minute = 12;
  s.completed_last_hour = 700;
  s.wait_p50_ms = 3;
  s.wait_p90_ms = 40;
  s.wait_p99_ms = 250;
  w.last_heartbeat = 0;

  const json j = stats_json(s);
  const json expected = json::parse(R"({
    "tasks": {"pending": 3, "running": 1, "completed": 0, "failed": 0, "dead": 0, "cancelled": 0,
              "scheduled": 0},
    "workers": [{"id": "w-1", "pool": "reserve", "state": "standby", "capacity": 4, "running": 2,
                 "completed": 10, "failed": 1, "types": ["resize"], "tags": ["gpu"],
                 "last_heartbeat": null}],
    "projects": [{"name": "alpha", "paused": true, "max_inflight": 8, "weight": 2,
                  "pending": 0, "running": 0, "completed": 7, "failed": 0, "dead": 0,
                  "cancelled": 0, "scheduled": 0}],
    "reserve": {"engagements": 5, "releases": 4},
    "throughput": {"last_minute": 12, "last_hour": 700},
    "queue_wait_ms": {"p50": 3, "p90": 40, "p99": 250}
  })");
  CHECK(j == expected);
  CHECK(j["tasks"].size() == std::size_t(task_status_count));
  CHECK(workers_json(s.workers) == expected["workers"]);
  CHECK(projects_json(s.projects) == expected["projects"]);
}

TEST_CASE("tables align their columns under the header", "[dispatchctl][table]") {
  SECTION("generic table") {
    text_table t({"A", "LONGER", "C"});
    t.add_row({"xxxxxx", "y", "z"});
    t.add_row({"1", "2"});
    CHECK(t.render() == "A       LONGER  C\n"
                        "xxxxxx  y       z\n"
                        "1       2\n");
  }
  SECTION("tasks") {
    task a = sample_task();
    task b = sample_task();
    b.id = 7;
    b.project = "a-much-longer-project";
    b.worker.clear();
    b.created_at = 0;
    const auto lines = lines_of(render_tasks({a, b}));
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].rfind("ID  PROJECT", 0) == 0);
    const auto header = column_starts(lines[0]);
    CHECK(header.size() == 8);
    CHECK(column_starts(lines[1]) == header);
    CHECK(column_starts(lines[2]) == header);
    CHECK(lines[1].find("2026-11-21T05:40:25.123Z") != std::string::npos);
    CHECK(lines[2].find("  -  ") != std::string::npos);  // no worker
  }
  SECTION("workers and projects") {
    protocol::worker_info w1;
    w1.id = "w";
    w1.state = "active";
    protocol::worker_info w2;
    w2.id = "worker-with-long-name";
    w2.pool = worker_pool::reserve;
    w2.state = "standby";
    w2.completed = 123456;
    const auto workers = lines_of(render_workers({w1, w2}));
    REQUIRE(workers.size() == 3);
    CHECK(workers[0].rfind("ID", 0) == 0);
    CHECK(column_starts(workers[1]) == column_starts(workers[0]));
    CHECK(column_starts(workers[2]) == column_starts(workers[0]));

    protocol::project_info p;
    p.name = "alpha";
    p.counts = {{"pending", 12}, {"scheduled", 4}};
    const auto projects = lines_of(render_projects({p}));
    REQUIRE(projects.size() == 2);
    CHECK(column_starts(projects[0]).size() == 11);
    CHECK(column_starts(projects[1]) == column_starts(projects[0]));
    CHECK(projects[0].substr(projects[0].rfind("  ") + 2) == "SCHEDULED");
    CHECK(projects[1].back() == '4');

    protocol::stats s;
    s.tasks = {{"scheduled", 2}};
    const auto stats = lines_of(render_stats(s));
    REQUIRE_FALSE(stats.empty());
    CHECK(stats[0] == "tasks: pending 0, running 0, completed 0, failed 0, dead 0, cancelled 0, "
                      "scheduled 2");
  }
  SECTION("single task: scheduling lines only when set") {
    const std::string plain = render_task(sample_task());
    CHECK(plain.find("timeout:") != std::string::npos);
    CHECK(plain.find("5m") != std::string::npos);
    for (const char* absent : {"run_at", "deadline", "overdue", "lease_expires_at",
                               "idempotency_key"}) {
      INFO(absent);
      CHECK(plain.find(absent) == std::string::npos);
    }
    task t = sample_task();
    t.run_at = known_time + 60'000;
    t.deadline = known_time + 3'600'000;
    t.overdue = true;
    t.lease_expires_at = known_time + 5'000;
    t.idempotency_key = "order-17";
    const auto lines = lines_of(render_task(t));
    const auto has = [&](const std::string& name, const std::string& value) {
      for (const auto& line : lines)
        if (line.rfind(name + ":", 0) == 0 && line.size() >= value.size() &&
            line.compare(line.size() - value.size(), value.size(), value) == 0)
          return true;
      return false;
    };
    CHECK(has("run_at", "2026-11-21T05:41:25.123Z"));
    CHECK(has("deadline", "2026-11-21T06:40:25.123Z"));
    CHECK(has("overdue", "yes"));
    CHECK(has("lease_expires_at", "2026-11-21T05:40:30.123Z"));
    CHECK(has("idempotency_key", "order-17"));
  }
}

TEST_CASE("argument parsing", "[dispatchctl][cli]") {
  SECTION("defaults and a tasks query") {
    const auto r = parse({"tasks", "--project", "alpha", "--status", "dead", "--limit", "5"});
    REQUIRE(r.run);
    CHECK(r.run->endpoint == "tcp://127.0.0.1:5556");
    CHECK(r.run->timeout == 3s);
    CHECK_FALSE(r.run->json);
    const auto* list = std::get_if<protocol::list_tasks>(&r.run->request);
    REQUIRE(list);
    CHECK(list->project == std::optional<std::string>("alpha"));
    CHECK(list->status == std::optional<task_status>(task_status::dead));
    CHECK(list->limit == 5);
  }
  SECTION("--json before or after the command, global options after it") {
    CHECK(parse({"tasks", "--json"}).run->json);
    CHECK(parse({"--json", "tasks"}).run->json);
    const auto r = parse({"stats", "--timeout", "500ms", "--endpoint", "tcp://h:1"});
    REQUIRE(r.run);
    CHECK(r.run->timeout == 500ms);
    CHECK(r.run->endpoint == "tcp://h:1");
    CHECK(std::holds_alternative<protocol::get_stats>(r.run->request));
  }
  SECTION("submit") {
    const auto r = parse({"submit", "--project", "p", "--type", "t", "--priority", "-5",
                          "--payload", "hi", "--tags", "a,b", "--max-attempts", "7"});
    REQUIRE(r.run);
    const auto* s = std::get_if<protocol::submit>(&r.run->request);
    REQUIRE(s);
    REQUIRE(s->tasks.size() == 1);
    CHECK(s->tasks[0].project == "p");
    CHECK(s->tasks[0].type == "t");
    CHECK(s->tasks[0].priority == -5);
    CHECK(s->tasks[0].payload == "hi");
    CHECK(s->tasks[0].tags == std::vector<std::string>{"a", "b"});
    CHECK(s->tasks[0].max_attempts == 7);
    // Scheduling fields not given: the protocol defaults.
    CHECK(s->tasks[0].timeout_ms == 300000);
    CHECK(s->tasks[0].run_at == 0);
    CHECK(s->tasks[0].delay_ms == 0);
    CHECK(s->tasks[0].deadline == 0);
    CHECK(s->tasks[0].idempotency_key.empty());
  }
  SECTION("submit scheduling flags") {
    const millis now = known_time;
    auto spec = submitted_spec(
        parse_at(now, {"submit", "--project", "p", "--type", "t", "--task-timeout", "90s", "--delay",
                       "2m", "--deadline", "+10s", "--idempotency-key", "order-17"}));
    CHECK(spec.timeout_ms == 90000);
    CHECK(spec.delay_ms == 120000);
    CHECK(spec.run_at == 0);
    CHECK(spec.deadline == now + 10000);
    CHECK(spec.idempotency_key == "order-17");

    spec = submitted_spec(parse_at(now, {"submit", "--project", "p", "--type", "t", "--run-at",
                                         "2026-11-21T10:00:00Z", "--deadline",
                                         "2026-11-21T11:00:00.250Z"}));
    CHECK(spec.run_at == *parse_rfc3339("2026-11-21T10:00:00Z"));
    CHECK(spec.deadline == *parse_rfc3339("2026-11-21T11:00:00.250Z"));
    CHECK(spec.delay_ms == 0);

    spec = submitted_spec(parse_at(now, {"submit", "--project", "p", "--type", "t", "--run-at",
                                         "1795239625123", "--deadline", "1795239700000"}));
    CHECK(spec.run_at == known_time);
    CHECK(spec.deadline == 1795239700000);

    // Limits of the protocol are accepted: a lease of 1 ms and of a week, a key of 256 bytes.
    const std::string key(256, 'k');
    spec = submitted_spec(parse({"submit", "--project", "p", "--type", "t", "--task-timeout", "1",
                                 "--idempotency-key", key.c_str()}));
    CHECK(spec.timeout_ms == 1);
    CHECK(spec.idempotency_key == key);
    CHECK(submitted_spec(parse({"submit", "--project", "p", "--type", "t", "--task-timeout", "168h",
                                "--delay", "0"}))
              .timeout_ms == 604800000);

    // Without a fixed clock, +10s is counted from the wall clock at parse time.
    const auto before = wall_now();
    spec = submitted_spec(parse({"submit", "--project", "p", "--type", "t", "--deadline", "+10s"}));
    const auto after = wall_now();
    CHECK(spec.deadline >= before + 10000);
    CHECK(spec.deadline <= after + 10000);
  }
  SECTION("submit --task-timeout is the lease; --timeout stays the client's, in any position") {
    const auto r = parse({"submit", "--project", "p", "--type", "t", "--task-timeout", "1m",
                          "--timeout", "10s"});
    CHECK(submitted_spec(r).timeout_ms == 60000);
    CHECK(r.run->timeout == 10s);
  }
  SECTION("pool moves a worker; a pool name other than active or reserve is refused") {
    const auto r = parse({"pool", "w1", "reserve"});
    const auto& p = std::get<protocol::set_pool>(r.run->request);
    CHECK(p.worker == "w1");
    CHECK(p.pool == worker_pool::reserve);
    CHECK(parse({"pool", "w1", "spare"}).exit_code == 2);
  }
  SECTION("retry, remove and worker orders") {
    CHECK(std::get<protocol::retry_task>(parse({"retry", "7"}).run->request).task == 7);
    CHECK(std::get<protocol::remove_task>(parse({"remove", "8"}).run->request).task == 8);
    for (const auto& [command, order] : std::vector<std::pair<const char*, const char*>>{
             {"drain", "drain"}, {"undrain", "resume"}, {"retire", "stop"}}) {
      INFO(command);
      const auto r = parse({command, "w1", "--json"});
      REQUIRE(r.run);
      CHECK(r.run->json);
      const auto* o = std::get_if<protocol::worker_order>(&r.run->request);
      REQUIRE(o);
      CHECK(o->worker == "w1");
      CHECK(o->order == order);
    }
  }
  SECTION("positional arguments") {
    CHECK(std::get<protocol::get_task>(parse({"task", "12"}).run->request).task == 12);
    CHECK(std::get<protocol::cancel>(parse({"cancel", "9"}).run->request).task == 9);
    CHECK(std::get<protocol::pause_project>(parse({"pause", "p"}).run->request).project == "p");
    CHECK(std::get<protocol::resume_project>(parse({"resume", "p"}).run->request).project == "p");
    CHECK(std::holds_alternative<protocol::list_workers>(parse({"workers"}).run->request));
    CHECK(std::holds_alternative<protocol::list_projects>(parse({"projects"}).run->request));
  }
  SECTION("help exits 0 on stdout") {
    const auto r = parse({"--help"});
    CHECK_FALSE(r.run);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("payload_base64") != std::string::npos);
    CHECK(r.err.empty());
    CHECK(parse({"submit", "--help"}).exit_code == 0);
  }
  SECTION("usage errors exit 2 with a message on stderr") {
    for (const auto& args : std::vector<std::vector<const char*>>{
             {},                                        // no command
             {"frobnicate"},                            // unknown command
             {"submit", "--type", "t"},                 // missing --project
             {"task", "abc"},                           // non-numeric id
             {"task", "-1"},                            // negative id
             {"task", "0x10"},                          // not decimal
             {"task"},                                  // missing id
             {"tasks", "--status", "sleeping"},         // bad status
             {"tasks", "--limit", "0"},                 // out of range
             {"--timeout", "soon", "stats"},            // bad duration
             {"--timeout", "0s", "stats"},              // zero duration
             {"submit", "--project", "p", "--type", "t", "--max-attempts", "0"},
             {"submit", "--project", "p", "--type", "t", "--priority", "9999999999"},
             {"retry"},                                 // missing id
             {"retry", "x"},                            // non-numeric id
             {"remove", "0"},                           // ids start at 1
             {"drain"},                                 // missing worker
             {"undrain"},
             {"retire"},
         }) {
      std::vector<const char*> argv{"dispatchctl"};
      argv.insert(argv.end(), args.begin(), args.end());
      const auto r = parse_args(static_cast<int>(argv.size()), argv.data());
      INFO("args: " << (args.empty() ? "(none)" : args.front()) << " ... (" << args.size()
                    << " args)");
      CHECK_FALSE(r.run);
      CHECK(r.exit_code == exit_usage);
      CHECK(r.err.rfind("dispatchctl: ", 0) == 0);
    }
  }
}

TEST_CASE("bad scheduling values exit 2 naming the option", "[dispatchctl][cli]") {
  const std::string long_key(257, 'k');
  const std::vector<std::pair<std::vector<const char*>, std::string>> cases = {
      {{"--task-timeout", "0s"}, "--task-timeout"},
      {{"--task-timeout", "169h"}, "--task-timeout"},  // above the protocol's week
      {{"--task-timeout", "5 m"}, "--task-timeout"},
      {{"--task-timeout", "-5s"}, "--task-timeout"},
      {{"--delay", "soon"}, "--delay"},
      {{"--delay", "8d"}, "--delay"},
      {{"--delay", "169h"}, "--delay"},
      {{"--run-at", "2026-02-30T00:00:00Z"}, "--run-at"},
      {{"--run-at", "2026-11-21T10:00:00+01:00"}, "--run-at"},
      {{"--run-at", "+10s"}, "--run-at"},  // relative only for --deadline; --delay exists
      {{"--run-at", "0"}, "--run-at"},
      {{"--deadline", "tomorrow"}, "--deadline"},
      {{"--deadline", "+0s"}, "--deadline"},
      {{"--deadline", "+10x"}, "--deadline"},
      {{"--idempotency-key", ""}, "--idempotency-key"},
      {{"--idempotency-key", long_key.c_str()}, "--idempotency-key"},
      {{"--run-at", "1795239625123", "--delay", "5s"}, "--run-at"},  // ambiguous together
  };
  for (const auto& [extra, option] : cases) {
    std::vector<const char*> args{"submit", "--project", "p", "--type", "t"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = parse_at(known_time, args);
    INFO(extra.front() << " " << (extra.size() > 1 ? extra[1] : "") << "\n" << r.err);
    CHECK_FALSE(r.run);
    CHECK(r.exit_code == exit_usage);
    CHECK(r.err.rfind("dispatchctl: ", 0) == 0);
    CHECK(r.err.find(option) != std::string::npos);
  }
}

TEST_CASE("retry, remove and worker orders print one line or {\"ok\": true}",
          "[dispatchctl][commands]") {
  const std::vector<std::pair<protocol::request_body, std::string>> cases = {
      {protocol::retry_task{7}, "task 7 queued again\n"},
      {protocol::remove_task{7}, "task 7 removed\n"},
      {protocol::worker_order{"w1", "drain"}, "worker w1 draining\n"},
      {protocol::worker_order{"w1", "resume"}, "worker w1 taking work again\n"},
      {protocol::worker_order{"w1", "stop"}, "worker w1 retiring\n"},
  };
  for (const auto& [request, line] : cases) {
    INFO(line);
    const auto human = print(request, false, protocol::ok{});
    CHECK(human.code == exit_ok);
    CHECK(human.out == line);
    CHECK(human.err.empty());

    const auto machine = print(request, true, protocol::ok{});
    CHECK(machine.code == exit_ok);
    CHECK(json::parse(machine.out) == json{{"ok", true}});

    const auto refused = print(
        request, false, protocol::error{protocol::error_code::invalid_state, "not allowed"});
    CHECK(refused.code == exit_failure);
    CHECK(refused.out.empty());
    CHECK(refused.err == "dispatchctl: invalid_state: not allowed\n");

    // Anything but ok is a reply of the wrong kind.
    CHECK(print(request, false, protocol::submitted{{1}}).code == exit_failure);
  }
}

TEST_CASE("admin client talks to a real ROUTER", "[dispatchctl][client]") {
  zmq::context_t context;

  SECTION("request fields go out, the matching reply comes back") {
    fake_dispatcher server(context, [](const protocol::request& req) {
      protocol::task_list list;
      list.tasks = {sample_task()};
      // A stale reply to some earlier request must be skipped, not returned.
      return std::vector<protocol::reply>{{req.id + 100, protocol::ok{}}, {req.id, list}};
    });
    admin_client client(context, server.endpoint(), 2s);
    protocol::list_tasks query;
    query.project = "alpha";
    query.status = task_status::failed;
    query.limit = 17;
    const call_result result = client.call(query);
    server.join();

    REQUIRE(server.received());
    CHECK(server.frame_count() == 2);  // [identity, body]: no delimiter frame
    CHECK(server.received()->id != 0);
    const auto* sent = std::get_if<protocol::list_tasks>(&server.received()->body);
    REQUIRE(sent);
    CHECK(protocol::type_name(server.received()->body) == "tasks");
    CHECK(sent->project == std::optional<std::string>("alpha"));
    CHECK(sent->status == std::optional<task_status>(task_status::failed));
    CHECK(sent->limit == 17);

    const auto* body = std::get_if<protocol::reply_body>(&result);
    REQUIRE(body);
    const auto* list = std::get_if<protocol::task_list>(body);
    REQUIRE(list);
    REQUIRE(list->tasks.size() == 1);
    CHECK(list->tasks[0].id == 42);
  }

  SECTION("a dispatcher error prints code and message and exits 1") {
    fake_dispatcher server(context, [](const protocol::request& req) {
      return std::vector<protocol::reply>{
          {req.id, protocol::error{protocol::error_code::unknown_task, "no task 7"}}};
    });
    admin_client client(context, server.endpoint(), 2s);
    invocation inv;
    inv.endpoint = server.endpoint();
    inv.request = protocol::cancel{7};
    std::ostringstream out;
    std::ostringstream err;
    CHECK(execute(inv, client, out, err) == exit_failure);
    server.join();
    REQUIRE(server.received());
    CHECK(std::get<protocol::cancel>(server.received()->body).task == 7);
    CHECK(out.str().empty());
    CHECK(err.str() == "dispatchctl: unknown_task: no task 7\n");
  }

  SECTION("submit prints the new id, as JSON too") {
    fake_dispatcher server(context, [](const protocol::request& req) {
      return std::vector<protocol::reply>{{req.id, protocol::submitted{{1234}}}};
    });
    admin_client client(context, server.endpoint(), 2s);
    invocation inv;
    inv.json = true;
    inv.request = protocol::submit{{protocol::task_spec{"p", "t", 2, "x", {"a"}, 4, 90000,
                                                        known_time, 0, known_time + 10000,
                                                        "order-17", "Title", "Words"}}};
    std::ostringstream out;
    std::ostringstream err;
    CHECK(execute(inv, client, out, err) == exit_ok);
    server.join();
    CHECK(json::parse(out.str()) == json::parse(R"({"id": 1234})"));
    const auto& spec = std::get<protocol::submit>(server.received()->body).tasks.at(0);
    CHECK(spec.project == "p");
    CHECK(spec.type == "t");
    CHECK(spec.priority == 2);
    CHECK(spec.payload == "x");
    CHECK(spec.max_attempts == 4);
    CHECK(spec.timeout_ms == 90000);
    CHECK(spec.run_at == known_time);
    CHECK(spec.deadline == known_time + 10000);
    CHECK(spec.idempotency_key == "order-17");
    CHECK(spec.title == "Title");
    CHECK(spec.description == "Words");
  }

  SECTION("an unreachable endpoint times out") {
    std::string endpoint;
    {
      // Borrow a free port, then close it so nothing listens there.
      zmq::socket_t probe(context, zmq::socket_type::router);
      probe.set(zmq::sockopt::linger, 0);
      probe.bind("tcp://127.0.0.1:*");
      endpoint = probe.get(zmq::sockopt::last_endpoint);
    }
    admin_client client(context, endpoint, 200ms);
    const call_result result = client.call(protocol::get_stats{});
    const auto* failure = std::get_if<client_error>(&result);
    REQUIRE(failure);
    CHECK(failure->what == client_error::kind::timeout);
    CHECK(failure->message ==
          "no reply from " + endpoint + " within 200ms (is dispatcherd running?)");
  }

  SECTION("a malformed endpoint is a usage error") {
    admin_client client(context, "not-an-endpoint", 200ms);
    invocation inv;
    inv.request = protocol::get_stats{};
    std::ostringstream out;
    std::ostringstream err;
    CHECK(execute(inv, client, out, err) == exit_usage);
    CHECK(err.str().rfind("dispatchctl: cannot use endpoint", 0) == 0);
  }
}

// ---------------------------------------------------------------------------------------------
// tasks filters and paging, report.

namespace {

const protocol::list_tasks& tasks_query(const parse_result& r) {
  INFO(r.err);
  REQUIRE(r.run);
  const auto* q = std::get_if<protocol::list_tasks>(&r.run->request);
  REQUIRE(q);
  return *q;
}

// A ROUTER that answers `requests` `tasks` requests from a fixed set of tasks, as the store
// pages them (pages of at most `page_size`, which may be less than the limit asked, with `next`
// set when a page is full); request number `fail_at` (1-based, 0 = none) gets an error instead.
class paging_dispatcher {
 public:
  paging_dispatcher(zmq::context_t& context, std::vector<task> tasks, std::size_t requests,
                    std::size_t page_size, std::size_t fail_at = 0)
      : router_(context, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this, tasks = std::move(tasks), requests, page_size, fail_at] {
      for (std::size_t n = 1; n <= requests; ++n) {
        zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, 5s) <= 0) return;
        std::vector<zmq::message_t> parts;
        if (!zmq::recv_multipart(router_, std::back_inserter(parts))) return;
        protocol::request request;
        protocol::decode_failure why;
        const auto& body = parts.back();
        if (!protocol::decode(std::string_view(body.data<char>(), body.size()), request, why))
          return;
        const auto* q = std::get_if<protocol::list_tasks>(&request.body);
        if (q == nullptr) return;
        queries_.push_back(*q);
        protocol::reply reply{request.id, protocol::ok{}};
        if (n == fail_at) {
          reply.body = protocol::error{protocol::error_code::storage, "disk on fire"};
        } else {
          reply.body = page(tasks, *q, std::min<std::size_t>(page_size, q->limit));
        }
        std::string bytes;
        protocol::encode(reply, bytes);
        router_.send(zmq::buffer(parts.front().to_string()), zmq::send_flags::sndmore);
        router_.send(zmq::buffer(bytes), zmq::send_flags::none);
      }
    });
  }
  ~paging_dispatcher() {
    if (thread_.joinable()) thread_.join();
  }
  paging_dispatcher(const paging_dispatcher&) = delete;
  paging_dispatcher& operator=(const paging_dispatcher&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  void join() { thread_.join(); }
  const std::vector<protocol::list_tasks>& queries() const { return queries_; }  // after join

 private:
  static protocol::task_list page(std::vector<task> tasks, const protocol::list_tasks& q,
                                  std::size_t size) {
    std::sort(tasks.begin(), tasks.end(), [&](const task& a, const task& b) {
      return q.oldest_first ? a.id < b.id : a.id > b.id;
    });
    protocol::task_list out;
    for (const auto& t : tasks) {
      if (q.after != 0 && (q.oldest_first ? t.id <= q.after : t.id >= q.after)) continue;
      if (out.tasks.size() == size) break;
      out.tasks.push_back(t);
    }
    if (out.tasks.size() == size) out.next = out.tasks.back().id;
    return out;
  }

  zmq::socket_t router_;
  std::string endpoint_;
  std::vector<protocol::list_tasks> queries_;
  std::thread thread_;
};

task numbered_task(task_id id) {
  task t = sample_task();
  t.id = id;
  t.status = task_status::completed;
  return t;
}

// The fixed set of the report tests; times are offsets from known_time
// (2026-11-21T05:40:25.123Z).
std::vector<task> report_tasks() {
  std::vector<task> out;
  const auto add = [&](task_id id, const char* project, const char* type, const char* worker,
                       task_status st, std::uint32_t attempts, std::uint32_t failures,
                       millis created, millis assigned, millis finished, const char* error) {
    task t;
    t.id = id;
    t.project = project;
    t.type = type;
    t.worker = worker;
    t.status = st;
    t.attempts = attempts;
    t.failures = failures;
    t.created_at = known_time + created;
    t.assigned_at = assigned < 0 ? 0 : known_time + assigned;
    t.finished_at = known_time + finished;
    t.error = error;
    out.push_back(std::move(t));
  };
  add(1, "alpha", "resize", "w1", task_status::completed, 1, 0, 0, 1000, 4000, "");
  add(2, "beta", "mail,urgent", "w2", task_status::failed, 3, 3, 0, 500, 1500,
      "boom \"bad\"\nline2");
  add(3, "alpha", "resize", "", task_status::cancelled, 0, 0, 10, -1, 20, "");  // never assigned
  add(4, "alpha", "resize", "w1", task_status::dead, 3, 3, 0, 100, 101, "timeout");
  return out;
}

const std::string report_csv =
    "id,project,type,worker,status,attempts,failures,created_at,assigned_at,finished_at,"
    "wait_ms,run_ms,error\n"
    "1,alpha,resize,w1,completed,1,0,2026-11-21T05:40:25.123Z,2026-11-21T05:40:26.123Z,"
    "2026-11-21T05:40:29.123Z,1000,3000,\n"
    "2,beta,\"mail,urgent\",w2,failed,3,3,2026-11-21T05:40:25.123Z,2026-11-21T05:40:25.623Z,"
    "2026-11-21T05:40:26.623Z,500,1000,\"boom \"\"bad\"\"\nline2\"\n"
    "3,alpha,resize,,cancelled,0,0,2026-11-21T05:40:25.133Z,,2026-11-21T05:40:25.143Z,,,\n"
    "4,alpha,resize,w1,dead,3,3,2026-11-21T05:40:25.123Z,2026-11-21T05:40:25.223Z,"
    "2026-11-21T05:40:25.224Z,100,1,timeout\n"
    "\n"
    "scope,name,tasks,completed,failed,dead,cancelled,run_ms_total,run_ms_avg\n"
    "all,,4,1,1,1,1,4001,1334\n"
    "project,alpha,3,1,0,1,1,3001,1501\n"
    "project,beta,1,0,1,0,0,1000,1000\n"
    "worker,,1,0,0,0,1,0,\n"
    "worker,w1,2,1,0,1,0,3001,1501\n"
    "worker,w2,1,0,1,0,0,1000,1000\n";

}  // namespace

TEST_CASE("time filter bounds: absolute, +DURATION and -DURATION", "[dispatchctl][time]") {
  using opt = std::optional<millis>;
  const millis now = known_time;
  CHECK(parse_time_filter("2026-11-21T05:40:25.123Z", now) == opt(known_time));
  CHECK(parse_time_filter("1795239625123", now) == opt(known_time));
  CHECK(parse_time_filter("-1h", now) == opt(now - 3'600'000));
  CHECK(parse_time_filter("-250", now) == opt(now - 250));
  CHECK(parse_time_filter("+30m", now) == opt(now + 1'800'000));
  CHECK(parse_time_filter("-0s", now) == opt(now));
  CHECK(parse_time_filter("+0s", now) == opt(now));
  CHECK_FALSE(parse_time_filter("-", now));
  CHECK_FALSE(parse_time_filter("--1h", now));
  CHECK_FALSE(parse_time_filter("-1 h", now));
  CHECK_FALSE(parse_time_filter("-1000000h", now));  // before the epoch
  CHECK_FALSE(parse_time_filter("0", now));
  CHECK_FALSE(parse_time_filter("yesterday", now));
  CHECK_FALSE(parse_time_filter("", now));
}

TEST_CASE("tasks filters and paging flags parse into the exact request", "[dispatchctl][cli]") {
  const millis now = known_time;
  SECTION("every flag") {
    const auto r = parse_at(
        now, {"tasks", "--project", "alpha", "--status", "failed", "--type", "resize",
              "--worker", "w-1", "--priority-min", "-3", "--priority-max", "7",
              "--created-from", "2026-11-20T00:00:00Z", "--created-to", "1795239625123",
              "--finished-from", "-2h", "--finished-to=+30m", "--text", "Nightly Report",
              "--limit", "250", "--after", "9001", "--oldest"});
    const auto& q = tasks_query(r);
    protocol::list_tasks expected;
    expected.project = "alpha";
    expected.status = task_status::failed;
    expected.type = "resize";
    expected.worker = "w-1";
    expected.priority_min = -3;
    expected.priority_max = 7;
    expected.created_from = *parse_rfc3339("2026-11-20T00:00:00Z");
    expected.created_to = 1795239625123;
    expected.finished_from = now - 7'200'000;
    expected.finished_to = now + 1'800'000;
    expected.text = "Nightly Report";
    expected.limit = 250;
    expected.after = 9001;
    expected.oldest_first = true;
    CHECK(q.project == expected.project);
    CHECK(q.status == expected.status);
    CHECK(q.type == expected.type);
    CHECK(q.worker == expected.worker);
    CHECK(q.priority_min == expected.priority_min);
    CHECK(q.priority_max == expected.priority_max);
    CHECK(q.created_from == expected.created_from);
    CHECK(q.created_to == expected.created_to);
    CHECK(q.finished_from == expected.finished_from);
    CHECK(q.finished_to == expected.finished_to);
    CHECK(q.text == expected.text);
    CHECK(q.limit == expected.limit);
    CHECK(q.after == expected.after);
    CHECK(q.oldest_first == expected.oldest_first);
    CHECK_FALSE(r.run->all_pages);
    CHECK_FALSE(r.run->report);
    // And the same bytes on the wire as the request built by hand.
    std::string sent, wanted;
    protocol::encode(protocol::request{1, q}, sent);
    protocol::encode(protocol::request{1, expected}, wanted);
    CHECK(sent == wanted);
  }
  SECTION("nothing but the command: no filter, newest first, 100 a page") {
    const auto r = parse_at(now, {"tasks"});
    const auto& q = tasks_query(r);
    std::string sent, wanted;
    protocol::encode(protocol::request{1, q}, sent);
    protocol::encode(protocol::request{1, protocol::list_tasks{}}, wanted);
    CHECK(sent == wanted);
  }
  SECTION("--all") {
    const auto r = parse_at(now, {"tasks", "--all", "--limit", "1000", "--project", "p"});
    CHECK(r.run->all_pages);
    CHECK(tasks_query(r).limit == 1000);
  }
  SECTION("submit --title and --description") {
    const auto spec = submitted_spec(parse({"submit", "--project", "p", "--type", "t", "--title",
                                            "Nightly report", "--description", "Sums, by day"}));
    CHECK(spec.title == "Nightly report");
    CHECK(spec.description == "Sums, by day");
  }
  SECTION("report") {
    auto r = parse_at(now, {"report", "--from", "-24h", "--to", "2026-11-21T05:40:25.123Z",
                            "--project", "alpha"});
    auto q = tasks_query(r);
    CHECK(q.finished_from == now - 86'400'000);
    CHECK(q.finished_to == known_time);
    CHECK(q.project == std::optional<std::string>("alpha"));
    CHECK(q.oldest_first);
    CHECK(q.limit == report_page_size);
    CHECK(q.after == 0);
    CHECK_FALSE(q.status);
    REQUIRE(r.run->report);
    CHECK(r.run->report->format == report_format::csv);

    r = parse_at(now, {"report", "--from", "1", "--to", "2", "--format", "json"});
    CHECK(r.run->report->format == report_format::json);
    CHECK_FALSE(tasks_query(r).project);
    r = parse_at(now, {"report", "--from", "1", "--to", "2", "--json"});
    CHECK(r.run->report->format == report_format::json);
    r = parse_at(now, {"--json", "report", "--from", "1", "--to", "2", "--format", "csv"});
    CHECK(r.run->report->format == report_format::csv);
  }
  SECTION("bad values exit 2 naming what is wrong") {
    const std::string long_text(257, 'x');
    const std::string long_description(4097, 'x');
    const std::vector<std::pair<std::vector<const char*>, std::string>> cases = {
        {{"tasks", "--priority-min", "high"}, "--priority-min"},
        {{"tasks", "--priority-max", "2147483648"}, "--priority-max"},
        {{"tasks", "--created-from", "yesterday"}, "--created-from"},
        {{"tasks", "--created-to", "0"}, "--created-to"},
        {{"tasks", "--finished-from", "-1x"}, "--finished-from"},
        {{"tasks", "--finished-to", "2026-11-21T10:00:00+01:00"}, "--finished-to"},
        {{"tasks", "--text", long_text.c_str()}, "--text"},
        {{"tasks", "--after", "0"}, "--after"},
        {{"tasks", "--after", "-4"}, "--after"},
        {{"tasks", "--limit", "10001"}, "--limit"},
        {{"submit", "--project", "p", "--type", "t", "--title", long_text.c_str()}, "--title"},
        {{"submit", "--project", "p", "--type", "t", "--description", long_description.c_str()},
         "--description"},
        {{"report", "--to", "2"}, "--from"},
        {{"report", "--from", "1"}, "--to"},
        {{"report", "--from", "5", "--to", "5"}, "--to"},
        {{"report", "--from", "-1h", "--to", "-2h"}, "--to"},
        {{"report", "--from", "1", "--to", "2", "--format", "xml"}, "--format"},
    };
    for (const auto& [args, option] : cases) {
      const auto r = parse_at(now, args);
      INFO(args.front() << " " << args[1] << "\n" << r.err);
      CHECK_FALSE(r.run);
      CHECK(r.exit_code == exit_usage);
      CHECK(r.err.rfind("dispatchctl: ", 0) == 0);
      CHECK(r.err.find(option) != std::string::npos);
    }
  }
}

TEST_CASE("a tasks page that may have more ends with the cursor", "[dispatchctl][commands]") {
  protocol::task_list page;
  page.tasks = {numbered_task(9), numbered_task(8)};
  page.next = 8;
  const auto human = print(protocol::list_tasks{}, false, page);
  CHECK(human.code == exit_ok);
  CHECK(lines_of(human.out).size() == 4);
  CHECK(lines_of(human.out).back() == "next page: --after 8");
  // --json keeps its shape: the array only.
  const auto machine = print(protocol::list_tasks{}, true, page);
  CHECK(json::parse(machine.out) == tasks_json(page.tasks));
  page.next = 0;
  CHECK(lines_of(print(protocol::list_tasks{}, false, page).out).size() == 3);
}

TEST_CASE("the report writes rows and totals as CSV", "[dispatchctl][report]") {
  std::ostringstream out;
  report_writer w(report_format::csv, out);
  w.begin();
  for (const auto& t : report_tasks()) w.add(t);
  w.finish();
  CHECK(out.str() == report_csv);

  std::ostringstream empty;
  report_writer none(report_format::csv, empty);
  none.begin();
  none.finish();
  CHECK(empty.str() ==
        "id,project,type,worker,status,attempts,failures,created_at,assigned_at,finished_at,"
        "wait_ms,run_ms,error\n\nscope,name,tasks,completed,failed,dead,cancelled,"
        "run_ms_total,run_ms_avg\nall,,0,0,0,0,0,0,\n");
}

TEST_CASE("the report writes rows and totals as one JSON object", "[dispatchctl][report]") {
  std::ostringstream out;
  report_writer w(report_format::json, out);
  w.begin();
  for (const auto& t : report_tasks()) w.add(t);
  w.finish();
  const std::string text = out.str();
  INFO(text);
  REQUIRE(json::accept(text));
  const json doc = json::parse(text);
  const json expected = json::parse(R"({
    "tasks": [
      {"id": 1, "project": "alpha", "type": "resize", "worker": "w1", "status": "completed",
       "attempts": 1, "failures": 0, "created_at": "2026-11-21T05:40:25.123Z",
       "assigned_at": "2026-11-21T05:40:26.123Z", "finished_at": "2026-11-21T05:40:29.123Z",
       "wait_ms": 1000, "run_ms": 3000, "error": ""},
      {"id": 2, "project": "beta", "type": "mail,urgent", "worker": "w2", "status": "failed",
       "attempts": 3, "failures": 3, "created_at": "2026-11-21T05:40:25.123Z",
       "assigned_at": "2026-11-21T05:40:25.623Z", "finished_at": "2026-11-21T05:40:26.623Z",
       "wait_ms": 500, "run_ms": 1000, "error": "boom \"bad\"\nline2"},
      {"id": 3, "project": "alpha", "type": "resize", "worker": null, "status": "cancelled",
       "attempts": 0, "failures": 0, "created_at": "2026-11-21T05:40:25.133Z",
       "assigned_at": null, "finished_at": "2026-11-21T05:40:25.143Z",
       "wait_ms": null, "run_ms": null, "error": ""},
      {"id": 4, "project": "alpha", "type": "resize", "worker": "w1", "status": "dead",
       "attempts": 3, "failures": 3, "created_at": "2026-11-21T05:40:25.123Z",
       "assigned_at": "2026-11-21T05:40:25.223Z", "finished_at": "2026-11-21T05:40:25.224Z",
       "wait_ms": 100, "run_ms": 1, "error": "timeout"}
    ],
    "totals": {
      "all": {"tasks": 4, "completed": 1, "failed": 1, "dead": 1, "cancelled": 1,
              "run_ms_total": 4001, "run_ms_avg": 1334},
      "projects": [
        {"project": "alpha", "tasks": 3, "completed": 1, "failed": 0, "dead": 1, "cancelled": 1,
         "run_ms_total": 3001, "run_ms_avg": 1501},
        {"project": "beta", "tasks": 1, "completed": 0, "failed": 1, "dead": 0, "cancelled": 0,
         "run_ms_total": 1000, "run_ms_avg": 1000}
      ],
      "workers": [
        {"worker": null, "tasks": 1, "completed": 0, "failed": 0, "dead": 0, "cancelled": 1,
         "run_ms_total": 0, "run_ms_avg": null},
        {"worker": "w1", "tasks": 2, "completed": 1, "failed": 0, "dead": 1, "cancelled": 0,
         "run_ms_total": 3001, "run_ms_avg": 1501},
        {"worker": "w2", "tasks": 1, "completed": 0, "failed": 1, "dead": 0, "cancelled": 0,
         "run_ms_total": 1000, "run_ms_avg": 1000}
      ]
    }
  })");
  CHECK(doc == expected);
  // Written as it goes: the opening, then one row a line.
  const auto lines = lines_of(text);
  REQUIRE(lines.size() > 6);
  CHECK(lines[0] == "{\"tasks\": [");
  for (std::size_t i = 1; i <= 4; ++i) {
    std::string row = lines[i];
    if (i < 4) {
      REQUIRE(row.back() == ',');
      row.pop_back();
    }
    CHECK(json::parse(row)["id"] == i);
  }

  std::ostringstream empty;
  report_writer none(report_format::json, empty);
  none.begin();
  none.finish();
  REQUIRE(json::accept(empty.str()));
  CHECK(json::parse(empty.str())["tasks"] == json::array());
  CHECK(json::parse(empty.str())["totals"]["all"]["tasks"] == 0);
}

TEST_CASE("tasks --all and report follow the pages to the end", "[dispatchctl][commands]") {
  zmq::context_t context;
  const auto run = [&](const std::string& endpoint, std::vector<const char*> args) {
    args.push_back("--endpoint");
    args.push_back(endpoint.c_str());
    const auto parsed = parse_at(known_time, args);
    INFO(parsed.err);
    REQUIRE(parsed.run);
    admin_client client(context, parsed.run->endpoint, 2s);
    std::ostringstream out, err;
    const int code = execute(*parsed.run, client, out, err);
    return printed{code, out.str(), err.str()};
  };
  std::vector<task> five;
  for (task_id id = 1; id <= 5; ++id) five.push_back(numbered_task(id));

  SECTION("--json: the array one request would give") {
    paging_dispatcher server(context, five, 3, 2);
    const auto r = run(server.endpoint(), {"tasks", "--all", "--limit", "2", "--json"});
    server.join();
    CHECK(r.code == exit_ok);
    std::vector<task> newest(five.rbegin(), five.rend());
    CHECK(r.out == dump_json(tasks_json(newest)) + "\n");
    REQUIRE(server.queries().size() == 3);
    CHECK(server.queries()[0].after == 0);
    CHECK(server.queries()[1].after == 4);
    CHECK(server.queries()[2].after == 2);
  }
  SECTION("table: the header once") {
    paging_dispatcher server(context, five, 3, 2);
    const auto r = run(server.endpoint(), {"tasks", "--all", "--limit", "2", "--oldest"});
    server.join();
    CHECK(r.code == exit_ok);
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 6);
    CHECK(lines[0].rfind("ID", 0) == 0);
    for (std::size_t i = 1; i < 6; ++i) CHECK(lines[i].rfind(std::to_string(i), 0) == 0);
    CHECK(server.queries()[1].oldest_first);
  }
  SECTION("nothing at all") {
    paging_dispatcher server(context, {}, 1, 2);
    const auto r = run(server.endpoint(), {"tasks", "--all", "--json"});
    server.join();
    CHECK(r.out == "[]\n");
  }
  SECTION("report over pages smaller than asked") {
    paging_dispatcher server(context, report_tasks(), 3, 2);
    const auto r = run(server.endpoint(),
                       {"report", "--from", "2026-11-21T00:00:00Z", "--to", "-0s"});
    server.join();
    CHECK(r.code == exit_ok);
    CHECK(r.err.empty());
    CHECK(r.out == report_csv);
    REQUIRE(server.queries().size() == 3);
    for (const auto& q : server.queries()) {
      CHECK(q.finished_from == *parse_rfc3339("2026-11-21T00:00:00Z"));
      CHECK(q.finished_to == known_time);
      CHECK(q.oldest_first);
      CHECK(q.limit == report_page_size);
    }
  }
  SECTION("a failed page stops the report with exit 1") {
    paging_dispatcher server(context, report_tasks(), 2, 2, /*fail_at=*/2);
    const auto r = run(server.endpoint(), {"report", "--from", "1", "--to", "2"});
    server.join();
    CHECK(r.code == exit_failure);
    CHECK(r.err == "dispatchctl: storage: disk on fire\n");
    // The header and the first page's two rows; no totals.
    CHECK(r.out == report_csv.substr(0, report_csv.find("3,alpha")));
  }
}
