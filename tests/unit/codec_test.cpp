// Tests of the wire codec: round trips, defaults, validation and hostile input.
#include "protocol/codec.hpp"

#include <catch2/catch.hpp>
#include <algorithm>
#include <msgpack.hpp>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "protocol/records.hpp"
#include "protocol/wire_writer.hpp"

using namespace dispatch;
using namespace dispatch::protocol;

// ---- equality for the contract structs, which define none themselves ----
namespace dispatch {
bool operator==(const task& a, const task& b) {
  auto fields = [](const task& t) {
    return std::tie(t.id, t.project, t.type, t.priority, t.payload, t.tags, t.status, t.attempts,
                    t.failures, t.max_attempts, t.timeout_ms, t.run_at, t.deadline, t.overdue,
                    t.idempotency_key, t.lease_expires_at, t.worker, t.created_at, t.assigned_at,
                    t.finished_at, t.result, t.error, t.title, t.description);
  };
  return fields(a) == fields(b);
}
}  // namespace dispatch

namespace dispatch::protocol {
#define FIELDS_EQUAL(type, ...)                                              \
  bool operator==(const type& a, const type& b) {                            \
    const auto fields = [](const type& m) { return std::tie(__VA_ARGS__); }; \
    return fields(a) == fields(b);                                           \
  }
#define NO_FIELDS(type) \
  bool operator==(const type&, const type&) { return true; }

FIELDS_EQUAL(register_worker, m.worker, m.types, m.tags, m.capacity, m.pool, m.running)
FIELDS_EQUAL(fetch, m.max, m.wait_ms)
FIELDS_EQUAL(complete, m.task, m.attempt, m.result)
FIELDS_EQUAL(fail, m.task, m.attempt, m.error, m.retryable)
FIELDS_EQUAL(task_result, m.task, m.attempt, m.failed, m.result, m.error, m.retryable)
FIELDS_EQUAL(report, m.results)
NO_FIELDS(heartbeat)
NO_FIELDS(goodbye)
FIELDS_EQUAL(task_spec, m.project, m.type, m.priority, m.payload, m.tags, m.max_attempts,
             m.timeout_ms, m.run_at, m.delay_ms, m.deadline, m.idempotency_key, m.title,
             m.description)
FIELDS_EQUAL(extend, m.task, m.attempt, m.extend_ms)
FIELDS_EQUAL(retry_task, m.task)
FIELDS_EQUAL(remove_task, m.task)
FIELDS_EQUAL(worker_order, m.worker, m.order)
FIELDS_EQUAL(heartbeat_reply, m.order, m.cancel, m.expiring)
FIELDS_EQUAL(submit, m.tasks)
FIELDS_EQUAL(get_task, m.task)
FIELDS_EQUAL(cancel, m.task)
FIELDS_EQUAL(list_tasks, m.project, m.status, m.limit, m.type, m.worker, m.priority_min,
             m.priority_max, m.created_from, m.created_to, m.finished_from, m.finished_to, m.text,
             m.after, m.oldest_first)
FIELDS_EQUAL(list_events, m.after, m.limit, m.project, m.kinds)
FIELDS_EQUAL(set_pool, m.worker, m.pool)
FIELDS_EQUAL(event_record, m.seq, m.kind, m.at, m.task, m.project, m.worker, m.detail)
FIELDS_EQUAL(event_list, m.events, m.next)
NO_FIELDS(list_workers)
NO_FIELDS(list_projects)
NO_FIELDS(get_stats)
FIELDS_EQUAL(pause_project, m.project)
FIELDS_EQUAL(resume_project, m.project)
FIELDS_EQUAL(configure_project, m.project, m.max_inflight, m.weight)
FIELDS_EQUAL(job, m.task, m.project, m.type, m.priority, m.payload, m.attempt, m.timeout_ms)
FIELDS_EQUAL(registered, m.heartbeat_ms, m.liveness)
FIELDS_EQUAL(jobs, m.jobs)
NO_FIELDS(ok)
FIELDS_EQUAL(submitted, m.ids)
FIELDS_EQUAL(task_info, m.t)
FIELDS_EQUAL(task_list, m.tasks, m.next)
FIELDS_EQUAL(worker_info, m.id, m.pool, m.state, m.capacity, m.running, m.completed, m.failed,
             m.types, m.tags, m.last_heartbeat)
FIELDS_EQUAL(worker_list, m.workers)
FIELDS_EQUAL(project_info, m.name, m.paused, m.max_inflight, m.weight, m.counts)
FIELDS_EQUAL(project_list, m.projects)
FIELDS_EQUAL(stats, m.tasks, m.workers, m.projects, m.reserve_engagements, m.reserve_releases,
             m.completed_last_minute, m.completed_last_hour, m.wait_p50_ms, m.wait_p90_ms,
             m.wait_p99_ms)
FIELDS_EQUAL(error, m.code, m.message)
FIELDS_EQUAL(refused_result, m.task, m.code, m.message)
FIELDS_EQUAL(reported, m.refused)
#undef FIELDS_EQUAL
#undef NO_FIELDS
}  // namespace dispatch::protocol

