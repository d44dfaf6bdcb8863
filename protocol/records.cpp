// Records are written by the dispatcher itself, so their readers check types and ranges (a
// corrupt store value or a broken peer must not crash a client) but not the request-side limits
// such as name lengths: those were enforced when the data came in.
#include "protocol/records.hpp"

namespace dispatch::protocol::records {

using wire::array_of;
using wire::as_bytes;
using wire::as_int;
using wire::as_text;
using wire::as_uint;
using wire::unbounded;

void write_task(wire::writer& w, const task& t) {
  w.map(24);
  w.number("id", t.id);
  w.text("project", t.project);
  w.text("type", t.type);
  w.number("priority", t.priority);
  w.bytes("payload", t.payload);
  w.names("tags", t.tags);
  w.text("status", to_string(t.status));
  w.number("attempts", t.attempts);
  w.number("failures", t.failures);
  w.number("max_attempts", t.max_attempts);
  w.number("timeout_ms", t.timeout_ms);
  w.number("run_at", t.run_at);
  w.number("deadline", t.deadline);
  w.flag("overdue", t.overdue);
  w.text("idempotency_key", t.idempotency_key);
  w.number("lease_expires_at", t.lease_expires_at);
  w.text("worker", t.worker);
  w.number("created_at", t.created_at);
  w.number("assigned_at", t.assigned_at);
  w.number("finished_at", t.finished_at);
  w.bytes("result", t.result);
  w.text("error", t.error);
  w.text("title", t.title);
  w.text("description", t.description);
}

task read_task(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  task t;
  t.id = f.required("id", as_uint<task_id>());
  t.project = f.required("project", as_text);
  t.type = f.required("type", as_text);
  t.priority = f.required("priority", as_int<std::int32_t>());
  t.payload = f.required("payload", as_bytes);
  t.tags = f.required("tags", array_of(0, unbounded, as_text));
  t.status = f.required("status", wire::as_status);
  t.attempts = f.required("attempts", as_uint<std::uint32_t>());
  t.max_attempts = f.required("max_attempts", as_uint<std::uint32_t>());
  // Added after the first stored records: optional so that those still read.
  t.failures = f.optional("failures", t.failures, as_uint<std::uint32_t>());
  t.timeout_ms = f.optional("timeout_ms", t.timeout_ms, as_uint<std::uint32_t>());
  t.run_at = f.optional("run_at", t.run_at, as_int<millis>());
  t.deadline = f.optional("deadline", t.deadline, as_int<millis>());
  t.overdue = f.optional("overdue", t.overdue, wire::as_bool);
  t.idempotency_key = f.optional("idempotency_key", t.idempotency_key, as_text);
  t.lease_expires_at = f.optional("lease_expires_at", t.lease_expires_at, as_int<millis>());
  t.worker = f.required("worker", as_text);
  t.created_at = f.required("created_at", as_int<millis>());
  t.assigned_at = f.required("assigned_at", as_int<millis>());
  t.finished_at = f.required("finished_at", as_int<millis>());
  t.result = f.required("result", as_bytes);
  t.error = f.required("error", as_text);
  t.title = f.optional("title", t.title, as_text);
  t.description = f.optional("description", t.description, as_text);
  return t;
}

void write_job(wire::writer& w, const job& j) {
  w.map(7);
  w.number("task", j.task);
  w.text("project", j.project);
  w.text("type", j.type);
  w.number("priority", j.priority);
  w.bytes("payload", j.payload);
  w.number("attempt", j.attempt);
  w.number("timeout_ms", j.timeout_ms);
}

job read_job(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  job j;
  j.task = f.required("task", as_uint<task_id>());
  j.project = f.required("project", as_text);
  j.type = f.required("type", as_text);
  j.priority = f.required("priority", as_int<std::int32_t>());
  j.payload = f.required("payload", as_bytes);
  j.attempt = f.required("attempt", as_uint<std::uint32_t>());
  j.timeout_ms = f.optional("timeout_ms", j.timeout_ms, as_uint<std::uint32_t>());
  return j;
}

void write_worker(wire::writer& w, const worker_info& info) {
  w.map(10);
  w.text("id", info.id);
  w.text("pool", to_string(info.pool));
  w.text("state", info.state);
  w.number("capacity", info.capacity);
  w.number("running", info.running);
  w.number("completed", info.completed);
  w.number("failed", info.failed);
  w.names("types", info.types);
  w.names("tags", info.tags);
  w.number("last_heartbeat", info.last_heartbeat);
}

worker_info read_worker(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  worker_info info;
  info.id = f.required("id", as_text);
  info.pool = f.required("pool", wire::as_pool);
  info.state = f.required("state", as_text);
  info.capacity = f.required("capacity", as_uint<std::uint32_t>());
  info.running = f.required("running", as_uint<std::uint32_t>());
  info.completed = f.required("completed", as_uint<std::uint64_t>());
  info.failed = f.required("failed", as_uint<std::uint64_t>());
  info.types = f.required("types", array_of(0, unbounded, as_text));
  info.tags = f.required("tags", array_of(0, unbounded, as_text));
  info.last_heartbeat = f.optional("last_heartbeat", info.last_heartbeat, as_int<millis>());
  return info;
}

void write_event(wire::writer& w, const event_record& e) {
  w.map(7);
  w.number("seq", e.seq);
  w.text("kind", e.kind);
  w.number("at", e.at);
  w.number("task", e.task);
  w.text("project", e.project);
  w.text("worker", e.worker);
  w.text("detail", e.detail);
}

event_record read_event(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  event_record e;
  e.seq = f.required("seq", as_uint<std::uint64_t>());
  e.kind = f.required("kind", as_text);
  e.at = f.required("at", as_int<millis>());
  e.task = f.required("task", as_uint<task_id>());
  e.project = f.required("project", as_text);
  e.worker = f.required("worker", as_text);
  e.detail = f.required("detail", as_text);
  return e;
}

void write_project(wire::writer& w, const project_info& info) {
  w.map(5);
  w.text("name", info.name);
  w.flag("paused", info.paused);
  w.number("max_inflight", info.max_inflight);
  w.number("weight", info.weight);
  w.key("counts");
  write_counts(w, info.counts);
}

project_info read_project(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  project_info info;
  info.name = f.required("name", as_text);
  info.paused = f.required("paused", wire::as_bool);
  info.max_inflight = f.required("max_inflight", as_uint<std::uint32_t>());
  info.weight = f.required("weight", as_uint<std::uint32_t>());
  info.counts = f.required("counts", as_counts);
  return info;
}

void write_counts(wire::writer& w, const std::map<std::string, std::uint64_t>& counts) {
  std::size_t extra = 0;  // names that are not statuses are passed through, not dropped
  for (const auto& entry : counts)
    if (!parse_task_status(entry.first)) ++extra;
  w.map(task_status_count + extra);
  for (int i = 0; i < task_status_count; ++i) {
    const std::string_view name = to_string(static_cast<task_status>(i));
    const auto it = counts.find(std::string(name));
    w.number(name, it == counts.end() ? std::uint64_t{0} : it->second);
  }
  for (const auto& [name, count] : counts)
    if (!parse_task_status(name)) w.number(name, count);
}

std::map<std::string, std::uint64_t> read_counts(const msgpack::object& o, const wire::path& at) {
  if (o.type != msgpack::type::MAP) wire::fail(at, "expected a map of status name -> count");
  std::map<std::string, std::uint64_t> counts;
  const msgpack::object_map& m = o.via.map;
  for (std::uint32_t i = 0; i < m.size; ++i) {
    const msgpack::object& key = m.ptr[i].key;
    if (key.type != msgpack::type::STR) wire::fail(at, "expected string keys");
    const std::string_view name(key.via.str.ptr, key.via.str.size);
    const wire::path entry = at.field(name);
    const auto count = wire::read_uint(m.ptr[i].val, entry, 0, UINT64_MAX);
    if (!counts.emplace(name, count).second) wire::fail(entry, "key given more than once");
  }
  return counts;
}

}  // namespace dispatch::protocol::records
