// Admin queries against a real dispatcherd holding a history of 3,000 tasks: every filter,
// cursor paging, `tasks --all` and `dispatchctl report` (the real binary) must return exactly
// the tasks the test made, whose fate it recorded as it went.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/wall_clock.hpp"
#include "tests/integration/harness.hpp"

using namespace dispatch;
using namespace dispatch::testing;
using nlohmann::json;

namespace {

// A time between two steps of the test: every time the daemon stamped before it is earlier,
// every time it stamps after is later or equal (a few ms of quiet on each side).
millis boundary() {
  std::this_thread::sleep_for(5ms);
  const millis t = wall_now();
  std::this_thread::sleep_for(5ms);
  return t;
}

// What the test knows about each task it made.
struct known_task {
  task_id id = 0;
  std::string project;
  std::string type;
  std::int32_t priority = 0;
  std::string title;
  std::string description;
  std::size_t batch = 0;  // submit batch: created in [created_bounds[batch], [batch + 1])
  task_status status = task_status::pending;
  std::string worker;  // last holder, "" if none
  int phase = -1;      // finished in [finished_bounds[phase], [phase + 1]); -1 = not finished
  std::string error;
  bool assigned = false;
};

constexpr std::size_t batches = 6;
constexpr std::size_t per_batch = 500;
const char* const types[] = {"resize", "encode", "mail", "crawl"};

// The spec of the i-th task (0-based): attributes vary independently of each other.
protocol::task_spec spec_of(std::size_t i) {
  protocol::task_spec s;
  s.project = "p" + std::to_string(i % 5);
  s.type = types[(i / 5) % 4];
  s.priority = static_cast<std::int32_t>(i % 7) - 3;
  s.max_attempts = 1;  // a retryable failure ends the task dead at once
  if (i % 10 == 0) s.title = "Nightly Report " + std::to_string(i);
  if (i % 37 == 0) s.description = "has a NEEDLE in it";
  return s;
}

bool has_folded(const std::string& field, const std::string& text) {
  const auto lower = [](std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  return lower(field).find(lower(text)) != std::string::npos;
}

std::vector<task_id> all_pages(wire_client& admin, protocol::list_tasks q) {
  std::vector<task_id> out;
  for (int pages = 0; pages < 10000; ++pages) {
    const auto page = expect<protocol::task_list>(admin.call(q, 10s));
    REQUIRE(page.tasks.size() <= q.limit);
    for (const auto& t : page.tasks) out.push_back(t.id);
    if (page.next == 0) return out;
    q.after = page.next;
  }
  FAIL("paging does not end");
  return out;
}

// "2026-11-21T05:40:25.123Z" -> ms since the epoch.
millis parse_time(const std::string& text) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, ms = 0;
  REQUIRE(std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &h, &mi, &s, &ms) == 7);
  std::tm parts{};
  parts.tm_year = y - 1900;
  parts.tm_mon = mo - 1;
  parts.tm_mday = d;
  parts.tm_hour = h;
  parts.tm_min = mi;
  parts.tm_sec = s;
  return static_cast<millis>(timegm(&parts)) * 1000 + ms;
}

// RFC 4180 records of `text` (quoted fields may hold commas, quotes and line breaks).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n') {
      if (any || !field.empty()) row.push_back(std::move(field));
      rows.push_back(std::move(row));
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  REQUIRE_FALSE(quoted);
  REQUIRE(field.empty());
  return rows;
}

struct ctl_run {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// Runs the real dispatchctl against `d`; `runs` numbers the log files.
ctl_run dispatchctl(const dispatcher_process& d, int& runs, std::vector<std::string> args) {
  std::vector<std::string> argv = {dispatchctl_path(), "--endpoint", d.admin_endpoint(),
                                   "--token", test_admin_token, "--timeout", "10s"};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process p(argv, d.dir() + "/ctl-" + std::to_string(++runs) + ".log");
  const auto code = p.wait(30s);
  REQUIRE(code.has_value());
  return {*code, p.log()};
}

// Totals of one report group, as the test expects them.
struct expected_totals {
  std::uint64_t tasks = 0;
  std::map<std::string, std::uint64_t> by_status;
  std::int64_t run_total = 0;
  std::uint64_t runs = 0;

  std::string avg() const {
    return runs == 0 ? std::string()
                     : std::to_string(std::llround(static_cast<double>(run_total) /
                                                   static_cast<double>(runs)));
  }
};

}  // namespace