namespace {

// A binary payload with every byte value, NULs included.
std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

task sample_task(task_id id) {
  task t;
  t.id = id;
  t.project = "proj";
  t.type = "resize";
  t.priority = -7;
  t.payload = all_bytes();
  t.tags = {"gpu", "eu"};
  t.status = task_status::running;
  t.attempts = 2;
  t.failures = 1;
  t.max_attempts = 5;
  t.timeout_ms = 45000;
  t.run_at = 1700000000000;
  t.deadline = 1700000999000;
  t.overdue = true;
  t.idempotency_key = "order-17";
  t.lease_expires_at = 1700000045456;
  t.worker = "w-1";
  t.created_at = 1700000000123;
  t.assigned_at = 1700000000456;
  t.finished_at = 0;
  t.result = std::string("\x00\x01", 2);
  t.error = "previous attempt timed out";
  t.title = "Thumbnail for order 17";
  t.description = "Resize the upload to 256x256.";
  return t;
}

std::map<std::string, std::uint64_t> full_counts(std::uint64_t base) {
  std::map<std::string, std::uint64_t> counts;
  for (int i = 0; i < task_status_count; ++i)
    counts[std::string(to_string(static_cast<task_status>(i)))] = base + static_cast<unsigned>(i);
  return counts;
}

worker_info sample_worker() {
  return worker_info{"w-1", worker_pool::reserve, "standby", 8,       3,
                     1000,  4,                    {"resize"}, {"gpu"}, 1700000000999};
}

project_info sample_project() { return project_info{"proj", true, 10, 3, full_counts(5)}; }

std::string encoded(const request& r) {
  std::string out;
  encode(r, out);
  return out;
}

std::string encoded(const reply& r) {
  std::string out;
  encode(r, out);
  return out;
}

// A task as stored before the positional form (version 1): the wire's named task map.
std::string version1_record(const task& t) {
  std::string out;
  wire::writer w(out);
  records::write_task(w, t);
  return out;
}

// A stored (version 2) record with element `index` replaced by `value`, packed as is.
template <class T>
std::string stored_with(const task& t, std::size_t index, const T& value) {
  std::string bytes;
  encode_task(t, bytes);
  const msgpack::object_handle h = msgpack::unpack(bytes.data(), bytes.size());
  std::vector<msgpack::object> items(h.get().via.array.ptr,
                                     h.get().via.array.ptr + h.get().via.array.size);
  msgpack::zone z;
  items.at(index) = msgpack::object(value, z);
  std::stringstream out;
  msgpack::pack(out, items);
  return out.str();
}

request round_trip(const request& r) {
  request back;
  decode_failure why;
  const bool decoded = decode(encoded(r), back, why);
  INFO(why.message);
  REQUIRE(decoded);
  CHECK(back.id == r.id);
  CHECK(back.body.index() == r.body.index());
  CHECK(back.body == r.body);
  return back;
}

reply round_trip(const reply& r) {
  reply back;
  decode_failure why;
  const bool decoded = decode(encoded(r), back, why);
  INFO(why.message);
  REQUIRE(decoded);
  CHECK(back.id == r.id);
  CHECK(back.body.index() == r.body.index());
  CHECK(back.body == r.body);
  return back;
}

// Maps the encoder would never produce (wrong types, missing or duplicated keys), built by
// editing a valid message.
class raw_map {
 public:
  raw_map() = default;
  explicit raw_map(const std::string& bytes) {
    const msgpack::object o = msgpack::unpack(zone_, bytes.data(), bytes.size());
    REQUIRE(o.type == msgpack::type::MAP);
    for (std::uint32_t i = 0; i < o.via.map.size; ++i)
      entries_.emplace_back(o.via.map.ptr[i].key.as<std::string>(), o.via.map.ptr[i].val);
  }

  template <class T>
  raw_map& set(const std::string& key, const T& value) {
    erase(key);
    return add(key, value);
  }
  // Turns the key order around: decoders must not depend on the order writers use.
  raw_map& reverse() {
    std::reverse(entries_.begin(), entries_.end());
    return *this;
  }
  // Appends even when the key exists, for duplicate-key inputs.
  template <class T>
  raw_map& add(const std::string& key, const T& value) {
    entries_.emplace_back(key, msgpack::object(value, zone_));
    return *this;
  }
  raw_map& set_nil(const std::string& key) {
    erase(key);
    entries_.emplace_back(key, msgpack::object());  // default-constructed object is nil
    return *this;
  }
  raw_map& set_map(const std::string& key, const raw_map& nested) {
    erase(key);
    entries_.emplace_back(key, nested.object_in(zone_));
    return *this;
  }
  raw_map& erase(const std::string& key) {
    std::vector<std::pair<std::string, msgpack::object>> kept;
    for (auto& e : entries_)
      if (e.first != key) kept.push_back(e);
    entries_ = std::move(kept);
    return *this;
  }

  std::string bytes() const {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> pk(buffer);
    pk.pack_map(static_cast<std::uint32_t>(entries_.size()));
    for (const auto& [k, v] : entries_) {
      pk.pack(k);
      pk.pack(v);
    }
    return std::string(buffer.data(), buffer.size());
  }

  msgpack::object object_in(msgpack::zone& z) const {
    const std::string b = bytes();
    return msgpack::unpack(z, b.data(), b.size());
  }

