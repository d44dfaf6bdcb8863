#include "dispatcher/authorization.hpp"

#include "dispatcher/envelope.hpp"
#include "protocol/codec.hpp"

namespace dispatch {
namespace {

using namespace protocol;

std::string outside_scope(const std::string& project) {
  return "this token may not use project \"" + project + "\"";
}

// What a producer may see: tasks of its projects. Tasks named by id (status, cancel) are checked
// by the dispatcher, which knows their project.
std::string project_refusal(const security::principal& who, const request_body& body) {
  if (who.all_projects()) return {};
  if (const auto* m = std::get_if<submit>(&body)) {
    for (const auto& spec : m->tasks)
      if (!who.may_use(spec.project)) return outside_scope(spec.project);
  } else if (const auto* q = std::get_if<list_tasks>(&body)) {
    if (!q->project) return "this token is limited to some projects: name one with \"project\"";
    if (!who.may_use(*q->project)) return outside_scope(*q->project);
  }
  return {};
}

}  // namespace

std::string authorization_refusal(const security::principal& who, const request_body& body) {
  const auto family = family_of(body);
  switch (who.who) {
    case security::role::admin:
      return {};
    case security::role::worker:
      if (family == message_family::worker) return {};
      break;
    case security::role::producer:
      // Producers also page through their tasks (`tasks`, on the admin endpoint).
      if (family == message_family::producer || std::holds_alternative<list_tasks>(body))
        return project_refusal(who, body);
      break;
  }
  return "the " + std::string(security::to_string(who.who)) + " role may not send \"" +
         std::string(type_name(body)) + "\"";
}

}  // namespace dispatch
