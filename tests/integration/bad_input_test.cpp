// Bad input against a real dispatcherd: undecodable, misaddressed, oversized and misframed
// messages, a flood of garbage, and bad command lines / data directories. Every refusal must
// carry the documented error code, leave the daemon answering, and store nothing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/codec.hpp"
#include "tests/integration/harness.hpp"

using namespace dispatch;
using namespace dispatch::testing;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// A minimal msgpack writer, so that tests can build exactly the bytes they need (wrong types,
// duplicate keys, missing fields) which the real encoder would never produce.
class mp {
 public:
  mp& map(std::uint32_t n) { return header(n, 0x80, 16, 0xde, 0xdf); }
  mp& arr(std::uint32_t n) { return header(n, 0x90, 16, 0xdc, 0xdd); }
  mp& str(std::string_view s) {
    if (s.size() < 32) {
      put(0xa0 | s.size());
    } else if (s.size() < 256) {
      put(0xd9);
      put(s.size());
    } else {
      header(static_cast<std::uint32_t>(s.size()), 0, 0, 0xda, 0xdb);
    }
    bytes_.append(s);
    return *this;
  }
  mp& uint(std::uint64_t v) {
    if (v < 128) {
      put(v);
    } else if (v < 256) {
      put(0xcc);
      put(v);
    } else if (v < 65536) {
      put(0xcd);
      be(v, 2);
    } else if (v <= 0xffffffffu) {
      put(0xce);
      be(v, 4);
    } else {
      put(0xcf);
      be(v, 8);
    }
    return *this;
  }
  mp& sint(std::int64_t v) {
    if (v >= 0) return uint(static_cast<std::uint64_t>(v));
    if (v >= -32) {
      put(static_cast<std::uint64_t>(v) & 0xff);
    } else {
      put(0xd3);
      be(static_cast<std::uint64_t>(v), 8);
    }
    return *this;
  }
  mp& f64(double v) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    put(0xcb);
    be(bits, 8);
    return *this;
  }
  mp& boolean(bool b) {
    put(b ? 0xc3 : 0xc2);
    return *this;
  }
  mp& nil() {
    put(0xc0);
    return *this;
  }
  mp& raw(std::string_view bytes) {
    bytes_.append(bytes);
    return *this;
  }
  // "v", "type", "id" as the first three of `entries` map entries.
  mp& envelope(std::string_view type, std::uint64_t id, std::uint32_t entries = 3) {
    return map(entries).str("v").uint(1).str("type").str(type).str("id").uint(id);
  }
  const std::string& bytes() const { return bytes_; }
  operator std::string() const { return bytes_; }

 private:
  void put(std::uint64_t byte) { bytes_.push_back(static_cast<char>(byte & 0xff)); }
  void be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) put(v >> (8 * i));
  }
  mp& header(std::uint32_t n, std::uint8_t fix, std::uint32_t fix_limit, std::uint8_t b16,
             std::uint8_t b32) {
    if (n < fix_limit) {
      put(fix | n);
    } else if (n < 65536) {
      put(b16);
      be(n, 2);
    } else {
      put(b32);
      be(n, 4);
    }
    return *this;
  }
  std::string bytes_;
};

// With the harness's token: these tests are about what the decoder makes of the frame.
std::string encoded(protocol::request r) {
  r.token = test_admin_token;
  std::string out;
  protocol::encode(r, out);
  return out;
}

// A valid submit of one task whose frame is exactly `size` bytes (payload padded).
std::string submit_frame_of_size(std::size_t size, std::uint64_t id) {
  protocol::request r{id, protocol::submit{{echo_task("big")}}, test_admin_token};
  auto& payload = std::get<protocol::submit>(r.body).tasks[0].payload;
  std::string out;
  for (int i = 0; i < 4; ++i) {
    protocol::encode(r, out);
    if (out.size() == size) break;
    if (out.size() < size)
      payload.append(size - out.size(), 'x');
    else
      payload.resize(payload.size() - std::min(payload.size(), out.size() - size));
  }
  REQUIRE(out.size() == size);
  return out;
}

struct refusal {
  std::uint64_t id = 0;
  std::string code;
  std::string message;
};