 private:
  msgpack::zone zone_;
  std::vector<std::pair<std::string, msgpack::object>> entries_;
};

struct rejection {
  error_code code;
  std::string message;
  std::uint64_t request_id;
};

rejection reject_request(const std::string& bytes) {
  request out;
  decode_failure why;
  bool decoded = true;
  REQUIRE_NOTHROW(decoded = decode(bytes, out, why));
  REQUIRE_FALSE(decoded);
  CHECK_FALSE(why.message.empty());
  return {why.code, why.message, why.request_id};
}

rejection reject_reply(const std::string& bytes) {
  reply out;
  decode_failure why;
  bool decoded = true;
  REQUIRE_NOTHROW(decoded = decode(bytes, out, why));
  REQUIRE_FALSE(decoded);
  CHECK_FALSE(why.message.empty());
  return {why.code, why.message, why.request_id};
}

// The message must start with the field path, e.g. "tasks[3].priority: ...".
void check_bad_field(const std::string& bytes, const std::string& field) {
  const rejection r = reject_request(bytes);
  INFO(r.message);
  CHECK(r.code == error_code::bad_field);
  CHECK(r.message.rfind(field + ": ", 0) == 0);
}

request decode_ok(const std::string& bytes) {
  request out;
  decode_failure why;
  const bool decoded = decode(bytes, out, why);
  INFO(why.message);
  REQUIRE(decoded);
  return out;
}

raw_map valid_register() {
  return raw_map(
      encoded(request{42, register_worker{"w1", {"resize"}, {"gpu"}, 4, worker_pool::active, {}}}));
}

raw_map valid_spec() {
  raw_map spec;
  spec.set("project", std::string("proj")).set("type", std::string("resize"));
  return spec;
}

// A submit whose tasks[3] is `broken` and the rest valid.
std::string submit_with_fourth(const raw_map& broken) {
  msgpack::zone z;
  std::vector<msgpack::object> tasks;
  for (int i = 0; i < 3; ++i) tasks.push_back(valid_spec().object_in(z));
  tasks.push_back(broken.object_in(z));
  raw_map m(encoded(request{42, submit{{task_spec{}}}}));
  m.set("tasks", tasks);
  return m.bytes();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("every request type round-trips with non-default values") {
  round_trip({1, register_worker{"worker-1",
                                 {"resize", "encode"},
                                 {"gpu", "eu"},
                                 16,
                                 worker_pool::reserve,
                                 {7, 9, UINT64_MAX}}});
  round_trip({2, fetch{10000, 60000}});
  round_trip({3, complete{99, 4, all_bytes()}});
  round_trip({4, fail{99, 4, "disk full", false}});
  round_trip({5, heartbeat{}});
  round_trip({6, goodbye{}});
  round_trip({7, submit{{task_spec{"a", "t1", INT32_MIN, all_bytes(), {"x"}, 1000, 1, 1700000000000, 0, 1800000000000, "k", "A title", "A longer description"},
                         task_spec{"b", "t2", INT32_MAX, "", {}, 1, 604800000, 0, 5000, 0, "", "", ""}}}});
  round_trip({8, get_task{123}});
  round_trip({9, cancel{456}});
  list_tasks all_filters;
  all_filters.project = "proj";
  all_filters.status = task_status::dead;
  all_filters.limit = 10000;
  all_filters.type = "resize";
  all_filters.worker = "w-1";
  all_filters.priority_min = -5;
  all_filters.priority_max = 9;
  all_filters.created_from = 1700000000000;
  all_filters.created_to = 1700000999000;
  all_filters.finished_from = 1700000001000;
  all_filters.finished_to = 1700000998000;
  all_filters.text = "thumb";
  all_filters.after = 77;
  all_filters.oldest_first = true;
  round_trip({10, all_filters});
  list_tasks only_limit;
  only_limit.limit = 1;
  round_trip({11, only_limit});
  round_trip({22, list_events{5, 100, std::string("proj"), {"task.", "worker.lost"}}});
  round_trip({23, list_events{}});
  round_trip({24, set_pool{"w-1", worker_pool::reserve}});
  round_trip({12, list_workers{}});
  round_trip({13, list_projects{}});
  round_trip({14, get_stats{}});
  round_trip({15, pause_project{"proj"}});
  round_trip({UINT64_MAX, resume_project{"proj"}});
  round_trip({16, configure_project{"proj", 0u, 7u}});
  round_trip({17, configure_project{"proj", std::nullopt, std::nullopt}});
  round_trip({18, extend{5, 2, 60000}});
  round_trip({19, retry_task{6}});
  round_trip({20, remove_task{7}});
  round_trip({21, worker_order{"w-1", "drain"}});
  round_trip({25, report{{task_result{99, 4, false, all_bytes(), "", true},
                          task_result{100, 1, true, "", "disk full", false},
                          task_result{UINT64_MAX, 0, true, "", "", true}}}});
}

TEST_CASE("every reply type round-trips") {
  round_trip({1, registered{250, 5}});
  round_trip({2, jobs{{job{1, "p", "t", -3, all_bytes(), 1, 30000}, job{2, "q", "u", 9, "", 7, 1}}}});
  round_trip({3, jobs{}});
  round_trip({4, ok{}});
  round_trip({5, submitted{{1, 2, UINT64_MAX}}});
  round_trip({6, task_info{sample_task(77)}});
  round_trip({7, task_list{{sample_task(1), sample_task(2)}, 2}});
  round_trip({13, event_list{{event_record{9, "task.completed", 1700000000123, 5, "p", "w", "ok"},
                              event_record{10, "worker.lost", 1700000000456, 0, "", "w", ""}},
                             10}});
  round_trip({8, worker_list{{sample_worker(), worker_info{}}}});
  round_trip({9, project_list{{sample_project()}}});
  round_trip({10, stats{full_counts(0), {sample_worker()}, {sample_project()}, 12, 11, 30, 1800,
                        4, 50, 900}});
  round_trip({0, error{error_code::stale_lease, "attempt 3 is not the current lease"}});
  round_trip({11, heartbeat_reply{"stop", {3, 4}, {5}}});
  round_trip({12, heartbeat_reply{}});
  round_trip({14, reported{}});
  round_trip({15, reported{{refused_result{7, error_code::stale_lease, "attempt 1 is stale"},
                            refused_result{8, error_code::not_owner, "not held"}}}});
}

TEST_CASE("type names match the wire names") {
  CHECK(type_name(request_body{register_worker{}}) == "register");
  CHECK(type_name(request_body{get_task{}}) == "status");
  CHECK(type_name(request_body{list_tasks{}}) == "tasks");
  CHECK(type_name(request_body{get_stats{}}) == "stats");
  CHECK(type_name(request_body{resume_project{}}) == "resume");
  CHECK(type_name(reply_body{task_info{}}) == "task");
  CHECK(type_name(reply_body{worker_list{}}) == "worker_list");
  CHECK(type_name(reply_body{error{}}) == "error");
}

TEST_CASE("the envelope is exactly v, type, id, compactly encoded") {
  // {"v":1,"type":"heartbeat","id":5}
  const std::string expected = "\x83\xa1v\x01\xa4type\xa9heartbeat\xa2id\x05";
  CHECK(encoded(request{5, heartbeat{}}) == expected);
}

TEST_CASE("encode clears the output first") {
  std::string out = "stale bytes";
  encode(request{5, heartbeat{}}, out);
  CHECK(out == encoded(request{5, heartbeat{}}));
  encode_task(sample_task(1), out);
  task t;
  CHECK(decode_task(out, t));
}

TEST_CASE("error codes have stable snake_case names") {
  CHECK(to_string(error_code::bad_field) == "bad_field");
  CHECK(to_string(error_code::unsupported_version) == "unsupported_version");
  for (int i = 0; i <= static_cast<int>(error_code::internal); ++i) {
    const auto code = static_cast<error_code>(i);
    CHECK(parse_error_code(to_string(code)) == code);
  }
  CHECK_FALSE(parse_error_code("no_such_code").has_value());
}

TEST_CASE("stored task records round-trip and reject garbage") {
  std::string bytes;
  encode_task(sample_task(5), bytes);
  task back;
  REQUIRE(decode_task(bytes, back));
  CHECK(back == sample_task(5));
  // Positional: no field names, so a fraction of the wire's map.
  CHECK(bytes.size() + 200 < version1_record(sample_task(5)).size());

  task untouched = sample_task(9);
  CHECK_FALSE(decode_task("", untouched));
  CHECK_FALSE(decode_task(bytes.substr(0, bytes.size() - 1), untouched));
  CHECK_FALSE(decode_task(bytes + "x", untouched));
  CHECK_FALSE(decode_task("\x93\x01\x02\x03", untouched));
  CHECK_FALSE(decode_task(stored_with(sample_task(5), 0, 3), untouched));   // version 3
  CHECK_FALSE(decode_task(stored_with(sample_task(5), 7, 7), untouched));   // no status 7
  CHECK_FALSE(decode_task(stored_with(sample_task(5), 8, -1), untouched));  // attempts
  CHECK_FALSE(decode_task(stored_with(sample_task(5), 2, 42), untouched));  // project
  CHECK_FALSE(decode_task(stored_with(sample_task(5), 5, std::string("x")), untouched));  // bin
  CHECK_FALSE(decode_task(stored_with(sample_task(5), 4, 1LL << 40), untouched));  // priority
  CHECK(untouched == sample_task(9));  // a failed decode leaves the target alone
}

TEST_CASE("records stored before the positional form still read") {
  const std::string v1 = version1_record(sample_task(5));
  task back;
  REQUIRE(decode_task(v1, back));
  CHECK(back == sample_task(5));

  task untouched = sample_task(9);
  CHECK_FALSE(decode_task(raw_map(v1).erase("status").bytes(), untouched));
  CHECK_FALSE(decode_task(raw_map(v1).set("status", std::string("lost")).bytes(), untouched));
  CHECK_FALSE(decode_task(raw_map(v1).set("attempts", -1).bytes(), untouched));
  CHECK(untouched == sample_task(9));
}

TEST_CASE("optional request fields take their defaults when absent or nil") {
  SECTION("register") {
    raw_map m = valid_register();
    m.erase("tags").erase("capacity").erase("pool").set_nil("running");
    const auto body = std::get<register_worker>(decode_ok(m.bytes()).body);
    CHECK(body.capacity == 1);
    CHECK(body.pool == worker_pool::active);
    CHECK(body.tags.empty());
    CHECK(body.running.empty());
  }
  SECTION("fetch") {
    raw_map m(encoded(request{1, fetch{5, 500}}));
    m.erase("max").erase("wait_ms");
    const auto body = std::get<fetch>(decode_ok(m.bytes()).body);
    CHECK(body.max == 1);
    CHECK(body.wait_ms == 0);
  }
  SECTION("complete and fail") {
    raw_map c(encoded(request{1, complete{8, 2, "r"}}));
    c.erase("attempt").erase("result");
    const auto done = std::get<complete>(decode_ok(c.bytes()).body);
    CHECK(done.task == 8);
    CHECK(done.attempt == 0);
    CHECK(done.result.empty());

    raw_map f(encoded(request{1, fail{8, 2, "e", false}}));
    f.erase("attempt").erase("error").set_nil("retryable");
    const auto failed = std::get<fail>(decode_ok(f.bytes()).body);
    CHECK(failed.attempt == 0);
    CHECK(failed.error.empty());
    CHECK(failed.retryable);
  }
  SECTION("submit task spec") {
    const auto body = std::get<submit>(decode_ok(submit_with_fourth(valid_spec())).body);
    REQUIRE(body.tasks.size() == 4);
    CHECK(body.tasks[3].priority == 0);
    CHECK(body.tasks[3].max_attempts == 3);
    CHECK(body.tasks[3].payload.empty());
    CHECK(body.tasks[3].tags.empty());
  }
  SECTION("list tasks") {
    list_tasks q;
    q.project = "p";
    q.status = task_status::failed;
    q.limit = 5;
    raw_map m(encoded(request{1, q}));
    m.erase("project").set_nil("status").erase("limit").erase("order");
    const auto body = std::get<list_tasks>(decode_ok(m.bytes()).body);
    CHECK_FALSE(body.project.has_value());
    CHECK_FALSE(body.status.has_value());
    CHECK(body.limit == 100);
  }
}

TEST_CASE("payload and result accept str as well as bin") {
  raw_map spec = valid_spec();
  spec.set("payload", std::string("text payload"));
  CHECK(std::get<submit>(decode_ok(submit_with_fourth(spec)).body).tasks[3].payload ==
        "text payload");
  raw_map c(encoded(request{1, complete{8, 2, ""}}));
  c.set("result", std::string("text result"));
  CHECK(std::get<complete>(decode_ok(c.bytes()).body).result == "text result");
}

TEST_CASE("unknown keys are ignored") {
  raw_map m = valid_register();
  m.set("future_field", std::vector<int>{1, 2, 3});
  CHECK(std::get<register_worker>(decode_ok(m.bytes()).body).worker == "w1");
}

TEST_CASE("register validation") {
  const std::string long_name(129, 'x');
  check_bad_field(valid_register().erase("worker").bytes(), "worker");
  check_bad_field(valid_register().set("worker", std::string()).bytes(), "worker");
  check_bad_field(valid_register().set("worker", long_name).bytes(), "worker");
  check_bad_field(valid_register().set("worker", 12).bytes(), "worker");
  CHECK(std::get<register_worker>(
            decode_ok(valid_register().set("worker", std::string(128, 'x')).bytes()).body)
            .worker.size() == 128);
  check_bad_field(valid_register().erase("types").bytes(), "types");
  check_bad_field(valid_register().set("types", std::vector<std::string>{}).bytes(), "types");
  check_bad_field(valid_register().set("types", std::vector<std::string>{"a", ""}).bytes(),
                  "types[1]");
  check_bad_field(valid_register().set("tags", std::vector<std::string>(33, "t")).bytes(), "tags");
  CHECK(std::get<register_worker>(
            decode_ok(valid_register().set("tags", std::vector<std::string>(32, "t")).bytes()).body)
            .tags.size() == 32);
  check_bad_field(valid_register().set("tags", std::vector<std::string>{long_name}).bytes(),
                  "tags[0]");
  check_bad_field(valid_register().set("capacity", 0).bytes(), "capacity");
  check_bad_field(valid_register().set("capacity", 10001).bytes(), "capacity");
  check_bad_field(valid_register().set("capacity", -1).bytes(), "capacity");
  check_bad_field(valid_register().set("capacity", 1.5).bytes(), "capacity");
  check_bad_field(valid_register().set("pool", std::string("standby")).bytes(), "pool");
  check_bad_field(valid_register().set("running", std::vector<int>{1, -2}).bytes(), "running[1]");
  CHECK(std::get<register_worker>(
            decode_ok(valid_register().set("pool", std::string("reserve")).bytes()).body)
            .pool == worker_pool::reserve);
}

TEST_CASE("fetch, complete and fail validation") {
  const raw_map f(encoded(request{1, fetch{}}));
  check_bad_field(raw_map(f.bytes()).set("max", 0).bytes(), "max");
  check_bad_field(raw_map(f.bytes()).set("max", 10001).bytes(), "max");
  check_bad_field(raw_map(f.bytes()).set("wait_ms", 60001).bytes(), "wait_ms");
  check_bad_field(raw_map(f.bytes()).set("wait_ms", std::string("5")).bytes(), "wait_ms");
  CHECK(std::get<fetch>(decode_ok(raw_map(f.bytes()).set("wait_ms", 60000).bytes()).body).wait_ms ==
        60000);

  const std::string c = encoded(request{1, complete{8, 1, ""}});
  check_bad_field(raw_map(c).erase("task").bytes(), "task");
  check_bad_field(raw_map(c).set("task", -8).bytes(), "task");
  check_bad_field(raw_map(c).set("attempt", 1ull << 32).bytes(), "attempt");
  check_bad_field(raw_map(c).set("result", 5).bytes(), "result");

  const std::string fl = encoded(request{1, fail{8, 1, "e", true}});
  check_bad_field(raw_map(fl).set("retryable", 1).bytes(), "retryable");
  check_bad_field(raw_map(fl).set("error", std::vector<char>{'x'}).bytes(), "error");
}

// The checks every list of maps in a request gets: required, 1..10,000 entries, each a map.
void check_list_of_maps(const std::string& request_bytes, const std::string& key,
                        const raw_map& valid_element) {
  check_bad_field(raw_map(request_bytes).erase(key).bytes(), key);
  check_bad_field(raw_map(request_bytes).set(key, std::vector<int>{}).bytes(), key);
  check_bad_field(raw_map(request_bytes).set(key, std::vector<int>{1}).bytes(), key + "[0]");
  msgpack::zone z;
  std::vector<msgpack::object> many(10001, valid_element.object_in(z));
  check_bad_field(raw_map(request_bytes).set(key, many).bytes(), key);
}

// A report whose results[1] is `broken` and results[0] valid.
std::string report_with_second(const raw_map& broken) {
  msgpack::zone z;
  raw_map first;
  first.set("task", 1);
  std::vector<msgpack::object> results{first.object_in(z), broken.object_in(z)};
  raw_map m(encoded(request{9, report{{task_result{}}}}));
  m.set("results", results);
  return m.bytes();
}

raw_map minimal_result() {
  raw_map r;
  r.set("task", 5);
  return r;
}

TEST_CASE("report validation names the result and field") {
  const auto body = std::get<report>(decode_ok(report_with_second(minimal_result())).body);
  REQUIRE(body.results.size() == 2);
  CHECK(body.results[1].task == 5);
  CHECK(body.results[1].attempt == 0);
  CHECK_FALSE(body.results[1].failed);
  CHECK(body.results[1].retryable);
  const auto f =
      std::get<report>(decode_ok(report_with_second(minimal_result()
                                                        .set("outcome", std::string("failed"))
                                                        .set("error", std::string("boom"))))
                           .body)
          .results[1];
  CHECK(f.failed);
  CHECK(f.error == "boom");

  check_bad_field(report_with_second(raw_map()), "results[1].task");
  check_bad_field(report_with_second(minimal_result().set("task", -1)), "results[1].task");
  check_bad_field(report_with_second(minimal_result().set("outcome", std::string("maybe"))),
                  "results[1].outcome");
  check_bad_field(report_with_second(minimal_result().set("outcome", true)), "results[1].outcome");
  check_bad_field(report_with_second(minimal_result().set("attempt", 1ull << 32)),
                  "results[1].attempt");
  check_bad_field(report_with_second(minimal_result().set("result", 5)), "results[1].result");
  check_bad_field(report_with_second(minimal_result().set("retryable", 1)), "results[1].retryable");

  check_list_of_maps(encoded(request{1, report{{task_result{}}}}), "results", minimal_result());
}

TEST_CASE("submit validation names the task and field") {
  check_bad_field(submit_with_fourth(valid_spec().set("priority", 1ll << 31)), "tasks[3].priority");
  check_bad_field(submit_with_fourth(valid_spec().set("priority", -(1ll << 31) - 1)),
                  "tasks[3].priority");
  CHECK(
      std::get<submit>(decode_ok(submit_with_fourth(valid_spec().set("priority", INT32_MIN))).body)
          .tasks[3]
          .priority == INT32_MIN);
  const rejection r = reject_request(submit_with_fourth(valid_spec().set("priority", 1ll << 31)));
  CHECK(r.message == "tasks[3].priority: expected an integer in int32 range");

  check_bad_field(submit_with_fourth(valid_spec().erase("project")), "tasks[3].project");
  check_bad_field(submit_with_fourth(valid_spec().set("type", std::string(129, 't'))),
                  "tasks[3].type");
  check_bad_field(submit_with_fourth(valid_spec().set("max_attempts", 0)), "tasks[3].max_attempts");
  check_bad_field(submit_with_fourth(valid_spec().set("max_attempts", 1001)),
                  "tasks[3].max_attempts");
  check_bad_field(submit_with_fourth(valid_spec().set("payload", true)), "tasks[3].payload");
  check_bad_field(submit_with_fourth(valid_spec().set("tags", std::vector<std::string>(33, "t"))),
                  "tasks[3].tags");
  check_bad_field(submit_with_fourth(valid_spec().set("tags", std::vector<std::string>{"a", ""})),
                  "tasks[3].tags[1]");

  const std::string base = encoded(request{1, submit{{task_spec{"p", "t", 0, "", {}, 3, 300000, 0, 0, 0, "", "", ""}}}});
  check_list_of_maps(base, "tasks", valid_spec());
  msgpack::zone z;
  std::vector<msgpack::object> many(10000, valid_spec().object_in(z));
  CHECK(std::get<submit>(decode_ok(raw_map(base).set("tasks", many).bytes()).body).tasks.size() ==
        10000);
}

TEST_CASE("producer and admin request validation") {
  check_bad_field(raw_map(encoded(request{1, get_task{3}})).erase("task").bytes(), "task");
  check_bad_field(raw_map(encoded(request{1, cancel{3}})).set("task", std::string("3")).bytes(),
                  "task");
  const std::string list = encoded(request{1, list_tasks{}});
  check_bad_field(raw_map(list).set("limit", 0).bytes(), "limit");
  check_bad_field(raw_map(list).set("limit", 10001).bytes(), "limit");
  check_bad_field(raw_map(list).set("status", std::string("lost")).bytes(), "status");
  check_bad_field(raw_map(list).set("project", std::string()).bytes(), "project");
  check_bad_field(raw_map(encoded(request{1, pause_project{"p"}})).erase("project").bytes(),
                  "project");
  check_bad_field(raw_map(encoded(request{1, resume_project{"p"}}))
                      .set("project", std::string(129, 'p'))
                      .bytes(),
                  "project");
  check_bad_field(raw_map(encoded(request{1, configure_project{"p", 1u, 1u}}))
                      .set("weight", 0)
                      .bytes(),
                  "weight");
  check_bad_field(raw_map(encoded(request{1, configure_project{"p", 1u, 1u}}))
                      .set("max_inflight", -1)
                      .bytes(),
                  "max_inflight");
}

TEST_CASE("a key given twice is rejected") {
  check_bad_field(valid_register().add("capacity", 2).bytes(), "capacity");
  check_bad_field(valid_register().add("worker", "w2").bytes(), "worker");
  check_bad_field(valid_register().reverse().add("types", std::vector<std::string>{"x"}).bytes(),
                  "types");
  // Unknown keys are never read, twice or not.
  raw_map m = valid_register();
  m.add("future_field", 1).add("future_field", 2);
  CHECK(std::get<register_worker>(decode_ok(m.bytes()).body).worker == "w1");
  // Maps of more than 64 keys are checked by the scanning path: a repeat is still caught, and a
  // large map without one still decodes.
  raw_map large = valid_register();
  for (int i = 0; i < 70; ++i) large.add("extra_" + std::to_string(i), i);
  CHECK(std::get<register_worker>(decode_ok(large.bytes()).body).worker == "w1");
  check_bad_field(large.add("worker", "w2").bytes(), "worker");
}

TEST_CASE("keys decode the same in any order") {
  const request r{7, register_worker{"w1", {"a", "b"}, {"gpu"}, 3, worker_pool::reserve, {4, 5}}};
  const auto reversed = raw_map(encoded(r)).reverse().bytes();
  CHECK(std::get<register_worker>(decode_ok(reversed).body) == std::get<register_worker>(r.body));

  task t;
  t.id = 9;
  t.project = "p";
  t.type = "t";
  t.priority = -3;
  t.payload = "x";
  t.tags = {"a"};
  t.title = "title";
  task back;
  REQUIRE(decode_task(raw_map(version1_record(t)).reverse().bytes(), back));
  CHECK(back == t);
}

TEST_CASE("envelope errors and request id echo") {
  SECTION("wrong or missing version, id still echoed") {
    for (const std::string& bytes :
         {valid_register().set("v", 2).bytes(), valid_register().set("v", std::string("1")).bytes(),
          valid_register().erase("v").bytes()}) {
      const rejection r = reject_request(bytes);
      CHECK(r.code == error_code::unsupported_version);
      CHECK(r.request_id == 42);
      CHECK(r.message.rfind("v: ", 0) == 0);
    }
  }
  SECTION("bad field keeps the id") {
    CHECK(reject_request(valid_register().set("capacity", 0).bytes()).request_id == 42);
  }
  SECTION("missing or invalid id is bad_field with id 0") {
    for (const std::string& bytes :
         {valid_register().erase("id").bytes(), valid_register().set("id", -1).bytes(),
          valid_register().set("id", std::string("42")).bytes()}) {
      const rejection r = reject_request(bytes);
      CHECK(r.code == error_code::bad_field);
      CHECK(r.request_id == 0);
      CHECK(r.message.rfind("id: ", 0) == 0);
    }
  }
  SECTION("unknown type names the type") {
    const rejection r = reject_request(valid_register().set("type", std::string("launch")).bytes());
    CHECK(r.code == error_code::unknown_type);
    CHECK(r.request_id == 42);
    CHECK(r.message.find("\"launch\"") != std::string::npos);
    // A reply type is not a request type.
    CHECK(reject_request(valid_register().set("type", std::string("jobs")).bytes()).code ==
          error_code::unknown_type);
  }
  SECTION("unprintable type names are escaped and bounded") {
    const rejection r = reject_request(
        valid_register().set("type", std::string("\x01\n") + std::string(500, 'a')).bytes());
    CHECK(r.code == error_code::unknown_type);
    CHECK(r.message.find("\\x01\\x0a") != std::string::npos);
    CHECK(r.message.size() < 200);
  }
  SECTION("missing or non-string type is bad_field") {
    CHECK(reject_request(valid_register().erase("type").bytes()).code == error_code::bad_field);
    CHECK(reject_request(valid_register().set("type", 3).bytes()).code == error_code::bad_field);
  }
}

TEST_CASE("malformed frames are refused without throwing") {
  const std::string good =
      encoded(request{42, register_worker{"w1", {"t"}, {}, 1, worker_pool::active, {}}});
  SECTION("empty") { CHECK(reject_request("").code == error_code::malformed); }
  SECTION("every truncation") {
    for (std::size_t n = 0; n < good.size(); ++n)
      CHECK(reject_request(good.substr(0, n)).code == error_code::malformed);
  }
  SECTION("trailing garbage") {
    const rejection r = reject_request(good + '\xc0');
    CHECK(r.code == error_code::malformed);
    CHECK(r.message.find("trailing") != std::string::npos);
  }
  SECTION("not a map") {
    CHECK(reject_request("\x93\x01\x02\x03").code == error_code::malformed);
    CHECK(reject_request("\x2a").code == error_code::malformed);
    CHECK(reject_request(std::string("\xa3"
                                     "abc"))
              .code == error_code::malformed);
  }
  SECTION("reserved byte") { CHECK(reject_request("\xc1").code == error_code::malformed); }
  SECTION("nesting bomb inside the map") {
    std::string bomb = "\x81\xa1x";
    bomb += std::string(100000, '\x91');
    bomb += '\x00';
    CHECK(reject_request(bomb).code == error_code::malformed);
  }
  SECTION("huge declared sizes in a tiny buffer") {
    CHECK(reject_request(std::string("\xdd\xff\xff\xff\xff\x00", 6)).code == error_code::malformed);
    CHECK(reject_request(std::string("\xdf\xff\xff\xff\xff\x00", 6)).code == error_code::malformed);
    CHECK(reject_request(std::string("\xdb\xff\xff\xff\xff"
                                     "abc",
                                     8))
              .code == error_code::malformed);
    CHECK(reject_request(std::string("\xc6\xff\xff\xff\xff"
                                     "abc",
                                     8))
              .code == error_code::malformed);
    CHECK(reject_request(std::string("\x81\xa1x\xdd\x7f\xff\xff\xff", 8)).code ==
          error_code::malformed);
  }
}

TEST_CASE("reply decoding is strict and precise") {
  const std::string jobs_reply = encoded(reply{9, jobs{{job{1, "p", "t", 0, "x", 1}}}});
  SECTION("missing field in a nested record") {
    msgpack::zone z;
    raw_map j;
    j.set("task", 1)
        .set("project", std::string("p"))
        .set("type", std::string("t"))
        .set("priority", 0)
        .set("payload", std::string("x"));
    raw_map m(jobs_reply);
    m.set("jobs", std::vector<msgpack::object>{j.object_in(z)});
    const rejection r = reject_reply(m.bytes());
    CHECK(r.code == error_code::bad_field);
    CHECK(r.request_id == 9);
    CHECK(r.message.rfind("jobs[0].attempt: ", 0) == 0);
  }
  SECTION("bad status inside a task") {
    raw_map t(version1_record(sample_task(1)));
    t.set("status", std::string("zombie"));
    raw_map m(encoded(reply{9, task_info{sample_task(1)}}));
    m.set_map("task", t);
    const rejection r = reject_reply(m.bytes());
    CHECK(r.code == error_code::bad_field);
    CHECK(r.message.rfind("task.status: ", 0) == 0);
  }
  SECTION("registered with zero heartbeat") {
    raw_map m(encoded(reply{9, registered{}}));
    m.set("heartbeat_ms", 0);
    CHECK(reject_reply(m.bytes()).message.rfind("heartbeat_ms: ", 0) == 0);
  }
  SECTION("a request type is not a reply type") {
    CHECK(reject_reply(encoded(request{1, fetch{}})).code == error_code::unknown_type);
  }
  SECTION("unknown error code from a newer peer becomes internal, name kept") {
    raw_map m(encoded(reply{9, error{error_code::storage, "disk"}}));
    m.set("code", std::string("quota_exceeded"));
    reply out;
    decode_failure why;
    REQUIRE(decode(m.bytes(), out, why));
    const auto e = std::get<error>(out.body);
    CHECK(e.code == error_code::internal);
    CHECK(e.message == "quota_exceeded: disk");
  }
  SECTION("status counts always carry every status") {
    reply out;
    decode_failure why;
    stats only_pending;
    only_pending.tasks = {{"pending", 4}};
    REQUIRE(decode(encoded(reply{1, only_pending}), out, why));
    const auto s = std::get<stats>(out.body);
    CHECK(s.tasks.size() == std::size_t(task_status_count));
    CHECK(s.tasks.at("pending") == 4);
    CHECK(s.tasks.at("cancelled") == 0);
  }
  SECTION("malformed replies") {
    CHECK(reject_reply("").code == error_code::malformed);
    CHECK(reject_reply(jobs_reply.substr(0, jobs_reply.size() - 2)).code == error_code::malformed);
    CHECK(reject_reply("\x90").code == error_code::malformed);
  }
}

TEST_CASE("seeded random bytes never make a decoder throw") {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> length(0, 48);
  const std::vector<std::string> seeds = {
      encoded(request{1, register_worker{"w", {"t"}, {"g"}, 2, worker_pool::reserve, {3}}}),
      encoded(request{2, submit{{task_spec{"p", "t", 1, "xy", {"g"}, 2, 300000, 0, 0, 0, "", "", ""}}}}),
      encoded(reply{3, task_info{sample_task(4)}}),
      encoded(reply{4, stats{full_counts(1), {sample_worker()}, {sample_project()}, 1, 2, 3, 4, 5,
                             6, 7}})};
  const std::vector<error_code> request_codes = {error_code::malformed,
                                                 error_code::unsupported_version,
                                                 error_code::unknown_type, error_code::bad_field};
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string input;
    if (i % 2 == 0) {
      input.resize(length(rng));
      for (auto& c : input) c = static_cast<char>(byte(rng));
    } else {
      // Mutations of valid frames get past the top-level checks and exercise the field readers.
      input = seeds[static_cast<std::size_t>(i / 2) % seeds.size()];
      const int flips = 1 + byte(rng) % 4;
      for (int f = 0; f < flips; ++f)
        input[static_cast<std::size_t>(byte(rng)) % input.size()] = static_cast<char>(byte(rng));
    }
    request rq;
    reply rp;
    task t;
    decode_failure why;
    bool ok_request = false;
    REQUIRE_NOTHROW(ok_request = decode(input, rq, why));
    if (ok_request) {
      ++accepted;
    } else {
      ++rejected;
      REQUIRE(std::find(request_codes.begin(), request_codes.end(), why.code) !=
              request_codes.end());
      REQUIRE_FALSE(why.message.empty());
    }
    REQUIRE_NOTHROW(decode(input, rp, why));
    REQUIRE_NOTHROW(decode_task(input, t));
  }
  CHECK(rejected > 0);
  CHECK(accepted + rejected == 4000);
}