TEST_CASE("queries over a 3,000 task history return exactly the matching tasks") {
  dispatcher_options options;
  // Long heartbeats: the test's worker sends none while it works through its batches. No event
  // publisher or metrics port: other tests may be running next to this one.
  options.extra_args = {"--heartbeat", "60s", "--events-endpoint", "", "--metrics-address",
                        "127.0.0.1:0"};
  dispatcher_process d(options);
  wire_client producer(d.work_endpoint());
  wire_client admin(d.admin_endpoint());

  // ---- seed: 3,000 tasks in six batches, each batch's creation times bounded ----
  std::map<task_id, known_task> known;
  std::vector<millis> created_bounds;
  for (std::size_t b = 0; b < batches; ++b) {
    created_bounds.push_back(boundary());
    std::vector<protocol::task_spec> specs;
    for (std::size_t j = 0; j < per_batch; ++j) specs.push_back(spec_of(b * per_batch + j));
    const auto ids = submit(producer, specs);
    REQUIRE(ids.size() == per_batch);
    for (std::size_t j = 0; j < per_batch; ++j) {
      known_task k;
      k.id = ids[j];
      k.project = specs[j].project;
      k.type = specs[j].type;
      k.priority = specs[j].priority;
      k.title = specs[j].title;
      k.description = specs[j].description;
      k.batch = b;
      known[k.id] = k;
    }
  }
  created_bounds.push_back(boundary());

  // ---- finish them in three phases, each phase's finish times bounded ----
  std::vector<millis> finished_bounds{boundary()};
  const auto work = [&](wire_client& w, const std::string& worker, std::size_t count,
                        bool mixed, int phase) {
    std::vector<protocol::job> jobs;
    while (jobs.size() < count) {
      auto more = fetch(
          w, static_cast<std::uint32_t>(std::min<std::size_t>(1000, count - jobs.size())), 1000);
      REQUIRE_FALSE(more.empty());
      jobs.insert(jobs.end(), more.begin(), more.end());
    }
    std::vector<std::uint64_t> sent;
    for (const auto& j : jobs) {
      auto& k = known.at(j.task);
      k.worker = worker;
      k.assigned = true;
      k.phase = phase;
      const int outcome = mixed ? static_cast<int>(j.task % 4) : 3;
      if (outcome == 0) {
        k.status = task_status::failed;
        k.error = "bad, \"input\" " + std::to_string(j.task);  // quoted in CSV
        sent.push_back(w.send(protocol::fail{j.task, j.attempt, k.error, false}));
      } else if (outcome == 1) {
        k.status = task_status::dead;
        k.error = "crashed";
        sent.push_back(w.send(protocol::fail{j.task, j.attempt, k.error, true}));
      } else {
        k.status = task_status::completed;
        sent.push_back(w.send(protocol::complete{j.task, j.attempt, "ok"}));
      }
    }
    for (auto id : sent) expect<protocol::ok>(w.wait_reply(id, 30s));
  };
  wire_client worker_a(d.work_endpoint());
  wire_client worker_b(d.work_endpoint());
  const std::vector<std::string> all_types(std::begin(types), std::end(types));
  expect<protocol::registered>(worker_a.call(worker_spec("w-a", 10000, all_types)));
  expect<protocol::registered>(worker_b.call(worker_spec("w-b", 10000, all_types)));

  work(worker_a, "w-a", 1000, true, 0);
  finished_bounds.push_back(boundary());
  work(worker_b, "w-b", 1000, true, 1);
  // 400 of the tasks still pending are cancelled: never assigned, no worker.
  {
    std::vector<std::uint64_t> sent;
    std::size_t cancelled = 0;
    for (auto& [id, k] : known) {
      if (k.assigned || cancelled == 400) continue;
      k.status = task_status::cancelled;
      k.phase = 1;
      ++cancelled;
      sent.push_back(admin.send(protocol::cancel{id}));
    }
    for (auto id : sent) expect<protocol::ok>(admin.wait_reply(id, 30s));
  }
  finished_bounds.push_back(boundary());
  work(worker_a, "w-a", 500, false, 2);  // 100 stay pending
  finished_bounds.push_back(boundary());

  std::size_t pending = 0;
  for (const auto& [id, k] : known) pending += k.status == task_status::pending ? 1 : 0;
  REQUIRE(pending == 100);

  // ---- filters, alone and combined, both orders, one page and many ----
  struct query_case {
    std::string name;
    std::function<void(protocol::list_tasks&)> set;
    std::function<bool(const known_task&)> want;
  };
  const auto& cb = created_bounds;
  const auto& fb = finished_bounds;
  const std::vector<query_case> cases = {
      {"everything", [](auto&) {}, [](const auto&) { return true; }},
      {"project p3", [](auto& q) { q.project = "p3"; },
       [](const auto& k) { return k.project == "p3"; }},
      {"status pending", [](auto& q) { q.status = task_status::pending; },
       [](const auto& k) { return k.status == task_status::pending; }},
      {"status completed", [](auto& q) { q.status = task_status::completed; },
       [](const auto& k) { return k.status == task_status::completed; }},
      {"status failed", [](auto& q) { q.status = task_status::failed; },
       [](const auto& k) { return k.status == task_status::failed; }},
      {"status dead", [](auto& q) { q.status = task_status::dead; },
       [](const auto& k) { return k.status == task_status::dead; }},
      {"status cancelled", [](auto& q) { q.status = task_status::cancelled; },
       [](const auto& k) { return k.status == task_status::cancelled; }},
      {"status running", [](auto& q) { q.status = task_status::running; },
       [](const auto&) { return false; }},
      {"type mail", [](auto& q) { q.type = "mail"; },
       [](const auto& k) { return k.type == "mail"; }},
      {"worker w-b", [](auto& q) { q.worker = "w-b"; },
       [](const auto& k) { return k.worker == "w-b"; }},
      {"priority >= 2", [](auto& q) { q.priority_min = 2; },
       [](const auto& k) { return k.priority >= 2; }},
      {"priority -1..1",
       [](auto& q) {
         q.priority_min = -1;
         q.priority_max = 1;
       },
       [](const auto& k) { return k.priority >= -1 && k.priority <= 1; }},
      {"created in batches 1-2",
       [&](auto& q) {
         q.created_from = cb[1];
         q.created_to = cb[3];
       },
       [](const auto& k) { return k.batch == 1 || k.batch == 2; }},
      {"created from batch 4", [&](auto& q) { q.created_from = cb[4]; },
       [](const auto& k) { return k.batch >= 4; }},
      {"finished in phase 1",
       [&](auto& q) {
         q.finished_from = fb[1];
         q.finished_to = fb[2];
       },
       [](const auto& k) { return k.phase == 1; }},
      {"finished before phase 2", [&](auto& q) { q.finished_to = fb[2]; },
       [](const auto& k) { return k.phase == 0 || k.phase == 1; }},
      {"text needle", [](auto& q) { q.text = "needle"; },
       [](const auto& k) { return has_folded(k.description, "needle"); }},
      {"text 'report 1'", [](auto& q) { q.text = "report 1"; },
       [](const auto& k) { return has_folded(k.title, "report 1"); }},
      {"text ENCODE (the type)", [](auto& q) { q.text = "ENCODE"; },
       [](const auto& k) { return k.type == "encode"; }},
      {"p1, completed, finished in phase 0",
       [&](auto& q) {
         q.project = "p1";
         q.status = task_status::completed;
         q.finished_from = fb[0];
         q.finished_to = fb[1];
       },
       [](const auto& k) {
         return k.project == "p1" && k.status == task_status::completed && k.phase == 0;
       }},
      {"crawl, priority >= 0, created in batches 0-1",
       [&](auto& q) {
         q.type = "crawl";
         q.priority_min = 0;
         q.created_from = cb[0];
         q.created_to = cb[2];
       },
       [](const auto& k) { return k.type == "crawl" && k.priority >= 0 && k.batch <= 1; }},
      {"w-a and 'report'",
       [](auto& q) {
         q.worker = "w-a";
         q.text = "report";
       },
       [](const auto& k) { return k.worker == "w-a" && has_folded(k.title, "report"); }},
      {"p4 pending from batch 2",
       [&](auto& q) {
         q.project = "p4";
         q.status = task_status::pending;
         q.created_from = cb[2];
       },
       [](const auto& k) {
         return k.project == "p4" && k.status == task_status::pending && k.batch >= 2;
       }},
      {"p0 and dead, finished from phase 1",
       [&](auto& q) {
         q.project = "p0";
         q.status = task_status::dead;
         q.finished_from = fb[1];
       },
       [](const auto& k) {
         return k.project == "p0" && k.status == task_status::dead && k.phase >= 1;
       }},
  };
  for (const auto& c : cases) {
    for (bool oldest : {false, true}) {
      std::vector<task_id> expected;
      for (const auto& [id, k] : known)
        if (c.want(k)) expected.push_back(id);
      if (!oldest) std::reverse(expected.begin(), expected.end());
      protocol::list_tasks q;
      c.set(q);
      q.oldest_first = oldest;
      INFO(c.name << (oldest ? ", oldest first" : ", newest first") << ": " << expected.size()
                  << " expected");
      q.limit = 10000;
      const auto one = expect<protocol::task_list>(admin.call(q, 10s));
      std::vector<task_id> got;
      for (const auto& t : one.tasks) got.push_back(t.id);
      CHECK(got == expected);
      CHECK(one.next == 0);
      q.limit = 293;
      CHECK(all_pages(admin, q) == expected);
    }
  }

  // The records carry what the dispatcher stored.
  {
    protocol::list_tasks q;
    q.limit = 10000;
    const auto reply = admin.call(q, 10s);
    for (const auto& t : expect<protocol::task_list>(reply).tasks) {
      const auto& k = known.at(t.id);
      INFO("task " << t.id);
      REQUIRE(t.status == k.status);
      REQUIRE(t.worker == k.worker);
      REQUIRE(t.title == k.title);
      REQUIRE(t.description == k.description);
      if (k.phase >= 0) {
        REQUIRE(t.finished_at >= fb[static_cast<std::size_t>(k.phase)]);
        REQUIRE(t.finished_at < fb[static_cast<std::size_t>(k.phase) + 1]);
      }
      REQUIRE(t.created_at >= cb[k.batch]);
      REQUIRE(t.created_at < cb[k.batch + 1]);
    }
  }

  // ---- dispatchctl tasks --all ----
  int runs = 0;
  {
    const auto r = dispatchctl(d, runs, {"tasks", "--all", "--json", "--status", "dead", "--limit",
                                   "50", "--finished-from", std::to_string(fb[0])});
    INFO(r.out.substr(0, 2000));
    REQUIRE(r.code == 0);
    REQUIRE(json::accept(r.out));
    std::vector<task_id> got;
    for (const auto& t : json::parse(r.out)) got.push_back(t.at("id").get<task_id>());
    std::vector<task_id> dead_all;
    for (const auto& [id, k] : known)
      if (k.status == task_status::dead) dead_all.push_back(id);
    std::reverse(dead_all.begin(), dead_all.end());
    CHECK(got == dead_all);
  }

  // ---- dispatchctl report, CSV: phase 1 (mixed outcomes and cancellations) ----
  {
    const auto r = dispatchctl(d, runs, {"report", "--from", std::to_string(fb[1]), "--to",
                                   std::to_string(fb[2])});
    INFO(r.out.substr(0, 2000));
    REQUIRE(r.code == 0);
    const auto rows = parse_csv(r.out);
    std::vector<task_id> expected;
    for (const auto& [id, k] : known)
      if (k.phase == 1) expected.push_back(id);
    // Header, rows, the blank line, the totals header, all, five projects, two workers.
    REQUIRE(rows.size() == 1 + expected.size() + 1 + 1 + 1 + 5 + 2);
    REQUIRE(rows[0] == std::vector<std::string>{"id", "project", "type", "worker", "status",
                                                "attempts", "failures", "created_at",
                                                "assigned_at", "finished_at", "wait_ms",
                                                "run_ms", "error"});
    expected_totals all;
    std::map<std::string, expected_totals> projects, workers;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const auto& row = rows[1 + i];
      const auto& k = known.at(expected[i]);
      INFO("row " << i + 1 << ", task " << k.id);
      REQUIRE(row.size() == 13);
      CHECK(row[0] == std::to_string(k.id));
      CHECK(row[1] == k.project);
      CHECK(row[2] == k.type);
      CHECK(row[3] == k.worker);
      CHECK(row[4] == std::string(to_string(k.status)));
      CHECK(row[5] == (k.assigned ? "1" : "0"));
      CHECK(row[6] ==
            (k.status == task_status::failed || k.status == task_status::dead ? "1" : "0"));
      const millis created = parse_time(row[7]);
      const millis finished = parse_time(row[9]);
      CHECK(created >= cb[k.batch]);
      CHECK(created < cb[k.batch + 1]);
      CHECK(finished >= fb[1]);
      CHECK(finished < fb[2]);
      std::optional<std::int64_t> run;
      if (k.assigned) {
        const millis assigned = parse_time(row[8]);
        CHECK(row[10] == std::to_string(assigned - created));
        CHECK(row[11] == std::to_string(finished - assigned));
        run = finished - assigned;
      } else {
        CHECK(row[8].empty());
        CHECK(row[10].empty());
        CHECK(row[11].empty());
      }
      CHECK(row[12] == k.error);
      for (auto* t : {&all, &projects[k.project], &workers[k.worker]}) {
        ++t->tasks;
        ++t->by_status[std::string(to_string(k.status))];
        if (run) {
          t->run_total += *run;
          ++t->runs;
        }
      }
    }
    std::size_t at = 1 + expected.size();
    CHECK(rows[at++].empty());  // the blank line between the tables
    REQUIRE(rows[at++] == std::vector<std::string>{"scope", "name", "tasks", "completed", "failed",
                                                  "dead", "cancelled", "run_ms_total",
                                                  "run_ms_avg"});
    const auto totals_row = [](const std::string& scope, const std::string& name,
                               const expected_totals& t) {
      std::vector<std::string> row = {scope, name, std::to_string(t.tasks)};
      for (const char* s : {"completed", "failed", "dead", "cancelled"}) {
        const auto it = t.by_status.find(s);
        row.push_back(std::to_string(it == t.by_status.end() ? 0 : it->second));
      }
      row.push_back(std::to_string(t.run_total));
      row.push_back(t.avg());
      return row;
    };
    CHECK(rows[at++] == totals_row("all", "", all));
    REQUIRE(projects.size() == 5);
    for (const auto& [name, t] : projects) CHECK(rows[at++] == totals_row("project", name, t));
    REQUIRE(workers.size() == 2);  // "" (cancelled while pending) and w-b
    for (const auto& [name, t] : workers) CHECK(rows[at++] == totals_row("worker", name, t));
    CHECK(all.by_status.at("cancelled") == 400);
  }

  // ---- dispatchctl report, JSON: one project over all three phases ----
  {
    const auto r = dispatchctl(d, runs, {"report", "--from", std::to_string(fb[0]), "--to",
                                   std::to_string(fb[3]), "--project", "p2", "--format", "json"});
    INFO(r.out.substr(0, 2000));
    REQUIRE(r.code == 0);
    REQUIRE(json::accept(r.out));
    const json doc = json::parse(r.out);
    std::vector<task_id> expected, got;
    std::map<std::string, std::uint64_t> by_worker;
    std::map<std::string, std::uint64_t> by_status;
    for (const auto& [id, k] : known)
      if (k.phase >= 0 && k.project == "p2") {
        expected.push_back(id);
        ++by_worker[k.worker];
        ++by_status[std::string(to_string(k.status))];
      }
    std::int64_t run_total = 0;
    for (const auto& row : doc.at("tasks")) {
      const auto& k = known.at(row.at("id").get<task_id>());
      got.push_back(k.id);
      CHECK(row.at("project") == "p2");
      CHECK(row.at("status") == std::string(to_string(k.status)));
      CHECK(row.at("worker") == (k.worker.empty() ? json(nullptr) : json(k.worker)));
      if (!row.at("run_ms").is_null()) run_total += row.at("run_ms").get<std::int64_t>();
    }
    CHECK(got == expected);
    const json& totals = doc.at("totals");
    CHECK(totals.at("all").at("tasks") == expected.size());
    CHECK(totals.at("all").at("run_ms_total") == run_total);
    for (const char* s : {"completed", "failed", "dead", "cancelled"})
      CHECK(totals.at("all").at(s) == by_status[s]);
    REQUIRE(totals.at("projects").size() == 1);
    CHECK(totals.at("projects")[0].at("project") == "p2");
    CHECK(totals.at("projects")[0].at("tasks") == expected.size());
    REQUIRE(totals.at("workers").size() == by_worker.size());
    for (const auto& w : totals.at("workers")) {
      const std::string name = w.at("worker").is_null() ? "" : w.at("worker").get<std::string>();
      CHECK(w.at("tasks") == by_worker.at(name));
    }
  }
}
