// Who may do what. A token stands for one principal: a role, and for producers the projects
// they may use. The rules of which request each role may send live with the requests, in
// dispatcher/authorization.hpp; this header only names the roles.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dispatch::security {

enum class role : unsigned char {
  worker,    // register, fetch, and report on the tasks it holds
  producer,  // submit, query and cancel tasks of its projects
  admin,     // everything
};

std::string_view to_string(role r);
std::optional<role> parse_role(std::string_view text);

struct principal {
  role who = role::worker;
  // Producers only: the projects this token may use. Empty means every project.
  std::vector<std::string> projects;
  // A label for logs and metrics (never the token): e.g. "producer:billing" or a name from the
  // tokens file.
  std::string label;

  bool all_projects() const { return who == role::admin || projects.empty(); }
  bool may_use(std::string_view project) const;
};

}  // namespace dispatch::security
