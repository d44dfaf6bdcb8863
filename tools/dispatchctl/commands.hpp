// Running a parsed command: send its request, print the reply, choose the exit code.
#pragma once

#include <ostream>

#include "dispatchctl/admin_client.hpp"
#include "dispatchctl/cli.hpp"
#include "protocol/messages.hpp"

namespace dispatch::ctl {

// Sends inv.request through `client` and reports on `out` / `err`. Returns the exit code.
int execute(const invocation& inv, admin_client& client, std::ostream& out, std::ostream& err);

// The printing half of execute, apart so it can be tested without a socket: shows `reply`
// as the answer to `request` (table or JSON). A dispatcher error, or a reply of the wrong
// kind, goes to `err` with exit_failure.
int print_reply(const protocol::request_body& request, bool json,
                const protocol::reply_body& reply, std::ostream& out, std::ostream& err);

}  // namespace dispatch::ctl
