// dispatch-demo: submits a mixed batch of tasks to a running dispatcherd, shows the progress and
// the reserve pool at work, and ends with a summary. scripts/demo.sh starts a dispatcher and
// workers for it; run alone, it needs them already running.
//
// Exit codes: 0 every task completed; 1 the dispatcher could not be reached, refused a request,
// did not finish the tasks within --timeout, or some task failed; 2 bad command line.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <CLI/CLI.hpp>
#include <zmq.hpp>

#include "demo/reserve_tracker.hpp"
#include "demo/workload.hpp"
#include "dispatchctl/admin_client.hpp"
#include "security/credentials_file.hpp"
#include "dispatchctl/text_table.hpp"
#include "protocol/codec.hpp"
#include "protocol/duration.hpp"
#include "protocol/wall_clock.hpp"

namespace {

namespace protocol = dispatch::protocol;
namespace demo = dispatch::demo;
using dispatch::ctl::admin_client;
using dispatch::ctl::text_table;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

// Sampling the stats this often places the reserve transitions to within a fifth of a second,
// while progress is printed only once a second.
constexpr milliseconds poll_interval{200};
constexpr milliseconds print_interval{1000};
// Waiting for the reserve cooldown, nothing moves; a line now and then shows the demo is alive.
constexpr milliseconds waiting_print_interval{2000};
// A stats poll may time out once in a while under load; this many in a row means the dispatcher
// is gone.
constexpr int max_poll_failures = 3;

// Every failure ends the demo with one line naming what went wrong; unwinding closes the sockets.
class demo_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct options {
  std::string work_endpoint = "tcp://127.0.0.1:5555";
  std::string admin_endpoint = "tcp://127.0.0.1:5556";
  std::uint32_t tasks = 3000;
  std::uint32_t batch = 250;
  std::uint32_t seed = 2024;
  milliseconds timeout{120'000};
  milliseconds release_wait{20'000};
  milliseconds request_timeout{5'000};
  std::string token_file;  // producer and admin tokens ('<role> <token>' lines)
  std::string producer_token;
  std::string admin_token;
};

template <class... Args>
std::string format(const char* pattern, Args... args) {
  const int size = std::snprintf(nullptr, 0, pattern, args...);
  if (size <= 0) return {};
  std::string out(static_cast<std::size_t>(size), '\0');
  std::snprintf(out.data(), out.size() + 1, pattern, args...);
  return out;
}

double seconds_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Returns an exit code when the program should stop now (help or a usage error, already
// printed), nullopt when `out` is ready.
std::optional<int> parse_options(int argc, char** argv, options& out) {
  CLI::App app{"Submits a mixed batch of tasks to dispatcherd, shows progress and the reserve "
               "pool at work, and prints a summary.",
               "dispatch-demo"};
  // Durations are read as text so that they take the same spellings as dispatcherd's options.
  std::string timeout = dispatch::format_duration(out.timeout);
  std::string release_wait = dispatch::format_duration(out.release_wait);
  std::string request_timeout = dispatch::format_duration(out.request_timeout);
  const CLI::Validator duration(
      [](std::string& text) -> std::string {
        const auto d = dispatch::parse_duration(text);
        if (!d || d->count() <= 0) return "'" + text + "' is not a duration like 500ms, 10s, 2m";
        return {};
      },
      "DURATION");

  app.add_option("--work-endpoint", out.work_endpoint, "Work endpoint of dispatcherd (submit)")
      ->capture_default_str();
  app.add_option("--admin-endpoint", out.admin_endpoint, "Admin endpoint of dispatcherd (stats)")
      ->capture_default_str();
  app.add_option("--tasks", out.tasks, "Tasks to submit")
      ->check(CLI::Range(1u, 1'000'000u))
      ->capture_default_str();
  app.add_option("--batch", out.batch, "Tasks per submit request")
      ->check(CLI::Range(1u, 10'000u))
      ->capture_default_str();
  app.add_option("--seed", out.seed, "Seed of the task mix (same seed, same tasks)")
      ->capture_default_str();
  app.add_option("--timeout", timeout, "Fail if the tasks are not all final by then")
      ->check(duration)
      ->capture_default_str();
  app.add_option("--release-wait", release_wait,
                 "After the last task, wait this long for engaged reserve workers to be released")
      ->check(duration)
      ->capture_default_str();
  app.add_option("--request-timeout", request_timeout, "Give up on one request after this long")
      ->check(duration)
      ->capture_default_str();
  app.add_option("--token-file", out.token_file,
                 "Credentials with a producer and an admin line (default: $DISPATCH_TOKEN for "
                 "both, or ./data/credentials)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_ok : exit_usage;
  }
  for (auto [role, target] : {std::pair{dispatch::security::role::producer, &out.producer_token},
                              std::pair{dispatch::security::role::admin, &out.admin_token}}) {
    std::string error;
    auto token = dispatch::security::resolve_client_token(role, "", out.token_file, error);
    if (!token && !error.empty()) {
      std::cerr << "dispatch-demo: " << error << "\n";
      return exit_usage;
    }
    *target = token.value_or("");
  }
  // The validator guarantees these parse.
  out.timeout = *dispatch::parse_duration(timeout);
  out.release_wait = *dispatch::parse_duration(release_wait);
  out.request_timeout = *dispatch::parse_duration(request_timeout);
  return std::nullopt;
}

// Sends `body` and returns the reply of the expected kind; anything else is a demo_failure whose
// message starts with `what`.
template <class Reply>
Reply call(admin_client& client, const protocol::request_body& body, const std::string& what) {
  auto result = client.call(body);
  if (const auto* failure = std::get_if<dispatch::ctl::client_error>(&result))
    throw demo_failure(what + ": " + failure->message);
  auto& reply = std::get<protocol::reply_body>(result);
  if (const auto* refused = std::get_if<protocol::error>(&reply))
    throw demo_failure(what + ": the dispatcher answered " +
                       std::string(protocol::to_string(refused->code)) + ": " + refused->message);
  if (auto* wanted = std::get_if<Reply>(&reply)) return std::move(*wanted);
  throw demo_failure(what + ": unexpected '" + std::string(protocol::type_name(reply)) +
                     "' reply");
}

std::uint64_t count_of(const std::map<std::string, std::uint64_t>& counts, const char* status) {
  const auto it = counts.find(status);
  return it == counts.end() ? 0 : it->second;
}

std::uint64_t final_count(const std::map<std::string, std::uint64_t>& counts) {
  return count_of(counts, "completed") + count_of(counts, "failed") + count_of(counts, "dead") +
         count_of(counts, "cancelled");
}

// The demo's projects' share of a stats reply.
struct project_totals {
  std::uint64_t pending = 0;
  std::uint64_t running = 0;
  std::uint64_t final = 0;
};

project_totals totals_of(const protocol::stats& s, const std::set<std::string>& projects) {
  project_totals t;
  for (const auto& p : s.projects) {
    if (projects.count(p.name) == 0) continue;
    t.pending += count_of(p.counts, "pending");
    t.running += count_of(p.counts, "running");
    t.final += final_count(p.counts);
  }
  return t;
}

std::string worker_summary(const protocol::worker_info& w) {
  // Active workers are always "active"; only the reserve pool's state says something.
  const std::string state = w.pool == dispatch::worker_pool::active ? "" : " " + w.state;
  return w.id + state + " " + std::to_string(w.running) + "/" + std::to_string(w.capacity);
}

std::string format_ms(double ms) {
  return ms < 1000 ? format("%.0fms", ms) : format("%.2fs", ms / 1000);
}

class demo_run {
 public:
  demo_run(zmq::context_t& context, options opts)
      : opts_(std::move(opts)),
        work_(context, opts_.work_endpoint, opts_.request_timeout, opts_.producer_token),
        admin_(context, opts_.admin_endpoint, opts_.request_timeout, opts_.admin_token),
        profiles_(demo::default_profiles()) {
    for (const auto& p : profiles_) project_names_.insert(p.name);
  }

  int run() {
    connect();
    submit();
    watch();
    return summarize();
  }

 private:
  // The first stats reply proves the dispatcher is there and is the baseline: counts from
  // earlier runs are subtracted so that the demo reports on its own tasks.
  void connect() {
    baseline_ = call<protocol::stats>(admin_, protocol::get_stats{},
                                      "cannot reach the dispatcher's admin endpoint");
    reserve_.learn(baseline_.workers);
    std::cout << "dispatch-demo: dispatcher at " << opts_.work_endpoint << " (admin "
              << opts_.admin_endpoint << ")\n";
    if (baseline_.workers.empty())
      std::cout << "  warning: no worker is connected yet; tasks wait until one registers\n";
    for (const auto& w : baseline_.workers)
      std::cout << "  worker " << w.id << ": pool " << dispatch::to_string(w.pool) << ", state "
                << w.state << ", capacity " << w.capacity << "\n";
    const auto earlier = totals_of(baseline_, project_names_);
    if (earlier.final + earlier.pending + earlier.running > 0)
      std::cout << "  note: the store already holds tasks of these projects; the counts below "
                   "subtract them\n";
  }

  void submit() {
    const auto tasks = demo::make_workload(profiles_, opts_.tasks, opts_.seed);
    for (const auto& t : tasks) ++submitted_per_project_[t.project];
    std::string mix;
    for (const auto& p : profiles_)
      mix += format("%s%s %u (priority %d..%d)", mix.empty() ? "" : ", ", p.name.c_str(),
                    submitted_per_project_[p.name], p.min_priority, p.max_priority);
    std::cout << "submitting " << tasks.size() << " tasks in batches of " << opts_.batch << ": "
              << mix << "\n";

    start_ = steady::now();
    first_submit_ms_ = dispatch::wall_now();
    ids_.reserve(tasks.size());
    std::size_t batches = 0;
    for (std::size_t first = 0; first < tasks.size(); first += opts_.batch) {
      const std::size_t last = std::min(tasks.size(), first + opts_.batch);
      protocol::submit request;
      request.tasks.assign(tasks.begin() + static_cast<std::ptrdiff_t>(first),
                           tasks.begin() + static_cast<std::ptrdiff_t>(last));
      const auto reply = call<protocol::submitted>(
          work_, request, format("submit of tasks %zu..%zu", first + 1, last));
      if (reply.ids.size() != request.tasks.size())
        throw demo_failure(format("submit of %zu tasks returned %zu ids", request.tasks.size(),
                                  reply.ids.size()));
      ids_.insert(ids_.end(), reply.ids.begin(), reply.ids.end());
      ++batches;
      // The backlog builds up while we submit; keep watching the reserve pool meanwhile.
      sample();
    }
    event(format("submitted %zu tasks in %zu requests (ids %llu..%llu)", ids_.size(), batches,
                 static_cast<unsigned long long>(ids_.front()),
                 static_cast<unsigned long long>(ids_.back())));
    unfinished_ = ids_;
  }

  // Polls until every task is final and the reserve pool is back in standby (or the wait for it
  // ran out).
  void watch() {
    const auto deadline = start_ + opts_.timeout;
    const std::uint64_t base = totals_of(baseline_, project_names_).final;
    auto next_print = start_ + print_interval;
    std::uint64_t done_at_last_print = 0;
    auto last_print = start_;
    for (;;) {
      const protocol::stats& s = sample();
      const auto now = steady::now();
      const auto t = totals_of(s, project_names_);
      const std::uint64_t done =
          std::min<std::uint64_t>(t.final > base ? t.final - base : 0, ids_.size());

      // The counts cover whole projects; the record check makes sure it is our tasks that are
      // final. It runs only once the counts say so, and asks only about unfinished tasks.
      if (!all_final_at_ && done == ids_.size() && check_unfinished()) {
        all_final_at_ = now;
        print_progress(s, t, done, done_at_last_print, last_print, now);
        std::string line = format("all %zu tasks final", ids_.size());
        if (reserve_.engaged_now())
          line += "; waiting up to " + dispatch::format_duration(opts_.release_wait) +
                  " for the reserve pool to be released after its cooldown";
        event(line);
        next_print = now + waiting_print_interval;
      }
      if (now >= next_print) {
        if (all_final_at_) {
          print_waiting(s);
          next_print = now + waiting_print_interval;
        } else {
          print_progress(s, t, done, done_at_last_print, last_print, now);
          done_at_last_print = done;
          last_print = now;
          while (next_print <= now) next_print += print_interval;
        }
      }

      if (all_final_at_) {
        if (!reserve_.engaged_now()) return;
        if (now - *all_final_at_ >= opts_.release_wait) {
          release_timed_out_ = true;
          return;
        }
      } else if (now >= deadline) {
        throw demo_failure(format(
            "timeout: only %llu of %zu tasks final after %s (%llu pending, %llu running); "
            "are worker-agents connected?",
            static_cast<unsigned long long>(done), ids_.size(),
            dispatch::format_duration(opts_.timeout).c_str(),
            static_cast<unsigned long long>(t.pending),
            static_cast<unsigned long long>(t.running)));
      }
      std::this_thread::sleep_for(poll_interval);
    }
  }

  // One stats poll; notes reserve pool changes as they are seen. A lone timeout is tolerated (the
  // previous reply stands in), a few in a row end the demo.
  const protocol::stats& sample() {
    try {
      last_ = call<protocol::stats>(admin_, protocol::get_stats{}, "stats");
      poll_failures_ = 0;
    } catch (const demo_failure& e) {
      if (++poll_failures_ >= max_poll_failures) throw;
      std::cerr << "dispatch-demo: " << e.what() << " (retrying)\n";
      return last_;
    }
    const double now = elapsed();
    for (const auto& change : reserve_.observe(last_.workers, now)) {
      // Engaged counts as busy: the cooldown runs from the engagement if it never gets a task.
      if (change.what == demo::reserve_change::kind::engaged) last_busy_[change.worker] = now;
      std::string line = demo::what_happened(change);
      if (change.what == demo::reserve_change::kind::engaged)
        line += " (active workers saturated, tasks waiting)";
      else if (change.what == demo::reserve_change::kind::released)
        line += " (idle for the dispatcher's reserve cooldown)";
      event(line, change.at_seconds);
    }
    for (const auto& w : last_.workers)
      if (w.pool == dispatch::worker_pool::reserve && w.running > 0) last_busy_[w.id] = now;
    return last_;
  }

  // A line about something that happened, stamped with the time since the first submit.
  void event(const std::string& what, std::optional<double> at = std::nullopt) const {
    std::cout << format("+%5.1fs ", at ? *at : elapsed()) << what << std::endl;
  }

  // Fetches the records of the tasks not yet seen final; returns whether none is left.
  bool check_unfinished() {
    std::set<dispatch::task_id> wanted(unfinished_.begin(), unfinished_.end());
    std::set<dispatch::task_id> not_final;
    // One listing per project brings back thousands of records in one round trip (a status
    // request per task takes about a second for 3000). Newest come first, so on a store of its
    // own, or one whose other tasks are older, the demo's tasks are all in it.
    for (const auto& [project, submitted] : submitted_per_project_) {
      protocol::list_tasks request;
      request.project = project;
      request.limit = std::min<std::uint32_t>(submitted, 10'000);
      auto reply = call<protocol::task_list>(admin_, request, "tasks of project " + project);
      for (auto& t : reply.tasks) {
        if (wanted.erase(t.id) == 0) continue;
        if (dispatch::is_final(t.status))
          finals_.emplace(t.id, std::move(t));
        else
          not_final.insert(t.id);
      }
    }
    // Whatever the listings missed (newer tasks of other producers in between) one by one.
    for (const auto id : wanted) {
      auto reply = call<protocol::task_info>(
          work_, protocol::get_task{id},
          format("status of task %llu", static_cast<unsigned long long>(id)));
      if (dispatch::is_final(reply.t.status))
        finals_.emplace(id, std::move(reply.t));
      else
        not_final.insert(id);
    }
    unfinished_.assign(not_final.begin(), not_final.end());
    return unfinished_.empty();
  }

  // One line per second while tasks run: overall progress, then each worker's load.
  void print_progress(const protocol::stats& s, const project_totals& t, std::uint64_t done,
                      std::uint64_t done_before, steady::time_point before,
                      steady::time_point now) const {
    const double dt = seconds_between(before, now);
    const double rate = dt > 0 ? static_cast<double>(done - std::min(done, done_before)) / dt : 0;
    std::string workers;
    for (const auto& w : s.workers) workers += "  " + worker_summary(w);
    if (workers.empty()) workers = "  no worker connected";
    std::cout << format("+%5.1fs %5llu/%zu done  running %3llu  pending %5llu  %5.0f tasks/s |",
                        seconds_between(start_, now), static_cast<unsigned long long>(done),
                        ids_.size(), static_cast<unsigned long long>(t.running),
                        static_cast<unsigned long long>(t.pending), rate)
              << workers << std::endl;
  }

  // While only the reserve pool's release is awaited: which workers are still engaged and for how
  // long they have been idle (the dispatcher releases one after its reserve cooldown).
  void print_waiting(const protocol::stats& s) const {
    const double now = elapsed();
    std::string engaged;
    for (const auto& w : s.workers) {
      if (w.pool != dispatch::worker_pool::reserve || w.state != "engaged") continue;
      const auto busy = last_busy_.find(w.id);
      engaged += (engaged.empty() ? "" : ", ") + w.id + " engaged";
      if (w.running > 0)
        engaged += format(", running %u", w.running);
      else if (busy != last_busy_.end())
        engaged += format(", idle for %.1fs", now - busy->second);
    }
    if (!engaged.empty()) event("waiting for the release: " + engaged);
  }

  int summarize() const {
    std::map<std::string, std::uint64_t> by_status;
    std::map<std::string, std::uint64_t> ours_by_worker;
    dispatch::millis last_finish = 0;
    struct project_stats {
      std::uint64_t tasks = 0, completed = 0, failed = 0, dead = 0;
      std::int64_t wait_sum = 0, wait_max = 0;  // ms from creation to the (last) assignment
      dispatch::millis last_finish = 0;
    };
    std::map<std::string, project_stats> by_project;
    for (const auto& [id, task] : finals_) {
      const std::string status(dispatch::to_string(task.status));
      ++by_status[status];
      if (task.status == dispatch::task_status::completed) ++ours_by_worker[task.worker];
      last_finish = std::max(last_finish, task.finished_at);
      auto& p = by_project[task.project];
      ++p.tasks;
      if (task.status == dispatch::task_status::completed) ++p.completed;
      if (task.status == dispatch::task_status::failed) ++p.failed;
      if (task.status == dispatch::task_status::dead) ++p.dead;
      const std::int64_t wait = task.assigned_at > 0 ? task.assigned_at - task.created_at : 0;
      p.wait_sum += wait;
      p.wait_max = std::max(p.wait_max, wait);
      p.last_finish = std::max(p.last_finish, task.finished_at);
    }

    std::cout << "\n== summary ==\n";
    const std::uint64_t completed = by_status["completed"];
    const std::uint64_t not_completed = finals_.size() - completed;
    std::cout << format("tasks       %zu submitted: %llu completed, %llu failed, %llu dead, %llu "
                        "cancelled\n",
                        ids_.size(), static_cast<unsigned long long>(completed),
                        static_cast<unsigned long long>(by_status["failed"]),
                        static_cast<unsigned long long>(by_status["dead"]),
                        static_cast<unsigned long long>(by_status["cancelled"]));
    // Both ends are wall clock readings of this host: our first submit, the dispatcher's
    // record of the last completion.
    const double wall = static_cast<double>(last_finish - first_submit_ms_) / 1000.0;
    if (wall > 0)
      std::cout << format("wall time   %.2fs from the first submit to the last completion: "
                          "%.0f tasks/s\n",
                          wall, static_cast<double>(ids_.size()) / wall);

    std::cout << "\nworkers (completed/failed: dispatcher counters during the demo; ours: "
                 "demo tasks it completed)\n";
    text_table workers({"  worker", "pool", "completed", "failed", "ours"});
    for (const auto& w : last_.workers) {
      std::uint64_t base_completed = 0, base_failed = 0;
      for (const auto& b : baseline_.workers) {
        if (b.id != w.id) continue;
        base_completed = b.completed;
        base_failed = b.failed;
      }
      const auto ours = ours_by_worker.find(w.id);
      workers.add_row({"  " + w.id, std::string(dispatch::to_string(w.pool)),
                       std::to_string(w.completed - std::min(w.completed, base_completed)),
                       std::to_string(w.failed - std::min(w.failed, base_failed)),
                       std::to_string(ours == ours_by_worker.end() ? 0 : ours->second)});
    }
    std::cout << workers.render();

    std::cout << "\nprojects (wait: from submit to assignment; done: last completion after the "
                 "first submit)\n";
    text_table projects(
        {"  project", "priority", "tasks", "completed", "failed", "dead", "avg wait", "max wait",
         "done"});
    for (const auto& profile : profiles_) {
      const auto it = by_project.find(profile.name);
      if (it == by_project.end()) continue;
      const project_stats& p = it->second;
      projects.add_row(
          {"  " + profile.name, format("%d..%d", profile.min_priority, profile.max_priority),
           std::to_string(p.tasks), std::to_string(p.completed), std::to_string(p.failed),
           std::to_string(p.dead),
           format_ms(static_cast<double>(p.wait_sum) / static_cast<double>(p.tasks)),
           format_ms(static_cast<double>(p.wait_max)),
           format("+%.2fs", static_cast<double>(p.last_finish - first_submit_ms_) / 1000.0)});
    }
    std::cout << projects.render();

    const auto engagements = last_.reserve_engagements - baseline_.reserve_engagements;
    const auto releases = last_.reserve_releases - baseline_.reserve_releases;
    std::cout << format("\nreserve     dispatcher counters: %llu engagements, %llu releases "
                        "during the demo (%llu / %llu in total)\n",
                        static_cast<unsigned long long>(engagements),
                        static_cast<unsigned long long>(releases),
                        static_cast<unsigned long long>(last_.reserve_engagements),
                        static_cast<unsigned long long>(last_.reserve_releases));
    if (reserve_.history().empty())
      std::cout << "            no reserve worker was engaged\n";
    std::map<std::string, double> engaged_at;
    for (const auto& change : reserve_.history()) {
      std::cout << "            " << demo::describe(change);
      if (change.what == demo::reserve_change::kind::engaged) {
        engaged_at[change.worker] = change.at_seconds;
      } else if (const auto since = engaged_at.find(change.worker); since != engaged_at.end()) {
        std::cout << format(" (engaged for %.1fs)", change.at_seconds - since->second);
        engaged_at.erase(since);
      }
      std::cout << "\n";
    }
    if (release_timed_out_)
      std::cout << "            note: still engaged "
                << dispatch::format_duration(opts_.release_wait)
                << " after the last task (--release-wait); it was not released in time\n";

    if (not_completed > 0) {
      std::cerr << "dispatch-demo: " << not_completed << " of " << ids_.size()
                << " tasks did not complete\n";
      return exit_failure;
    }
    return exit_ok;
  }

  double elapsed() const { return seconds_between(start_, steady::now()); }

  options opts_;
  admin_client work_;   // submit and status (producer messages) go to the work endpoint
  admin_client admin_;  // stats
  std::vector<demo::project_profile> profiles_;
  std::set<std::string> project_names_;
  std::map<std::string, std::uint32_t> submitted_per_project_;
  protocol::stats baseline_;
  protocol::stats last_;
  int poll_failures_ = 0;
  demo::reserve_tracker reserve_;
  std::map<std::string, double> last_busy_;  // reserve worker -> last seen running (or engaged)
  steady::time_point start_ = steady::now();  // the first submit
  dispatch::millis first_submit_ms_ = 0;      // the same moment on the wall clock
  std::vector<dispatch::task_id> ids_;
  std::vector<dispatch::task_id> unfinished_;
  std::map<dispatch::task_id, dispatch::task> finals_;
  std::optional<steady::time_point> all_final_at_;
  bool release_timed_out_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  options opts;
  if (const auto code = parse_options(argc, argv, opts)) return *code;
  try {
    zmq::context_t context;
    // Declared after the context so that its sockets close first (linger 0: no wait).
    demo_run run(context, std::move(opts));
    return run.run();
  } catch (const demo_failure& e) {
    std::cerr << "dispatch-demo: " << e.what() << "\n";
    return exit_failure;
  } catch (const std::exception& e) {
    // An unforeseen zmq failure; still one line rather than an abort.
    std::cerr << "dispatch-demo: unexpected error: " << e.what() << "\n";
    return exit_failure;
  }
}