// Sends `frames` as one message and returns the error it must be answered with.
refusal refused(wire_client& c, const std::vector<std::string>& frames) {
  c.send_frames(frames);
  const auto r = c.receive(5s);
  REQUIRE(r.has_value());
  const auto* e = std::get_if<protocol::error>(&r->body);
  INFO("reply type: " << protocol::type_name(r->body));
  REQUIRE(e != nullptr);
  return {r->id, std::string(protocol::to_string(e->code)), e->message};
}

refusal refused(wire_client& c, const std::string& frame) {
  return refused(c, std::vector<std::string>{frame});
}

// The daemon still answers and holds no task, project or worker.
void check_healthy_and_empty(dispatcher_process& d) {
  REQUIRE(d.process().running());
  const auto s = d.stats();
  for (const char* status : {"pending", "running", "completed", "failed", "dead", "cancelled"}) {
    INFO("status " << status);
    REQUIRE(s.tasks.count(status) == 1);
    CHECK(s.tasks.at(status) == 0);
  }
  CHECK(s.projects.empty());
  CHECK(s.workers.empty());
}

std::uint64_t total_tasks(const protocol::stats& s) {
  std::uint64_t n = 0;
  for (const auto& [status, count] : s.tasks) n += count;
  return n;
}

struct bad_case {
  std::string name;
  std::string frame;
  std::string code;
  std::uint64_t id;         // expected reply id
  std::string message_has;  // for bad_field: the message starts with "<field>:"
};

void run_cases(dispatcher_process& d, const std::string& endpoint, const std::vector<bad_case>& cases) {
  wire_client c(endpoint);
  for (const auto& bc : cases) {
    INFO("case: " << bc.name);
    const auto r = refused(c, bc.frame);
    INFO("message: " << r.message);
    CHECK(r.code == bc.code);
    CHECK(r.id == bc.id);
    CHECK_FALSE(r.message.empty());
    if (!bc.message_has.empty()) {
      if (bc.code == "bad_field")
        CHECK_THAT(r.message, StartsWith(bc.message_has + ":"));
      else
        CHECK_THAT(r.message, Contains(bc.message_has));
    }
  }
  check_healthy_and_empty(d);
}

