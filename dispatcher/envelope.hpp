// A decoded request together with where it came from, as the I/O thread hands it to the actors,
// and the return address replies are sent to. No CAF and no ZeroMQ here.
#pragma once

#include <cstdint>
#include <string>

#include "protocol/messages.hpp"
#include "security/role.hpp"

namespace dispatch {

enum class endpoint_kind : std::uint8_t { work = 0, admin = 1 };

struct peer_address {
  endpoint_kind endpoint = endpoint_kind::work;
  std::string routing_id;  // ZeroMQ ROUTER identity of the connection
  bool delimiter = false;  // the client is a REQ socket: replies need the empty frame back
  // Who sent the request, when authentication is on (else nullptr: anyone may do anything). Points
  // into the daemon's token table, which outlives every actor.
  const security::principal* who = nullptr;

  // Whether the sender may see tasks of `project` (tasks named by id are checked with this).
  bool may_see(std::string_view project) const { return !who || who->may_use(project); }
};

struct inbound {
  peer_address from;
  protocol::request request;
};

// Who a request is for: workers (register fetch complete fail extend heartbeat goodbye),
// producers (submit status cancel) or operators (everything else). Endpoints and roles are both
// decided from this one classification.
enum class message_family : std::uint8_t { worker, producer, admin };
message_family family_of(const protocol::request_body& body);

// Worker messages belong on the work endpoint, admin queries on the admin endpoint, and producer
// messages on both. Returns nullptr when allowed, else the reason to send back.
const char* endpoint_refusal(endpoint_kind where, const protocol::request_body& body);

}  // namespace dispatch
