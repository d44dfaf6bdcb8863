#include "dispatcher/authorization.hpp"

#include <type_traits>
#include <variant>

#include "protocol/codec.hpp"

namespace dispatch {
namespace {

using namespace protocol;

template <class T>
constexpr bool is_worker_message =
    std::is_same_v<T, register_worker> || std::is_same_v<T, fetch> ||
    std::is_same_v<T, complete> || std::is_same_v<T, fail> || std::is_same_v<T, heartbeat> ||
    std::is_same_v<T, goodbye> || std::is_same_v<T, extend>;

template <class T>
constexpr bool is_producer_message = std::is_same_v<T, submit> || std::is_same_v<T, get_task> ||
                                     std::is_same_v<T, cancel> || std::is_same_v<T, list_tasks>;

std::string outside_scope(const std::string& project) {
  return "this token may not use project \"" + project + "\"";
}

std::string project_refusal(const security::principal& who, const submit& m) {
  for (const auto& spec : m.tasks)
    if (!who.may_use(spec.project)) return outside_scope(spec.project);
  return {};
}

std::string project_refusal(const security::principal& who, const list_tasks& m) {
  if (who.all_projects()) return {};
  if (!m.project) return "this token is limited to some projects: name one with \"project\"";
  return who.may_use(*m.project) ? std::string{} : outside_scope(*m.project);
}

// Tasks named by id are checked by the dispatcher, which knows their project.
std::string project_refusal(const security::principal&, const get_task&) { return {}; }
std::string project_refusal(const security::principal&, const cancel&) { return {}; }

}  // namespace

std::string authorization_refusal(const security::principal& who, const request_body& body) {
  return std::visit(
      [&](const auto& msg) -> std::string {
        using T = std::decay_t<decltype(msg)>;
        switch (who.who) {
          case security::role::admin:
            return {};
          case security::role::worker:
            if constexpr (is_worker_message<T>) return {};
            break;
          case security::role::producer:
            if constexpr (is_producer_message<T>) return project_refusal(who, msg);
            break;
        }
        return "the " + std::string(security::to_string(who.who)) + " role may not send \"" +
               std::string(type_name(body)) + "\"";
      },
      body);
}

}  // namespace dispatch
