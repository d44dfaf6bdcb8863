#include "dispatchctl/commands.hpp"

#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "dispatchctl/json_render.hpp"
#include "dispatchctl/table_render.hpp"
#include "dispatchctl/time_format.hpp"
#include "protocol/codec.hpp"

namespace dispatch::ctl {
namespace {

int unexpected(const protocol::request_body& request, const protocol::reply_body& reply,
               std::ostream& err) {
  err << "dispatchctl: unexpected '" << protocol::type_name(reply) << "' reply to '"
      << protocol::type_name(request) << "'\n";
  return exit_failure;
}

// Prints `reply` when it holds the kind `Expected`, via `show`; anything else is a mismatch.
template <class Expected, class Show>
int expect(const protocol::request_body& request, const protocol::reply_body& reply,
           std::ostream& err, Show show) {
  if (const auto* body = std::get_if<Expected>(&reply)) {
    show(*body);
    return exit_ok;
  }
  return unexpected(request, reply, err);
}

// What an acknowledged order means for the worker. The order reaches it with its next
// heartbeat reply, so this states the instruction, not a state already reached.
std::string order_outcome(const std::string& order) {
  if (order == "drain") return "draining";
  if (order == "resume") return "taking work again";
  if (order == "stop") return "retiring";
  return "ordered to " + order;  // not built by the command line; kept readable anyway
}

}  // namespace

int print_reply(const protocol::request_body& request, bool json,
                const protocol::reply_body& reply, std::ostream& out, std::ostream& err) {
  if (const auto* failure = std::get_if<protocol::error>(&reply)) {
    err << "dispatchctl: " << protocol::to_string(failure->code) << ": " << failure->message
        << "\n";
    return exit_failure;
  }
  // "ok" replies carry nothing; say what happened so a person sees the command took effect.
  const auto acknowledge = [&](const std::string& what) {
    return expect<protocol::ok>(request, reply, err, [&](const protocol::ok&) {
      if (json)
        out << dump_json(json::object({{"ok", true}})) << "\n";
      else
        out << what << "\n";
    });
  };

  return std::visit(
      [&](const auto& req) -> int {
        using R = std::decay_t<decltype(req)>;
        if constexpr (std::is_same_v<R, protocol::submit>) {
          const auto* done = std::get_if<protocol::submitted>(&reply);
          // We submit exactly one task, so exactly one id must come back.
          if (done == nullptr || done->ids.size() != 1) return unexpected(request, reply, err);
          if (json)
            out << dump_json(json::object({{"id", done->ids.front()}})) << "\n";
          else
            out << done->ids.front() << "\n";
          return exit_ok;
        } else if constexpr (std::is_same_v<R, protocol::get_task>) {
          return expect<protocol::task_info>(request, reply, err, [&](const auto& info) {
            out << (json ? dump_json(task_json(info.t)) + "\n" : render_task(info.t));
          });
        } else if constexpr (std::is_same_v<R, protocol::list_tasks>) {
          return expect<protocol::task_list>(request, reply, err, [&](const auto& list) {
            out << (json ? dump_json(tasks_json(list.tasks)) + "\n" : render_tasks(list.tasks));
            // --json keeps its documented shape (an array); a full page says it all there.
            if (!json && list.next != 0) out << "next page: --after " << list.next << "\n";
          });
        } else if constexpr (std::is_same_v<R, protocol::list_workers>) {
          return expect<protocol::worker_list>(request, reply, err, [&](const auto& list) {
            out << (json ? dump_json(workers_json(list.workers)) + "\n"
                         : render_workers(list.workers));
          });
        } else if constexpr (std::is_same_v<R, protocol::list_projects>) {
          return expect<protocol::project_list>(request, reply, err, [&](const auto& list) {
            out << (json ? dump_json(projects_json(list.projects)) + "\n"
                         : render_projects(list.projects));
          });
        } else if constexpr (std::is_same_v<R, protocol::get_stats>) {
          return expect<protocol::stats>(request, reply, err, [&](const auto& s) {
            out << (json ? dump_json(stats_json(s)) + "\n" : render_stats(s));
          });
        } else if constexpr (std::is_same_v<R, protocol::pause_project>) {
          return acknowledge("project " + req.project + " paused");
        } else if constexpr (std::is_same_v<R, protocol::resume_project>) {
          return acknowledge("project " + req.project + " resumed");
        } else if constexpr (std::is_same_v<R, protocol::configure_project>) {
          return acknowledge("project " + req.project + " configured");
        } else if constexpr (std::is_same_v<R, protocol::cancel>) {
          return acknowledge("task " + std::to_string(req.task) + " cancelled");
        } else if constexpr (std::is_same_v<R, protocol::retry_task>) {
          return acknowledge("task " + std::to_string(req.task) + " queued again");
        } else if constexpr (std::is_same_v<R, protocol::remove_task>) {
          return acknowledge("task " + std::to_string(req.task) + " removed");
        } else if constexpr (std::is_same_v<R, protocol::worker_order>) {
          return acknowledge("worker " + req.worker + " " + order_outcome(req.order));
        } else if constexpr (std::is_same_v<R, protocol::set_pool>) {
          return acknowledge("worker " + req.worker + " moved to the " +
                             std::string(to_string(req.pool)) + " pool");
        } else {
          // Worker messages are never built by the command line.
          return unexpected(request, reply, err);
        }
      },
      request);
}

int execute(const invocation& inv, admin_client& client, std::ostream& out, std::ostream& err) {
  if (inv.report) return run_report(inv, client, out, err);
  if (inv.all_pages) return print_all_pages(inv, client, out, err);
  const call_result result = client.call(inv.request);
  if (const auto* failure = std::get_if<client_error>(&result)) {
    err << "dispatchctl: " << failure->message << "\n";
    // A malformed --endpoint is a command line mistake like any other.
    return failure->what == client_error::kind::bad_endpoint ? exit_usage : exit_failure;
  }
  return print_reply(inv.request, inv.json, std::get<protocol::reply_body>(result), out, err);
}

// ---------------------------------------------------------------- tasks --all and report

namespace {

// One page of `query`, or the exit code of the failure, already reported on `err`.
std::optional<protocol::task_list> fetch_page(admin_client& client,
                                              const protocol::list_tasks& query,
                                              std::ostream& err, int& code) {
  const protocol::request_body request = query;
  call_result result = client.call(request);
  if (const auto* failure = std::get_if<client_error>(&result)) {
    err << "dispatchctl: " << failure->message << "\n";
    code = failure->what == client_error::kind::bad_endpoint ? exit_usage : exit_failure;
    return std::nullopt;
  }
  auto& reply = std::get<protocol::reply_body>(result);
  if (auto* page = std::get_if<protocol::task_list>(&reply)) return std::move(*page);
  // An error reply or one of the wrong kind: print_reply words both.
  code = print_reply(request, false, reply, err, err);
  return std::nullopt;
}

// Follows `next` from inv.request's page on, handing each page to `show`; stops at the end or at
// the first failure.
template <class Show>
int for_each_page(const invocation& inv, admin_client& client, std::ostream& err, Show show) {
  auto query = std::get<protocol::list_tasks>(inv.request);
  for (;;) {
    int code = exit_ok;
    const auto page = fetch_page(client, query, err, code);
    if (!page) return code;
    show(*page);
    if (page->next == 0) return exit_ok;
    query.after = page->next;
  }
}

// `text` with every line after a newline indented by `by` spaces (and the first line too).
std::string indented(const std::string& text, std::size_t by) {
  const std::string pad(by, ' ');
  std::string out = pad;
  for (char c : text) {
    out += c;
    if (c == '\n') out += pad;
  }
  return out;
}

// RFC 4180: a field with a comma, a quote or a line break is quoted, its quotes doubled.
std::string csv_field(std::string_view value) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string time_or_empty(millis t) { return format_rfc3339(t).value_or(""); }

// wait_ms and run_ms: only for a task that was assigned.
std::optional<std::int64_t> wait_ms(const task& t) {
  if (t.assigned_at == 0) return std::nullopt;
  return t.assigned_at - t.created_at;
}
std::optional<std::int64_t> run_ms(const task& t) {
  if (t.assigned_at == 0 || t.finished_at == 0) return std::nullopt;
  return t.finished_at - t.assigned_at;
}

std::optional<std::int64_t> average(const report_writer::totals& t) {
  if (t.runs == 0) return std::nullopt;
  return std::llround(static_cast<double>(t.run_ms_total) / static_cast<double>(t.runs));
}

template <class T>
std::string number_or_empty(const std::optional<T>& v) {
  return v ? std::to_string(*v) : std::string();
}

template <class T>
json number_or_null(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

// The outcomes a finished task can have, in the order of the report's columns.
constexpr task_status outcomes[] = {task_status::completed, task_status::failed,
                                    task_status::dead, task_status::cancelled};

json totals_json(const report_writer::totals& t) {
  json j = json::object();
  j["tasks"] = t.tasks;
  for (task_status s : outcomes)
    j[std::string(to_string(s))] = t.by_status[static_cast<std::size_t>(s)];
  j["run_ms_total"] = t.run_ms_total;
  j["run_ms_avg"] = number_or_null(average(t));
  return j;
}

std::string totals_csv(const std::string& scope, const std::string& name,
                       const report_writer::totals& t) {
  std::string line = csv_field(scope) + "," + csv_field(name) + "," + std::to_string(t.tasks);
  for (task_status s : outcomes)
    line += "," + std::to_string(t.by_status[static_cast<std::size_t>(s)]);
  line += "," + std::to_string(t.run_ms_total) + "," + number_or_empty(average(t)) + "\n";
  return line;
}

}  // namespace

int print_all_pages(const invocation& inv, admin_client& client, std::ostream& out,
                    std::ostream& err) {
  bool first = true;
  if (inv.json) out << "[";
  const int code = for_each_page(inv, client, err, [&](const protocol::task_list& page) {
    if (inv.json) {
      // Element by element, laid out as dump_json lays out the whole array.
      for (const auto& t : page.tasks) {
        out << (first ? "\n" : ",\n") << indented(dump_json(task_json(t)), 2);
        first = false;
      }
    } else {
      // Each page is its own table; the header is shown once. Columns may shift a little from
      // one page to the next: the price of printing before the end is known.
      if (first || !page.tasks.empty()) {
        std::string table = render_tasks(page.tasks);
        if (!first) table.erase(0, table.find('\n') + 1);
        out << table;
      }
      first = false;
    }
    out.flush();  // a long listing shows progress, and a pipe reader can start at once
  });
  if (code != exit_ok) return code;
  if (inv.json) out << (first ? "]\n" : "\n]\n");
  return exit_ok;
}

int run_report(const invocation& inv, admin_client& client, std::ostream& out,
               std::ostream& err) {
  report_writer writer(inv.report->format, out);
  writer.begin();
  const int code = for_each_page(inv, client, err, [&](const protocol::task_list& page) {
    for (const auto& t : page.tasks) writer.add(t);
    out.flush();
  });
  if (code != exit_ok) return code;
  writer.finish();
  return exit_ok;
}

void report_writer::begin() {
  if (format_ == report_format::csv)
    out_ << "id,project,type,worker,status,attempts,failures,created_at,assigned_at,"
            "finished_at,wait_ms,run_ms,error\n";
  else
    out_ << "{\"tasks\": [";
}

void report_writer::add(const task& t) {
  const auto wait = wait_ms(t);
  const auto run = run_ms(t);
  for (totals* sum : {&all_, &projects_[t.project], &workers_[t.worker]}) {
    ++sum->tasks;
    if (static_cast<std::size_t>(t.status) < sum->by_status.size())
      ++sum->by_status[static_cast<std::size_t>(t.status)];
    if (run) {
      sum->run_ms_total += *run;
      ++sum->runs;
    }
  }

  if (format_ == report_format::csv) {
    out_ << t.id << ',' << csv_field(t.project) << ',' << csv_field(t.type) << ','
         << csv_field(t.worker) << ',' << to_string(t.status) << ',' << t.attempts << ','
         << t.failures << ',' << time_or_empty(t.created_at) << ','
         << time_or_empty(t.assigned_at) << ',' << time_or_empty(t.finished_at) << ','
         << number_or_empty(wait) << ',' << number_or_empty(run) << ',' << csv_field(t.error)
         << '\n';
  } else {
    json row = json::object();
    row["id"] = t.id;
    row["project"] = t.project;
    row["type"] = t.type;
    row["worker"] = t.worker.empty() ? json(nullptr) : json(t.worker);
    row["status"] = std::string(to_string(t.status));
    row["attempts"] = t.attempts;
    row["failures"] = t.failures;
    for (const auto& [key, value] : {std::pair<const char*, millis>{"created_at", t.created_at},
                                     {"assigned_at", t.assigned_at},
                                     {"finished_at", t.finished_at}}) {
      const auto text = format_rfc3339(value);
      row[key] = text ? json(*text) : json(nullptr);
    }
    row["wait_ms"] = number_or_null(wait);
    row["run_ms"] = number_or_null(run);
    row["error"] = t.error;
    // One row a line: the document stays easy to follow with line tools as it grows.
    out_ << (rows_ == 0 ? "\n" : ",\n")
         << row.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  ++rows_;
}

void report_writer::finish() {
  if (format_ == report_format::csv) {
    out_ << "\nscope,name,tasks,completed,failed,dead,cancelled,run_ms_total,run_ms_avg\n";
    out_ << totals_csv("all", "", all_);
    for (const auto& [name, t] : projects_) out_ << totals_csv("project", name, t);
    for (const auto& [name, t] : workers_) out_ << totals_csv("worker", name, t);
    return;
  }
  json projects = json::array();
  for (const auto& [name, t] : projects_) {
    json j = json::object();
    j["project"] = name;
    j.update(totals_json(t));
    projects.push_back(std::move(j));
  }
  json workers = json::array();
  for (const auto& [name, t] : workers_) {
    json j = json::object();
    j["worker"] = name.empty() ? json(nullptr) : json(name);
    j.update(totals_json(t));
    workers.push_back(std::move(j));
  }
  json totals = json::object();
  totals["all"] = totals_json(all_);
  totals["projects"] = std::move(projects);
  totals["workers"] = std::move(workers);
  out_ << (rows_ == 0 ? "],\n" : "\n],\n") << "\"totals\": " << dump_json(totals) << "}\n";
}

}  // namespace dispatch::ctl