std::vector<std::string> daemon_argv(const std::string& data_dir, std::vector<std::string> extra) {
  const auto ports = free_ports(2);
  std::vector<std::string> argv = {dispatcherd_path(),        "--data-dir",       data_dir,
                                   "--work-endpoint",         tcp_endpoint(ports[0]),
                                   "--admin-endpoint",        tcp_endpoint(ports[1]),
                                   "--threads",               "2"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

}  // namespace

TEST_CASE("frames that are not a msgpack map are malformed") {
  dispatcher_process d;
  std::string deep = mp().envelope("stats", 9, 4).str("x");
  for (int i = 0; i < 40; ++i) deep += mp().arr(1).bytes();
  deep += mp().nil().bytes();

  run_cases(d, d.admin_endpoint(),
            {
                {"reserved byte 0xc1", "\xc1", "malformed", 0, ""},
                {"plain text", "this is not msgpack at all", "malformed", 0, ""},
                {"binary junk", std::string("\xff\x00\xfe\x01\xc1\x7f", 6), "malformed", 0, ""},
                {"array", mp().arr(3).uint(1).uint(2).uint(3), "malformed", 0, "map"},
                {"array holding a valid request", mp().arr(1).raw(mp().envelope("stats", 4).bytes()),
                 "malformed", 0, "map"},
                {"string", mp().str("stats"), "malformed", 0, "map"},
                {"integer", mp().uint(1), "malformed", 0, "map"},
                {"nil", mp().nil(), "malformed", 0, "map"},
                {"truncated map", mp().map(1).str("v"), "malformed", 0, "truncated"},
                {"truncated string", mp().map(1).raw("\xa5v"), "malformed", 0, ""},
                {"map declaring more entries than the frame holds",
                 mp().map(3).str("v").uint(1), "malformed", 0, ""},
                {"trailing bytes", mp().envelope("stats", 5).raw(std::string(1, '\0')),
                 "malformed", 0, "trailing"},
                {"nested too deep", deep, "malformed", 0, "deeper"},
                {"absurd array length", "\xdd\xff\xff\xff\xff", "malformed", 0, ""},
                {"absurd map length", "\xdf\x7f\xff\xff\xff\x01\x02", "malformed", 0, ""},
                {"absurd string length", "\xdb\xff\xff\xff\xf0", "malformed", 0, ""},
            });
}

TEST_CASE("an empty frame is malformed") {
  dispatcher_process d;
  for (const auto& endpoint : {d.work_endpoint(), d.admin_endpoint()}) {
    wire_client c(endpoint);
    const auto r = refused(c, std::string());
    CHECK(r.code == "malformed");
    CHECK(r.id == 0);
    CHECK_THAT(r.message, Contains("empty"));
    // The connection is still usable.
    expect<protocol::submitted>(c.call(protocol::submit{{echo_task("after-empty")}}));
  }
  const auto s = d.stats();
  CHECK(s.tasks.at("pending") == 2);
}

TEST_CASE("a missing or unsupported version is refused, echoing the id when readable") {
  dispatcher_process d;
  run_cases(d, d.admin_endpoint(),
            {
                {"no v", mp().map(2).str("type").str("stats").str("id").uint(5),
                 "unsupported_version", 5, "v"},
                {"v = 2", mp().map(3).str("v").uint(2).str("type").str("stats").str("id").uint(6),
                 "unsupported_version", 6, "v"},
                {"v = 0", mp().map(3).str("v").uint(0).str("type").str("stats").str("id").uint(7),
                 "unsupported_version", 7, "v"},
                {"v as a string",
                 mp().map(3).str("v").str("1").str("type").str("stats").str("id").uint(8),
                 "unsupported_version", 8, "v"},
                {"v nil", mp().map(3).str("v").nil().str("type").str("stats").str("id").uint(10),
                 "unsupported_version", 10, "v"},
                {"v = 2 before a bad type",
                 mp().map(3).str("v").uint(2).str("type").str("nonsense").str("id").uint(11),
                 "unsupported_version", 11, "v"},
                {"empty map", mp().map(0), "unsupported_version", 0, "v"},
                // A submit in a future version must not be stored.
                {"submit with v = 2",
                 mp().map(4).str("v").uint(2).str("type").str("submit").str("id").uint(12)
                     .str("tasks").arr(1).map(2).str("project").str("p").str("type").str("echo"),
                 "unsupported_version", 12, "v"},
            });
}

TEST_CASE("an unknown type is refused with unknown_type, quoting it") {
  dispatcher_process d;
  run_cases(d, d.admin_endpoint(),
            {
                {"made-up type", mp().envelope("frobnicate", 30), "unknown_type", 30,
                 "frobnicate"},
                {"a reply type", mp().envelope("registered", 31), "unknown_type", 31,
                 "registered"},
                {"empty type", mp().envelope("", 32), "unknown_type", 32, ""},
                {"case matters", mp().envelope("STATS", 33), "unknown_type", 33, "STATS"},
            });
  run_cases(d, d.work_endpoint(),
            {{"made-up type on work", mp().envelope("submitt", 34), "unknown_type", 34,
              "submitt"}});
}

TEST_CASE("missing, mistyped, out-of-range and repeated fields are bad_field naming the field") {
  dispatcher_process d;
  run_cases(
      d, d.admin_endpoint(),
      {
          {"status without task", mp().envelope("status", 10), "bad_field", 10, "task"},
          {"status task as string", mp().envelope("status", 11, 4).str("task").str("12"),
           "bad_field", 11, "task"},
          {"status task negative", mp().envelope("status", 12, 4).str("task").sint(-1),
           "bad_field", 12, "task"},
          {"status task float", mp().envelope("status", 13, 4).str("task").f64(1.5), "bad_field",
           13, "task"},
          {"cancel task as bool", mp().envelope("cancel", 14, 4).str("task").boolean(true),
           "bad_field", 14, "task"},
          {"submit without tasks", mp().envelope("submit", 15), "bad_field", 15, "tasks"},
          {"submit with no tasks", mp().envelope("submit", 16, 4).str("tasks").arr(0),
           "bad_field", 16, "tasks"},
          {"submit tasks as map", mp().envelope("submit", 17, 4).str("tasks").map(0),
           "bad_field", 17, "tasks"},
          {"task without project",
           mp().envelope("submit", 18, 4).str("tasks").arr(1).map(1).str("type").str("echo"),
           "bad_field", 18, "tasks[0].project"},
          {"task with empty type",
           mp().envelope("submit", 19, 4).str("tasks").arr(1).map(2).str("project").str("p")
               .str("type").str(""),
           "bad_field", 19, "tasks[0].type"},
          {"task priority as string",
           mp().envelope("submit", 20, 4).str("tasks").arr(1).map(3).str("project").str("p")
               .str("type").str("echo").str("priority").str("high"),
           "bad_field", 20, "tasks[0].priority"},
          {"task priority beyond int32",
           mp().envelope("submit", 21, 4).str("tasks").arr(1).map(3).str("project").str("p")
               .str("type").str("echo").str("priority").uint(1ull << 31),
           "bad_field", 21, "tasks[0].priority"},
          {"task max_attempts 0",
           mp().envelope("submit", 22, 4).str("tasks").arr(1).map(3).str("project").str("p")
               .str("type").str("echo").str("max_attempts").uint(0),
           "bad_field", 22, "tasks[0].max_attempts"},
          {"task payload as integer",
           mp().envelope("submit", 23, 4).str("tasks").arr(1).map(3).str("project").str("p")
               .str("type").str("echo").str("payload").uint(7),
           "bad_field", 23, "tasks[0].payload"},
          {"task spec not a map", mp().envelope("submit", 24, 4).str("tasks").arr(1).str("p"),
           "bad_field", 24, "tasks[0]"},
          {"task project given twice",
           mp().envelope("submit", 25, 4).str("tasks").arr(1).map(3).str("project").str("p")
               .str("project").str("q").str("type").str("echo"),
           "bad_field", 25, "tasks[0].project"},
          {"pause without project", mp().envelope("pause", 26), "bad_field", 26, "project"},
          {"pause empty project", mp().envelope("pause", 27, 4).str("project").str(""),
           "bad_field", 27, "project"},
          {"resume project as array", mp().envelope("resume", 28, 4).str("project").arr(0),
           "bad_field", 28, "project"},
          {"tasks unknown status", mp().envelope("tasks", 29, 4).str("status").str("nope"),
           "bad_field", 29, "status"},
          {"tasks limit 0", mp().envelope("tasks", 30, 4).str("limit").uint(0), "bad_field", 30,
           "limit"},
          {"configure weight 0",
           mp().envelope("configure", 31, 5).str("project").str("p").str("weight").uint(0),
           "bad_field", 31, "weight"},
          {"status task given twice",
           mp().envelope("status", 32, 5).str("task").uint(1).str("task").uint(2), "bad_field",
           32, "task"},
          {"id missing", mp().map(2).str("v").uint(1).str("type").str("stats"), "bad_field", 0,
           "id"},
          {"id negative", mp().map(3).str("v").uint(1).str("type").str("stats").str("id").sint(-5),
           "bad_field", 0, "id"},
          {"id as string",
           mp().map(3).str("v").uint(1).str("type").str("stats").str("id").str("7"), "bad_field",
           0, "id"},
          // Check order: id before type, fields before endpoint.
          {"bad id and unknown type", mp().map(2).str("v").uint(1).str("type").str("frobnicate"),
           "bad_field", 0, "id"},
          {"worker message with a bad field on admin",
           mp().envelope("fetch", 33, 4).str("wait_ms").uint(120000), "bad_field", 33, "wait_ms"},
      });
  // Worker messages: fields are checked before the endpoint and the registration.
  run_cases(
      d, d.work_endpoint(),
      {
          {"register without worker",
           mp().envelope("register", 40, 4).str("types").arr(1).str("echo"), "bad_field", 40,
           "worker"},
          {"register without types", mp().envelope("register", 41, 4).str("worker").str("w"),
           "bad_field", 41, "types"},
          {"register with empty types",
           mp().envelope("register", 42, 5).str("worker").str("w").str("types").arr(0),
           "bad_field", 42, "types"},
          {"register capacity 0",
           mp().envelope("register", 43, 6).str("worker").str("w").str("types").arr(1).str("echo")
               .str("capacity").uint(0),
           "bad_field", 43, "capacity"},
          {"register unknown pool",
           mp().envelope("register", 44, 6).str("worker").str("w").str("types").arr(1).str("echo")
               .str("pool").str("spare"),
           "bad_field", 44, "pool"},
          {"register bad tag",
           mp().envelope("register", 45, 6).str("worker").str("w").str("types").arr(1).str("echo")
               .str("tags").arr(2).str("gpu").uint(3),
           "bad_field", 45, "tags[1]"},
          {"fetch wait_ms too long", mp().envelope("fetch", 46, 4).str("wait_ms").uint(120000),
           "bad_field", 46, "wait_ms"},
          {"fetch max 0", mp().envelope("fetch", 47, 4).str("max").uint(0), "bad_field", 47,
           "max"},
          {"complete without task", mp().envelope("complete", 48), "bad_field", 48, "task"},
          {"fail retryable as 1",
           mp().envelope("fail", 49, 5).str("task").uint(1).str("retryable").uint(1),
           "bad_field", 49, "retryable"},
      });
}

TEST_CASE("a submit with one bad task among good ones stores none of them") {
  dispatcher_process d;
  wire_client c(d.work_endpoint());
  auto good = [](mp& m, const std::string& project) -> mp& {
    return m.map(3).str("project").str(project).str("type").str("echo").str("payload").str("x");
  };
  mp m;
  m.envelope("submit", 77, 4).str("tasks").arr(5);
  good(m, "a");
  good(m, "b");
  good(m, "a");
  m.map(3).str("project").str("c").str("type").str("echo").str("priority").f64(2.5);  // bad
  good(m, "a");
  const auto r = refused(c, m.bytes());
  CHECK(r.code == "bad_field");
  CHECK(r.id == 77);
  CHECK_THAT(r.message, StartsWith("tasks[3].priority:"));
  check_healthy_and_empty(d);

  // The same batch without the bad task goes through, and ids start where they would have.
  const auto ids = expect<protocol::submitted>(
                       c.call(protocol::submit{{echo_task("a"), echo_task("b"), echo_task("a"), echo_task("a")}}))
                       .ids;
  CHECK(ids.size() == 4);
  const auto s = d.stats();
  CHECK(s.tasks.at("pending") == 4);
  CHECK(s.projects.size() == 2);
}

TEST_CASE("a frame above the default max-frame of 4 MiB gets too_large and is not stored") {
  // The payload limit is raised so that the frame limit is the one that bites.
  dispatcher_process d({{"--max-payload", "8388608"}});
  wire_client c(d.work_endpoint());
  const std::string big = submit_frame_of_size(4608 * 1024, 5);  // a valid submit, 4.5 MiB
  auto r = refused(c, big);
  CHECK(r.code == "too_large");
  CHECK(r.id == 0);  // not decoded, so its id is unknown
  CHECK_THAT(r.message, Contains(std::to_string(big.size())));
  CHECK_THAT(r.message, Contains("4194304"));
  // One byte over the limit is refused too.
  r = refused(c, submit_frame_of_size(4194305, 6));
  CHECK(r.code == "too_large");
  check_healthy_and_empty(d);

  // Exactly the limit is accepted, on the same connection.
  c.send_raw(submit_frame_of_size(4194304, 7));
  const auto ok = c.receive(5s);
  REQUIRE(ok.has_value());
  CHECK(ok->id == 7);
  CHECK(expect<protocol::submitted>(*ok).ids.size() == 1);
  CHECK(d.stats().tasks.at("pending") == 1);
}

TEST_CASE("a frame beyond libzmq's hard limit (4 x max-frame) leaves the daemon healthy") {
  dispatcher_process d;
  wire_client c(d.work_endpoint());
  c.send_raw(submit_frame_of_size(17 << 20, 8));  // a valid submit of 17 MiB
  // PROTOCOL.md promises too_large for any frame above max-frame; the daemon currently drops
  // the connection instead (see io_bridge.cpp, hard_frame_limit). Either way: a reply, if
  // any, is too_large, nothing is stored, and everyone else is still served.
  check_healthy_and_empty(d);
  if (const auto r = c.receive(1s)) {
    const auto* e = std::get_if<protocol::error>(&r->body);
    REQUIRE(e != nullptr);
    CHECK(protocol::to_string(e->code) == "too_large");
  }
  check_healthy_and_empty(d);
}

TEST_CASE("a lower --max-frame lowers the limit: a 3000-byte frame gets too_large") {
  dispatcher_process d({{"--max-frame", "2048"}});
  wire_client c(d.work_endpoint());
  auto r = refused(c, submit_frame_of_size(3000, 1));
  CHECK(r.code == "too_large");
  CHECK(r.id == 0);
  CHECK_THAT(r.message, Contains("3000"));
  CHECK_THAT(r.message, Contains("2048"));
  r = refused(c, submit_frame_of_size(2049, 2));
  CHECK(r.code == "too_large");
  // Garbage is not even looked at when it is too large.
  r = refused(c, std::string(3000, '\xc1'));
  CHECK(r.code == "too_large");
  check_healthy_and_empty(d);

  c.send_raw(submit_frame_of_size(2048, 3));
  const auto ok = c.receive(5s);
  REQUIRE(ok.has_value());
  CHECK(ok->id == 3);
  CHECK(expect<protocol::submitted>(*ok).ids.size() == 1);
  CHECK(d.stats().tasks.at("pending") == 1);
}

TEST_CASE("a multipart message with extra frames is malformed and nothing of it is stored") {
  dispatcher_process d;
  const std::string stats = encoded({1, protocol::get_stats{}});
  const std::string sub = encoded({2, protocol::submit{{echo_task("p")}}});
  wire_client c(d.admin_endpoint());

  auto r = refused(c, {stats, "extra"});
  CHECK(r.code == "malformed");
  CHECK(r.id == 0);
  r = refused(c, {sub, sub});
  CHECK(r.code == "malformed");
  r = refused(c, {"", "", sub});  // a delimiter too many
  CHECK(r.code == "malformed");
  r = refused(c, {"x", sub});  // a non-empty frame where the delimiter would go
  CHECK(r.code == "malformed");
  r = refused(c, std::vector<std::string>(20, sub));  // longer than the reader keeps
  CHECK(r.code == "malformed");
  r = refused(c, {sub, sub, "", sub, sub, sub, sub, sub, sub, sub, sub});
  CHECK(r.code == "malformed");

  // Each bad message was read to its end: the next one on the same connection is fine.
  const auto s = expect<protocol::stats>(c.call(protocol::get_stats{}));
  CHECK(total_tasks(s) == 0);
  check_healthy_and_empty(d);
}

TEST_CASE("messages sent to the wrong endpoint get unknown_type and have no effect") {
  dispatcher_process d;
  protocol::register_worker reg;
  reg.worker = "misplaced";
  reg.types = {"echo"};
  protocol::configure_project conf;
  conf.project = "p";
  conf.weight = 5;
  wire_client admin(d.admin_endpoint());
  wire_client work(d.work_endpoint());

  struct misplaced {
    std::string name;
    wire_client* to;
    protocol::request_body body;
    std::string served_on;
  };
  const std::vector<misplaced> cases = {
      {"fetch on admin", &admin, protocol::fetch{1, 0}, "work endpoint"},
      {"heartbeat on admin", &admin, protocol::heartbeat{}, "work endpoint"},
      {"register on admin", &admin, reg, "work endpoint"},
      {"complete on admin", &admin, protocol::complete{1, 1, "r"}, "work endpoint"},
      {"goodbye on admin", &admin, protocol::goodbye{}, "work endpoint"},
      {"stats on work", &work, protocol::get_stats{}, "admin endpoint"},
      {"workers on work", &work, protocol::list_workers{}, "admin endpoint"},
      {"tasks on work", &work, protocol::list_tasks{}, "admin endpoint"},
      {"pause on work", &work, protocol::pause_project{"p"}, "admin endpoint"},
      {"configure on work", &work, conf, "admin endpoint"},
  };
  for (const auto& m : cases) {
    INFO("case: " << m.name);
    const auto id = m.to->send(m.body);
    const auto r = m.to->wait_reply(id, 5s);
    const auto* e = std::get_if<protocol::error>(&r.body);
    REQUIRE(e != nullptr);
    INFO("message: " << e->message);
    CHECK(protocol::to_string(e->code) == "unknown_type");
    CHECK(r.id == id);
    CHECK_THAT(e->message, Contains(std::string(protocol::type_name(m.body))));
    CHECK_THAT(e->message, Contains(m.served_on));
  }
  // Nothing registered, paused or configured.
  check_healthy_and_empty(d);
  // Producer messages are served on both endpoints.
  expect<protocol::submitted>(admin.call(protocol::submit{{echo_task("p")}}));
  expect<protocol::submitted>(work.call(protocol::submit{{echo_task("p")}}));
  CHECK(d.stats().tasks.at("pending") == 2);
}

TEST_CASE("a REQ socket client gets proper replies, errors included") {
  dispatcher_process d;
  zmq::context_t context(1);
  zmq::socket_t req(context, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(d.admin_endpoint());

  auto round_trip = [&](const std::string& frame) {
    REQUIRE(req.send(zmq::buffer(frame), zmq::send_flags::none));
    zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
    REQUIRE(zmq::poll(&item, 1, std::chrono::milliseconds(5000)) == 1);
    zmq::message_t msg;
    REQUIRE(req.recv(msg));
    REQUIRE_FALSE(msg.more());  // the delimiter was stripped by REQ: exactly one body frame
    protocol::reply r;
    protocol::decode_failure why;
    INFO("decode failure: " << why.message);
    REQUIRE(protocol::decode(std::string_view(msg.data<char>(), msg.size()), r, why));
    return r;
  };

  auto r = round_trip(encoded({41, protocol::get_stats{}}));
  CHECK(r.id == 41);
  CHECK(total_tasks(expect<protocol::stats>(r)) == 0);

  r = round_trip("\xc1 garbage");
  CHECK(r.id == 0);
  REQUIRE(std::holds_alternative<protocol::error>(r.body));
  CHECK(protocol::to_string(std::get<protocol::error>(r.body).code) == "malformed");

  r = round_trip(encoded({42, protocol::heartbeat{}}));  // wrong endpoint, answered by I/O thread
  CHECK(r.id == 42);
  REQUIRE(std::holds_alternative<protocol::error>(r.body));
  CHECK(protocol::to_string(std::get<protocol::error>(r.body).code) == "unknown_type");

  r = round_trip(encoded({43, protocol::submit{{echo_task("req")}}}));
  CHECK(r.id == 43);
  const auto ids = expect<protocol::submitted>(r).ids;
  REQUIRE(ids.size() == 1);

  r = round_trip(encoded({44, protocol::get_task{ids[0]}}));
  CHECK(r.id == 44);
  CHECK(expect<protocol::task_info>(r).t.project == "req");

  r = round_trip(encoded({45, protocol::get_stats{}}));
  CHECK(expect<protocol::stats>(r).tasks.at("pending") == 1);
}

TEST_CASE("a burst of 2000 garbage frames is answered frame by frame and the daemon goes on") {
  dispatcher_process d;
  wire_client c(d.admin_endpoint());  // where stats is served
  std::mt19937 rng(20240531);  // fixed seed: the same garbage every run
  std::uniform_int_distribution<int> length(0, 96);
  std::uniform_int_distribution<int> byte(0, 255);
  constexpr int garbage = 2000;
  for (int i = 0; i < garbage; ++i) {
    std::string frame(static_cast<std::size_t>(length(rng)), '\0');
    for (auto& ch : frame) ch = static_cast<char>(byte(rng));
    // Every fourth frame looks like a map, so the decoder gets past the first byte.
    if (i % 4 == 0 && !frame.empty()) frame[0] = static_cast<char>(0x80 | (frame[0] & 0x0f));
    c.send_raw(frame);
  }
  const auto stats_id = c.send(protocol::get_stats{});
  REQUIRE(stats_id == 1);

  int errors = 0;
  std::optional<protocol::stats> answered;
  while (errors < garbage || !answered) {
    const auto r = c.receive(10s);
    INFO("errors so far " << errors);
    REQUIRE(r.has_value());
    if (const auto* e = std::get_if<protocol::error>(&r->body)) {
      ++errors;
      const std::string code(protocol::to_string(e->code));
      CHECK(code != "internal");
      CHECK(code != "storage");
    } else {
      REQUIRE(r->id == stats_id);
      REQUIRE_FALSE(answered.has_value());
      answered = std::get<protocol::stats>(r->body);
    }
  }
  CHECK(errors == garbage);
  CHECK(total_tasks(*answered) == 0);
  // No stray extra replies.
  CHECK_FALSE(c.receive(200ms).has_value());
  check_healthy_and_empty(d);
}

TEST_CASE("bad command-line options make dispatcherd exit with 2 naming the option") {
  temp_dir scratch;
  const std::string data = scratch.path() + "/data";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--scale-interval", "banana"}, "--scale-interval"},
      {{"--liveness", "0"}, "--liveness"},
      {{"--durability", "maybe"}, "--durability"},
      {{"--nope"}, "--nope"},
      {{"--heartbeat", "10 parsecs"}, "--heartbeat"},
      {{"--max-frame", "12"}, "--max-frame"},
      {{"--storage-cpus", "1-x"}, "--storage-cpus"},
      {{"--storage-cpus", "100000"}, "--storage-cpus"},
  };
  int n = 0;
  for (const auto& [args, option] : cases) {
    INFO("args: " << args.front());
    child_process p(daemon_argv(data, args), scratch.path() + "/bad-" + std::to_string(++n) + ".log");
    const auto code = p.wait(10s);
    REQUIRE(code.has_value());
    INFO("log:\n" << p.log());
    CHECK(*code == 2);
    CHECK_THAT(p.log(), Contains(option));
    // The command line is checked before anything is touched.
    CHECK_FALSE(std::filesystem::exists(data));
  }
}

TEST_CASE("dispatcherd refuses a data dir that is a regular file, naming it") {
  temp_dir scratch;
  const std::string file = scratch.path() + "/not-a-dir";
  std::ofstream(file) << "just a file\n";
  child_process p(daemon_argv(file, {}), scratch.path() + "/file.log");
  const auto code = p.wait(10s);
  REQUIRE(code.has_value());
  INFO("log:\n" << p.log());
  CHECK(*code != 0);
  CHECK(*code != 128 + 6);  // an orderly exit, not an abort
  CHECK(*code != 128 + 11);
  CHECK_THAT(p.log(), Contains(file));
  CHECK(std::filesystem::is_regular_file(file));
}

TEST_CASE("a second dispatcherd on the same data dir fails cleanly, the first keeps serving") {
  dispatcher_process first;
  wire_client producer(first.work_endpoint());
  const auto before = expect<protocol::submitted>(producer.call(protocol::submit{{echo_task("p")}})).ids;

  child_process second(daemon_argv(first.data_dir(), {}), first.dir() + "/second.log");
  const auto code = second.wait(15s);
  REQUIRE(code.has_value());
  INFO("log:\n" << second.log());
  CHECK(*code != 0);
  CHECK(*code < 128);  // exited, not killed by a signal
  CHECK_THAT(second.log(), Contains(first.data_dir()));

  // The first one still reads and writes.
  REQUIRE(first.process().running());
  const auto after = expect<protocol::submitted>(producer.call(protocol::submit{{echo_task("p")}})).ids;
  REQUIRE(after.size() == 1);
  CHECK(after[0] > before[0]);
  const auto t = expect<protocol::task_info>(producer.call(protocol::get_task{after[0]})).t;
  CHECK(t.status == task_status::pending);
  CHECK(first.stats().tasks.at("pending") == 2);

  // And its data survives a restart untouched by the failed second start.
  first.stop();
  first.start();
  CHECK(first.stats().tasks.at("pending") == 2);
}
