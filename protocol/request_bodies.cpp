// Request bodies. The readers are where untrusted input gets validated, so every limit of
// docs/PROTOCOL.md is enforced here and nowhere else.
#include "protocol/bodies.hpp"
#include "protocol/message_names.hpp"

namespace dispatch::protocol::bodies {
namespace {

using wire::array_of;
using wire::as_bytes;
using wire::as_int;
using wire::as_name;
using wire::as_text;
using wire::as_uint;
using wire::unbounded;

constexpr std::uint32_t max_capacity = 10000;
constexpr std::uint32_t max_fetch = 10000;
constexpr std::uint32_t max_wait_ms = 60000;
constexpr std::size_t max_submit = 10000;
constexpr std::size_t max_report = 10000;
constexpr std::uint32_t max_attempts_limit = 1000;
constexpr std::size_t max_tags = 32;
constexpr std::uint32_t max_list = 10000;
constexpr std::uint32_t max_inflight_limit = 1000000;
constexpr std::uint32_t max_weight = 1000;
constexpr std::uint32_t max_lease_ms = 7 * 24 * 3600 * 1000;  // a week

constexpr auto as_idempotency_key = [](const msgpack::object& o, const wire::path& at) {
  return wire::read_str(o, at, 1, 256);
};

auto text_up_to(std::size_t max_bytes) {
  return [max_bytes](const msgpack::object& o, const wire::path& at) {
    return wire::read_str(o, at, 0, max_bytes);
  };
}

constexpr auto as_list_order = [](const msgpack::object& o, const wire::path& at) {
  auto order = wire::read_str(o, at, 1, 16);
  if (order != "newest" && order != "oldest") wire::fail(at, "expected \"newest\" or \"oldest\"");
  return order;
};

constexpr auto as_order = [](const msgpack::object& o, const wire::path& at) {
  auto order = wire::read_str(o, at, 1, 16);
  if (order != "drain" && order != "stop" && order != "resume")
    wire::fail(at, "expected \"drain\", \"stop\" or \"resume\"");
  return order;
};

// What every request map carries besides its body fields.
struct envelope {
  std::uint64_t id;
  std::string_view token;
};

template <class Body>
void open(wire::writer& w, const envelope& e, const Body&, std::size_t fields) {
  w.header(wire_name<Body>::value, e.id, fields + (e.token.empty() ? 0 : 1));
  if (!e.token.empty()) w.text("token", e.token);
}

void write_body(wire::writer& w, const envelope& e, const register_worker& m) {
  open(w, e, m, 6);
  w.text("worker", m.worker);
  w.names("types", m.types);
  w.names("tags", m.tags);
  w.number("capacity", m.capacity);
  w.text("pool", to_string(m.pool));
  w.ids("running", m.running);
}

void write_body(wire::writer& w, const envelope& e, const fetch& m) {
  open(w, e, m, 2);
  w.number("max", m.max);
  w.number("wait_ms", m.wait_ms);
}

void write_body(wire::writer& w, const envelope& e, const complete& m) {
  open(w, e, m, 3);
  w.number("task", m.task);
  w.number("attempt", m.attempt);
  w.bytes("result", m.result);
}

void write_body(wire::writer& w, const envelope& e, const fail& m) {
  open(w, e, m, 4);
  w.number("task", m.task);
  w.number("attempt", m.attempt);
  w.text("error", m.error);
  w.flag("retryable", m.retryable);
}

void write_result(wire::writer& w, const task_result& r) {
  // Only the fields of the outcome are sent: a completed result is three entries.
  w.map(r.failed ? 5 : 3);
  w.number("task", r.task);
  w.number("attempt", r.attempt);
  if (r.failed) {
    w.text("outcome", "failed");
    w.text("error", r.error);
    w.flag("retryable", r.retryable);
  } else {
    w.bytes("result", r.result);
  }
}

void write_body(wire::writer& w, const envelope& e, const report& m) {
  open(w, e, m, 1);
  w.key("results");
  w.array(m.results.size());
  for (const auto& r : m.results) write_result(w, r);
}

void write_spec(wire::writer& w, const task_spec& s) {
  // Optional scheduling fields are sent only when set, so plain submits stay small.
  w.map(7 + (s.run_at ? 1 : 0) + (s.delay_ms ? 1 : 0) + (s.deadline ? 1 : 0) +
        (s.idempotency_key.empty() ? 0 : 1) + (s.title.empty() ? 0 : 1) +
        (s.description.empty() ? 0 : 1));
  w.text("project", s.project);
  w.text("type", s.type);
  w.number("priority", s.priority);
  w.bytes("payload", s.payload);
  w.names("tags", s.tags);
  w.number("max_attempts", s.max_attempts);
  w.number("timeout_ms", s.timeout_ms);
  if (s.run_at) w.number("run_at", s.run_at);
  if (s.delay_ms) w.number("delay_ms", s.delay_ms);
  if (s.deadline) w.number("deadline", s.deadline);
  if (!s.idempotency_key.empty()) w.text("idempotency_key", s.idempotency_key);
  if (!s.title.empty()) w.text("title", s.title);
  if (!s.description.empty()) w.text("description", s.description);
}

void write_body(wire::writer& w, const envelope& e, const submit& m) {
  open(w, e, m, 1);
  w.key("tasks");
  w.array(m.tasks.size());
  for (const auto& s : m.tasks) write_spec(w, s);
}

void write_body(wire::writer& w, const envelope& e, const get_task& m) {
  open(w, e, m, 1);
  w.number("task", m.task);
}

void write_body(wire::writer& w, const envelope& e, const cancel& m) {
  open(w, e, m, 1);
  w.number("task", m.task);
}

void write_body(wire::writer& w, const envelope& e, const list_tasks& m) {
  // Filters that are not set are left out: the map states exactly what is asked.
  const auto set = [](millis v) { return v != 0 ? 1 : 0; };
  open(w, e, m,
       2 + (m.project ? 1 : 0) + (m.status ? 1 : 0) + (m.type ? 1 : 0) + (m.worker ? 1 : 0) +
           (m.priority_min ? 1 : 0) + (m.priority_max ? 1 : 0) + set(m.created_from) +
           set(m.created_to) + set(m.finished_from) + set(m.finished_to) +
           (m.text.empty() ? 0 : 1) + (m.after ? 1 : 0));
  if (m.project) w.text("project", *m.project);
  if (m.status) w.text("status", to_string(*m.status));
  w.number("limit", m.limit);
  if (m.type) w.text("task_type", *m.type);
  if (m.worker) w.text("worker", *m.worker);
  if (m.priority_min) w.number("priority_min", *m.priority_min);
  if (m.priority_max) w.number("priority_max", *m.priority_max);
  if (m.created_from) w.number("created_from", m.created_from);
  if (m.created_to) w.number("created_to", m.created_to);
  if (m.finished_from) w.number("finished_from", m.finished_from);
  if (m.finished_to) w.number("finished_to", m.finished_to);
  if (!m.text.empty()) w.text("text", m.text);
  if (m.after) w.number("after", m.after);
  w.text("order", m.oldest_first ? "oldest" : "newest");
}

void write_body(wire::writer& w, const envelope& e, const list_events& m) {
  open(w, e, m, 3 + (m.project ? 1 : 0));
  w.number("after", m.after);
  w.number("limit", m.limit);
  if (m.project) w.text("project", *m.project);
  w.names("kinds", m.kinds);
}

void write_body(wire::writer& w, const envelope& e, const set_pool& m) {
  open(w, e, m, 2);
  w.text("worker", m.worker);
  w.text("pool", to_string(m.pool));
}

void write_body(wire::writer& w, const envelope& e, const pause_project& m) {
  open(w, e, m, 1);
  w.text("project", m.project);
}

void write_body(wire::writer& w, const envelope& e, const resume_project& m) {
  open(w, e, m, 1);
  w.text("project", m.project);
}

void write_body(wire::writer& w, const envelope& e, const extend& m) {
  open(w, e, m, 3);
  w.number("task", m.task);
  w.number("attempt", m.attempt);
  w.number("extend_ms", m.extend_ms);
}

void write_body(wire::writer& w, const envelope& e, const retry_task& m) {
  open(w, e, m, 1);
  w.number("task", m.task);
}

void write_body(wire::writer& w, const envelope& e, const remove_task& m) {
  open(w, e, m, 1);
  w.number("task", m.task);
}

void write_body(wire::writer& w, const envelope& e, const worker_order& m) {
  open(w, e, m, 2);
  w.text("worker", m.worker);
  w.text("order", m.order);
}

void write_body(wire::writer& w, const envelope& e, const configure_project& m) {
  open(w, e, m, 1 + (m.max_inflight ? 1 : 0) + (m.weight ? 1 : 0));
  w.text("project", m.project);
  if (m.max_inflight) w.number("max_inflight", *m.max_inflight);
  if (m.weight) w.number("weight", *m.weight);
}

// Bodies without fields; the assertion stops a body that gains fields from silently losing
// them on the wire.
template <class Body>
void write_body(wire::writer& w, const envelope& e, const Body& m) {
  static_assert(std::is_empty_v<Body>, "this request body needs its own write_body");
  open(w, e, m, 0);
}

auto tag_list() { return array_of(0, max_tags, as_name); }

void read_body(const wire::fields& f, register_worker& m) {
  m.worker = f.required("worker", as_name);
  m.types = f.required("types", array_of(1, unbounded, as_name));
  m.tags = f.optional("tags", m.tags, tag_list());
  m.capacity = f.optional("capacity", m.capacity, as_uint<std::uint32_t>(1, max_capacity));
  m.pool = f.optional("pool", m.pool, wire::as_pool);
  m.running = f.optional("running", m.running, array_of(0, unbounded, as_uint<task_id>()));
}

void read_body(const wire::fields& f, fetch& m) {
  m.max = f.optional("max", m.max, as_uint<std::uint32_t>(1, max_fetch));
  m.wait_ms = f.optional("wait_ms", m.wait_ms, as_uint<std::uint32_t>(0, max_wait_ms));
}

void read_body(const wire::fields& f, complete& m) {
  m.task = f.required("task", as_uint<task_id>());
  m.attempt = f.optional("attempt", m.attempt, as_uint<std::uint32_t>());
  m.result = f.optional("result", m.result, as_bytes);
}

void read_body(const wire::fields& f, fail& m) {
  m.task = f.required("task", as_uint<task_id>());
  m.attempt = f.optional("attempt", m.attempt, as_uint<std::uint32_t>());
  m.error = f.optional("error", m.error, as_text);
  m.retryable = f.optional("retryable", m.retryable, wire::as_bool);
}

constexpr auto as_outcome = [](const msgpack::object& o, const wire::path& at) {
  auto outcome = wire::read_str(o, at, 1, 16);
  if (outcome != "completed" && outcome != "failed")
    wire::fail(at, "expected \"completed\" or \"failed\"");
  return outcome == "failed";
};

task_result read_result(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  task_result r;
  r.task = f.required("task", as_uint<task_id>());
  r.attempt = f.optional("attempt", r.attempt, as_uint<std::uint32_t>());
  r.failed = f.optional("outcome", r.failed, as_outcome);
  r.result = f.optional("result", r.result, as_bytes);
  r.error = f.optional("error", r.error, as_text);
  r.retryable = f.optional("retryable", r.retryable, wire::as_bool);
  return r;
}

void read_body(const wire::fields& f, report& m) {
  m.results = f.required("results", array_of(1, max_report, read_result));
}

task_spec read_spec(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  task_spec s;
  s.project = f.required("project", as_name);
  s.type = f.required("type", as_name);
  s.priority = f.optional("priority", s.priority, as_int<std::int32_t>());
  s.payload = f.optional("payload", s.payload, as_bytes);
  s.tags = f.optional("tags", s.tags, tag_list());
  s.max_attempts =
      f.optional("max_attempts", s.max_attempts, as_uint<std::uint32_t>(1, max_attempts_limit));
  s.timeout_ms = f.optional("timeout_ms", s.timeout_ms, as_uint<std::uint32_t>(1, max_lease_ms));
  s.run_at = f.optional("run_at", s.run_at, as_int<millis>(0));
  s.delay_ms = f.optional("delay_ms", s.delay_ms, as_uint<std::uint32_t>(0, max_lease_ms));
  s.deadline = f.optional("deadline", s.deadline, as_int<millis>(0));
  s.idempotency_key = f.optional("idempotency_key", s.idempotency_key, as_idempotency_key);
  s.title = f.optional("title", s.title, text_up_to(256));
  s.description = f.optional("description", s.description, text_up_to(4096));
  return s;
}

void read_body(const wire::fields& f, submit& m) {
  m.tasks = f.required("tasks", array_of(1, max_submit, read_spec));
}

void read_body(const wire::fields& f, get_task& m) {
  m.task = f.required("task", as_uint<task_id>());
}

void read_body(const wire::fields& f, cancel& m) {
  m.task = f.required("task", as_uint<task_id>());
}

void read_body(const wire::fields& f, list_tasks& m) {
  if (f.find("project")) m.project = f.required("project", as_name);
  if (f.find("status")) m.status = f.required("status", wire::as_status);
  m.limit = f.optional("limit", m.limit, as_uint<std::uint32_t>(1, max_list));
  if (f.find("task_type")) m.type = f.required("task_type", as_name);
  if (f.find("worker")) m.worker = f.required("worker", as_name);
  if (f.find("priority_min")) m.priority_min = f.required("priority_min", as_int<std::int32_t>());
  if (f.find("priority_max")) m.priority_max = f.required("priority_max", as_int<std::int32_t>());
  m.created_from = f.optional("created_from", m.created_from, as_int<millis>(0));
  m.created_to = f.optional("created_to", m.created_to, as_int<millis>(0));
  m.finished_from = f.optional("finished_from", m.finished_from, as_int<millis>(0));
  m.finished_to = f.optional("finished_to", m.finished_to, as_int<millis>(0));
  m.text = f.optional("text", m.text, text_up_to(256));
  m.after = f.optional("after", m.after, as_uint<task_id>());
  m.oldest_first = f.optional("order", std::string("newest"), as_list_order) == "oldest";
}

void read_body(const wire::fields& f, list_events& m) {
  m.after = f.optional("after", m.after, as_uint<std::uint64_t>());
  m.limit = f.optional("limit", m.limit, as_uint<std::uint32_t>(1, max_list));
  if (f.find("project")) m.project = f.required("project", as_name);
  m.kinds = f.optional("kinds", m.kinds, array_of(0, max_tags, as_name));
}

void read_body(const wire::fields& f, set_pool& m) {
  m.worker = f.required("worker", as_name);
  m.pool = f.required("pool", wire::as_pool);
}

void read_body(const wire::fields& f, pause_project& m) {
  m.project = f.required("project", as_name);
}

void read_body(const wire::fields& f, resume_project& m) {
  m.project = f.required("project", as_name);
}

void read_body(const wire::fields& f, extend& m) {
  m.task = f.required("task", as_uint<task_id>());
  m.attempt = f.optional("attempt", m.attempt, as_uint<std::uint32_t>());
  m.extend_ms = f.optional("extend_ms", m.extend_ms, as_uint<std::uint32_t>(0, max_lease_ms));
}

void read_body(const wire::fields& f, retry_task& m) {
  m.task = f.required("task", as_uint<task_id>());
}

void read_body(const wire::fields& f, remove_task& m) {
  m.task = f.required("task", as_uint<task_id>());
}

void read_body(const wire::fields& f, worker_order& m) {
  m.worker = f.required("worker", as_name);
  m.order = f.required("order", as_order);
}

void read_body(const wire::fields& f, configure_project& m) {
  m.project = f.required("project", as_name);
  if (f.find("max_inflight"))
    m.max_inflight = f.required("max_inflight", as_uint<std::uint32_t>(0, max_inflight_limit));
  if (f.find("weight")) m.weight = f.required("weight", as_uint<std::uint32_t>(1, max_weight));
}

// Bodies without fields: whatever keys they carry are unknown keys, ignored.
template <class Body>
void read_body(const wire::fields&, Body&) {
  static_assert(std::is_empty_v<Body>, "this request body needs its own read_body");
}

}  // namespace

void write(wire::writer& w, const request& r) {
  const envelope e{r.id, r.token};
  std::visit([&](const auto& body) { write_body(w, e, body); }, r.body);
}

std::optional<request_body> read_request(std::string_view type, const wire::fields& f) {
  return make_named<request_body>(type, [&](auto& body) { read_body(f, body); });
}

}  // namespace dispatch::protocol::bodies
