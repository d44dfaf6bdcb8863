// dispatchctl: time and JSON formatting, tables, argument parsing, and the admin client
// against a real ZeroMQ ROUTER played by the test.
#include <catch2/catch.hpp>

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
  CHECK(keys == std::vector<std::string>{"id", "project", "type", "priority", "status", "worker",
                                         "attempts", "max_attempts", "tags", "created_at",
                                         "assigned_at", "finished_at", "error", "payload",
                                         "result"});
  CHECK(j["id"] == 42);
  CHECK(j["project"] == "alpha");
  CHECK(j["type"] == "resize");
  CHECK(j["priority"] == -3);
  CHECK(j["status"] == "running");
  CHECK(j["worker"] == "w-1");
  CHECK(j["attempts"] == 1);
  CHECK(j["max_attempts"] == 5);
  CHECK(j["tags"] == json::array({"gpu", "eu"}));
  CHECK(j["created_at"] == "2026-11-21T05:40:25.123Z");
  CHECK(j["assigned_at"] == "2026-11-21T05:40:26.123Z");
  CHECK(j["finished_at"].is_null());
  CHECK(j["error"] == "");
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

  const json j = stats_json(s);
  const json expected = json::parse(R"({
    "tasks": {"pending": 3, "running": 1, "completed": 0, "failed": 0, "dead": 0, "cancelled": 0},
    "workers": [{"id": "w-1", "pool": "reserve", "state": "standby", "capacity": 4, "running": 2,
                 "completed": 10, "failed": 1, "types": ["resize"], "tags": ["gpu"]}],
    "projects": [{"name": "alpha", "paused": true, "max_inflight": 8, "weight": 2,
                  "pending": 0, "running": 0, "completed": 7, "failed": 0, "dead": 0,
                  "cancelled": 0}],
    "reserve": {"engagements": 5, "releases": 4}
  })");
  CHECK(j == expected);
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
    p.counts = {{"pending", 12}};
    const auto projects = lines_of(render_projects({p}));
    REQUIRE(projects.size() == 2);
    CHECK(column_starts(projects[0]).size() == 10);
    CHECK(column_starts(projects[1]) == column_starts(projects[0]));
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
    inv.request = protocol::submit{{protocol::task_spec{"p", "t", 2, "x", {"a"}, 4}}};
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
