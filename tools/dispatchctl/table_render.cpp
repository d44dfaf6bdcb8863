#include "dispatchctl/table_render.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>

#include "dispatchctl/text_encoding.hpp"
#include "dispatchctl/text_table.hpp"
#include "dispatchctl/time_format.hpp"
#include "protocol/duration.hpp"

namespace dispatch::ctl {
namespace {

std::string time_cell(millis t) { return format_rfc3339(t).value_or("-"); }

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out;
}

std::string bytes_cell(const std::string& bytes) {
  if (is_valid_utf8(bytes)) return bytes;
  return "<" + std::to_string(bytes.size()) + " bytes, base64> " + base64_encode(bytes);
}

std::uint64_t count_of(const std::map<std::string, std::uint64_t>& counts, task_status s) {
  const auto it = counts.find(std::string(to_string(s)));
  return it == counts.end() ? 0 : it->second;
}

}  // namespace

std::string render_tasks(const std::vector<task>& tasks) {
  text_table table({"ID", "PROJECT", "TYPE", "PRIO", "STATUS", "WORKER", "ATTEMPTS", "CREATED"});
  for (const auto& t : tasks)
    table.add_row({std::to_string(t.id), t.project, t.type, std::to_string(t.priority),
                   std::string(to_string(t.status)), or_dash(t.worker),
                   std::to_string(t.attempts) + "/" + std::to_string(t.max_attempts),
                   time_cell(t.created_at)});
  return table.render();
}

std::string render_task(const task& t) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"id", std::to_string(t.id)},
      {"project", t.project},
      {"type", t.type},
  };
  // Like the scheduling details below: shown only when given.
  if (!t.title.empty()) fields.emplace_back("title", t.title);
  if (!t.description.empty()) fields.emplace_back("description", t.description);
  fields.insert(fields.end(), {
      {"priority", std::to_string(t.priority)},
      {"status", std::string(to_string(t.status))},
      {"worker", or_dash(t.worker)},
      {"attempts", std::to_string(t.attempts) + " (" + std::to_string(t.failures) + " failed of " +
                       std::to_string(t.max_attempts) + " allowed)"},
      {"timeout", format_duration(std::chrono::milliseconds(t.timeout_ms))},
      {"tags", or_dash(joined(t.tags))},
      {"created_at", time_cell(t.created_at)},
      {"assigned_at", time_cell(t.assigned_at)},
      {"finished_at", time_cell(t.finished_at)},
  });
  // Scheduling details only when the task has them: most tasks have none, and a column of
  // dashes would bury the lines that matter.
  if (!t.idempotency_key.empty()) fields.emplace_back("idempotency_key", t.idempotency_key);
  if (t.run_at != 0) fields.emplace_back("run_at", time_cell(t.run_at));
  if (t.deadline != 0) fields.emplace_back("deadline", time_cell(t.deadline));
  if (t.overdue) fields.emplace_back("overdue", "yes");
  if (t.lease_expires_at != 0)
    fields.emplace_back("lease_expires_at", time_cell(t.lease_expires_at));
  fields.emplace_back("error", or_dash(t.error));
  fields.emplace_back("payload", bytes_cell(t.payload));
  fields.emplace_back("result", bytes_cell(t.result));
  std::size_t width = 0;
  for (const auto& [name, value] : fields) width = std::max(width, name.size());
  std::string out;
  for (const auto& [name, value] : fields) {
    std::string line = name + ":" + std::string(width - name.size() + 1, ' ') + value;
    // Payloads are free text and may span lines; they are printed as they are.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string render_workers(const std::vector<protocol::worker_info>& workers) {
  text_table table(
      {"ID", "POOL", "STATE", "CAP", "RUNNING", "LOAD", "COMPLETED", "FAILED", "LAST_HEARTBEAT"});
  for (const auto& w : workers) {
    const auto load = w.capacity ? 100 * w.running / w.capacity : 0;
    table.add_row({w.id, std::string(to_string(w.pool)), w.state, std::to_string(w.capacity),
                   std::to_string(w.running), std::to_string(load) + "%",
                   std::to_string(w.completed), std::to_string(w.failed),
                   format_rfc3339(w.last_heartbeat).value_or("-")});
  }
  return table.render();
}

std::string render_projects(const std::vector<protocol::project_info>& projects) {
  std::vector<std::string> header = {"NAME", "PAUSED", "MAX_INFLIGHT", "WEIGHT"};
  for (int i = 0; i < task_status_count; ++i) {
    std::string name(to_string(static_cast<task_status>(i)));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    header.push_back(std::move(name));
  }
  text_table table(std::move(header));
  for (const auto& p : projects) {
    std::vector<std::string> row = {p.name, p.paused ? "yes" : "no",
                                    p.max_inflight == 0 ? "-" : std::to_string(p.max_inflight),
                                    std::to_string(p.weight)};
    for (int i = 0; i < task_status_count; ++i)
      row.push_back(std::to_string(count_of(p.counts, static_cast<task_status>(i))));
    table.add_row(std::move(row));
  }
  return table.render();
}

std::string render_stats(const protocol::stats& s) {
  std::string out = "tasks:";
  for (int i = 0; i < task_status_count; ++i) {
    const auto status = static_cast<task_status>(i);
    out += (i == 0 ? " " : ", ") + std::string(to_string(status)) + " " +
           std::to_string(count_of(s.tasks, status));
  }
  out += "\n\nworkers:\n" + render_workers(s.workers);
  out += "\nprojects:\n" + render_projects(s.projects);
  out += "\nreserve: engagements " + std::to_string(s.reserve_engagements) + ", releases " +
         std::to_string(s.reserve_releases) + "\n";
  out += "throughput: " + std::to_string(s.completed_last_minute) + " completed in the last minute, " +
         std::to_string(s.completed_last_hour) + " in the last hour\n";
  out += "queue wait: p50 " + std::to_string(s.wait_p50_ms) + " ms, p90 " +
         std::to_string(s.wait_p90_ms) + " ms, p99 " + std::to_string(s.wait_p99_ms) + " ms\n";
  return out;
}

}  // namespace dispatch::ctl
