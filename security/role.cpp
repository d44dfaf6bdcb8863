#include "security/role.hpp"

#include <algorithm>

namespace dispatch::security {

std::string_view to_string(role r) {
  switch (r) {
    case role::worker: return "worker";
    case role::producer: return "producer";
    case role::admin: return "admin";
  }
  return "worker";
}

std::optional<role> parse_role(std::string_view text) {
  for (role r : {role::worker, role::producer, role::admin})
    if (to_string(r) == text) return r;
  return std::nullopt;
}

bool principal::may_use(std::string_view project) const {
  return all_projects() || std::find(projects.begin(), projects.end(), project) != projects.end();
}

}  // namespace dispatch::security
