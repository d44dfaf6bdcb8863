// Reply bodies. The dispatcher always sends every field, so the readers require them all: a
// reply missing one comes from a broken or incompatible peer and is better refused than guessed.
#include "protocol/bodies.hpp"
#include "protocol/message_names.hpp"
#include "protocol/records.hpp"

namespace dispatch::protocol::bodies {
namespace {

using wire::array_of;
using wire::as_text;
using wire::as_uint;
using wire::unbounded;

template <class Body>
void open(wire::writer& w, std::uint64_t id, const Body&, std::size_t fields) {
  w.header(wire_name<Body>::value, id, fields);
}

template <class Item, class Write>
void write_array(wire::writer& w, std::string_view key, const std::vector<Item>& items,
                 Write write_item) {
  w.key(key);
  w.array(items.size());
  for (const auto& item : items) write_item(w, item);
}

void write_body(wire::writer& w, std::uint64_t id, const registered& m) {
  open(w, id, m, 2);
  w.number("heartbeat_ms", m.heartbeat_ms);
  w.number("liveness", m.liveness);
}

void write_body(wire::writer& w, std::uint64_t id, const jobs& m) {
  open(w, id, m, 1);
  write_array(w, "jobs", m.jobs, records::write_job);
}

void write_body(wire::writer& w, std::uint64_t id, const ok& m) { open(w, id, m, 0); }

void write_body(wire::writer& w, std::uint64_t id, const submitted& m) {
  open(w, id, m, 1);
  w.ids("ids", m.ids);
}

void write_body(wire::writer& w, std::uint64_t id, const task_info& m) {
  open(w, id, m, 1);
  w.key("task");
  records::write_task(w, m.t);
}

void write_body(wire::writer& w, std::uint64_t id, const task_list& m) {
  open(w, id, m, 2);
  write_array(w, "tasks", m.tasks, records::write_task);
  w.number("next", m.next);
}

void write_body(wire::writer& w, std::uint64_t id, const event_list& m) {
  open(w, id, m, 2);
  write_array(w, "events", m.events, records::write_event);
  w.number("next", m.next);
}

void write_body(wire::writer& w, std::uint64_t id, const worker_list& m) {
  open(w, id, m, 1);
  write_array(w, "workers", m.workers, records::write_worker);
}

void write_body(wire::writer& w, std::uint64_t id, const project_list& m) {
  open(w, id, m, 1);
  write_array(w, "projects", m.projects, records::write_project);
}

void write_body(wire::writer& w, std::uint64_t id, const stats& m) {
  open(w, id, m, 10);
  w.key("tasks");
  records::write_counts(w, m.tasks);
  write_array(w, "workers", m.workers, records::write_worker);
  write_array(w, "projects", m.projects, records::write_project);
  w.number("reserve_engagements", m.reserve_engagements);
  w.number("reserve_releases", m.reserve_releases);
  w.number("completed_last_minute", m.completed_last_minute);
  w.number("completed_last_hour", m.completed_last_hour);
  w.number("wait_p50_ms", m.wait_p50_ms);
  w.number("wait_p90_ms", m.wait_p90_ms);
  w.number("wait_p99_ms", m.wait_p99_ms);
}

void write_body(wire::writer& w, std::uint64_t id, const heartbeat_reply& m) {
  open(w, id, m, 3);
  w.text("order", m.order);
  w.ids("cancel", m.cancel);
  w.ids("expiring", m.expiring);
}

void write_body(wire::writer& w, std::uint64_t id, const reported& m) {
  open(w, id, m, 1);
  write_array(w, "refused", m.refused, [](wire::writer& out, const refused_result& r) {
    out.map(3);
    out.number("task", r.task);
    out.text("code", to_string(r.code));
    out.text("message", r.message);
  });
}

void write_body(wire::writer& w, std::uint64_t id, const error& m) {
  open(w, id, m, 2);
  w.text("code", to_string(m.code));
  w.text("message", m.message);
}

void read_body(const wire::fields& f, registered& m) {
  // Zero would make a worker heartbeat in a busy loop or declare the dispatcher lost at once.
  m.heartbeat_ms = f.required("heartbeat_ms", as_uint<std::uint32_t>(1));
  m.liveness = f.required("liveness", as_uint<std::uint32_t>(1));
}

void read_body(const wire::fields& f, jobs& m) {
  m.jobs = f.required("jobs", array_of(0, unbounded, records::as_job));
}

void read_body(const wire::fields&, ok&) {}

void read_body(const wire::fields& f, submitted& m) {
  m.ids = f.required("ids", array_of(0, unbounded, as_uint<task_id>()));
}

void read_body(const wire::fields& f, task_info& m) { m.t = f.required("task", records::as_task); }

void read_body(const wire::fields& f, task_list& m) {
  m.tasks = f.required("tasks", array_of(0, unbounded, records::as_task));
  m.next = f.required("next", as_uint<task_id>());
}

void read_body(const wire::fields& f, event_list& m) {
  m.events = f.required("events", array_of(0, unbounded, records::as_event));
  m.next = f.required("next", as_uint<std::uint64_t>());
}

void read_body(const wire::fields& f, worker_list& m) {
  m.workers = f.required("workers", array_of(0, unbounded, records::as_worker));
}

void read_body(const wire::fields& f, project_list& m) {
  m.projects = f.required("projects", array_of(0, unbounded, records::as_project));
}

void read_body(const wire::fields& f, stats& m) {
  m.tasks = f.required("tasks", records::as_counts);
  m.workers = f.required("workers", array_of(0, unbounded, records::as_worker));
  m.projects = f.required("projects", array_of(0, unbounded, records::as_project));
  m.reserve_engagements = f.required("reserve_engagements", as_uint<std::uint64_t>());
  m.reserve_releases = f.required("reserve_releases", as_uint<std::uint64_t>());
  m.completed_last_minute = f.required("completed_last_minute", as_uint<std::uint64_t>());
  m.completed_last_hour = f.required("completed_last_hour", as_uint<std::uint64_t>());
  m.wait_p50_ms = f.required("wait_p50_ms", as_uint<std::uint32_t>());
  m.wait_p90_ms = f.required("wait_p90_ms", as_uint<std::uint32_t>());
  m.wait_p99_ms = f.required("wait_p99_ms", as_uint<std::uint32_t>());
}

void read_body(const wire::fields& f, heartbeat_reply& m) {
  m.order = f.required("order", as_text);
  m.cancel = f.required("cancel", array_of(0, unbounded, as_uint<task_id>()));
  m.expiring = f.required("expiring", array_of(0, unbounded, as_uint<task_id>()));
}

// Reads an error code and its message, as an "error" reply and a refused result carry them.
void read_code(const wire::fields& f, error_code& code_out, std::string& message) {
  const std::string code = f.required("code", as_text);
  message = f.required("message", as_text);
  if (auto known = parse_error_code(code)) {
    code_out = *known;
  } else {
    // A newer dispatcher may add codes; keep the reply usable and the name visible.
    code_out = error_code::internal;
    message = code + ": " + message;
  }
}

refused_result read_refused(const msgpack::object& o, const wire::path& at) {
  const wire::fields f(o, at);
  refused_result r;
  r.task = f.required("task", as_uint<task_id>());
  read_code(f, r.code, r.message);
  return r;
}

void read_body(const wire::fields& f, reported& m) {
  m.refused = f.required("refused", array_of(0, unbounded, read_refused));
}

void read_body(const wire::fields& f, error& m) { read_code(f, m.code, m.message); }

}  // namespace

void write(wire::writer& w, const reply& r) {
  std::visit([&](const auto& body) { write_body(w, r.id, body); }, r.body);
}

std::optional<reply_body> read_reply(std::string_view type, const wire::fields& f) {
  return make_named<reply_body>(type, [&](auto& body) { read_body(f, body); });
}

}  // namespace dispatch::protocol::bodies
