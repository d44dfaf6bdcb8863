// Which requests each role may send. Plain C++ over the protocol types, checked by the I/O
// thread before a request reaches the actors:
//   worker    register, fetch, complete, fail, extend, heartbeat, goodbye
//   producer  submit, status, cancel, tasks — for the projects of its token only
//   admin     everything
// What the I/O thread cannot see (the project of a task named by id in status / cancel) is
// checked by the dispatcher actor against inbound::project_scope.
#pragma once

#include <string>

#include "protocol/messages.hpp"
#include "security/role.hpp"

namespace dispatch {

// Empty when `who` may send `body`; otherwise the reason, for a `forbidden` reply.
std::string authorization_refusal(const security::principal& who,
                                  const protocol::request_body& body);

}  // namespace dispatch
