#include "dispatchctl/commands.hpp"

#include <string>
#include <type_traits>

#include "dispatchctl/json_render.hpp"
#include "dispatchctl/table_render.hpp"
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
        } else {
          // Worker messages are never built by the command line.
          return unexpected(request, reply, err);
        }
      },
      request);
}

int execute(const invocation& inv, admin_client& client, std::ostream& out, std::ostream& err) {
  const call_result result = client.call(inv.request);
  if (const auto* failure = std::get_if<client_error>(&result)) {
    err << "dispatchctl: " << failure->message << "\n";
    // A malformed --endpoint is a command line mistake like any other.
    return failure->what == client_error::kind::bad_endpoint ? exit_usage : exit_failure;
  }
  return print_reply(inv.request, inv.json, std::get<protocol::reply_body>(result), out, err);
}

}  // namespace dispatch::ctl
