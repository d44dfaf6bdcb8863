#include "dispatchctl/json_render.hpp"

#include "dispatchctl/text_encoding.hpp"
#include "dispatchctl/time_format.hpp"

namespace dispatch::ctl {
namespace {

json time_json(millis t) {
  const auto text = format_rfc3339(t);
  return text ? json(*text) : json(nullptr);
}

// Writes `key` (string or null) and, only for binary data, `key`_base64.
void put_bytes(json& j, const std::string& key, const std::string& bytes) {
  if (is_valid_utf8(bytes)) {
    j[key] = bytes;
  } else {
    j[key] = nullptr;
    j[key + "_base64"] = base64_encode(bytes);
  }
}

// Adds one key per status, all of them in numeric order, so scripts never meet a missing key.
void put_status_counts(json& j, const std::map<std::string, std::uint64_t>& counts) {
  for (int i = 0; i < task_status_count; ++i) {
    const std::string name(to_string(static_cast<task_status>(i)));
    const auto it = counts.find(name);
    j[name] = it == counts.end() ? 0 : it->second;
  }
}

}  // namespace

json task_json(const task& t) {
  json j = json::object();
  j["id"] = t.id;
  j["project"] = t.project;
  j["type"] = t.type;
  j["priority"] = t.priority;
  j["status"] = std::string(to_string(t.status));
  j["worker"] = t.worker.empty() ? json(nullptr) : json(t.worker);
  j["attempts"] = t.attempts;
  j["failures"] = t.failures;
  j["max_attempts"] = t.max_attempts;
  j["timeout_ms"] = t.timeout_ms;
  j["tags"] = t.tags;
  // Empty means "no key" on the wire; null says so without a script comparing against "".
  j["idempotency_key"] = t.idempotency_key.empty() ? json(nullptr) : json(t.idempotency_key);
  j["created_at"] = time_json(t.created_at);
  j["assigned_at"] = time_json(t.assigned_at);
  j["finished_at"] = time_json(t.finished_at);
  j["run_at"] = time_json(t.run_at);
  j["deadline"] = time_json(t.deadline);
  j["overdue"] = t.overdue;
  j["lease_expires_at"] = time_json(t.lease_expires_at);
  j["error"] = t.error;
  j["title"] = t.title;
  j["description"] = t.description;
  put_bytes(j, "payload", t.payload);
  put_bytes(j, "result", t.result);
  return j;
}

json tasks_json(const std::vector<task>& tasks) {
  json j = json::array();
  for (const auto& t : tasks) j.push_back(task_json(t));
  return j;
}

json worker_json(const protocol::worker_info& w) {
  json j = json::object();
  j["id"] = w.id;
  j["pool"] = std::string(to_string(w.pool));
  j["state"] = w.state;
  j["capacity"] = w.capacity;
  j["running"] = w.running;
  j["completed"] = w.completed;
  j["failed"] = w.failed;
  j["types"] = w.types;
  j["tags"] = w.tags;
  j["last_heartbeat"] = time_json(w.last_heartbeat);
  return j;
}

json workers_json(const std::vector<protocol::worker_info>& workers) {
  json j = json::array();
  for (const auto& w : workers) j.push_back(worker_json(w));
  return j;
}

json project_json(const protocol::project_info& p) {
  json j = json::object();
  j["name"] = p.name;
  j["paused"] = p.paused;
  j["max_inflight"] = p.max_inflight;
  j["weight"] = p.weight;
  put_status_counts(j, p.counts);
  return j;
}

json projects_json(const std::vector<protocol::project_info>& projects) {
  json j = json::array();
  for (const auto& p : projects) j.push_back(project_json(p));
  return j;
}

json stats_json(const protocol::stats& s) {
  json j = json::object();
  json counts = json::object();
  put_status_counts(counts, s.tasks);
  j["tasks"] = std::move(counts);
  j["workers"] = workers_json(s.workers);
  j["projects"] = projects_json(s.projects);
  j["reserve"] = json{{"engagements", s.reserve_engagements}, {"releases", s.reserve_releases}};
  j["throughput"] = json{{"last_minute", s.completed_last_minute},
                         {"last_hour", s.completed_last_hour}};
  j["queue_wait_ms"] = json{{"p50", s.wait_p50_ms}, {"p90", s.wait_p90_ms}, {"p99", s.wait_p99_ms}};
  return j;
}

std::string dump_json(const json& j) {
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace dispatch::ctl
