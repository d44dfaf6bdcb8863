// The configurable size limits on what a request may carry. The decoder already enforces the
// protocol's absolute caps (docs/PROTOCOL.md); these are the operator's tighter bounds, checked by
// the I/O thread so that an oversize request is refused before it reaches the actors or the store.
#pragma once

#include <cstddef>
#include <string>

#include "protocol/messages.hpp"

namespace dispatch {

struct request_limits {
  std::size_t max_payload = 1 << 20;  // a task's payload, a completion's result (bytes)
  std::size_t max_batch = 10000;      // tasks per submit; caps jobs per fetch, rows per page
  std::size_t max_name = 128;         // project, type, worker and tag names (bytes)
  std::size_t max_text = 4096;        // titles, descriptions, error texts, search text (bytes)
  std::size_t max_tags = 32;          // tags per task or worker, types per worker
};

// Empty when `body` is within `limits`; otherwise which field exceeds which limit, for a
// too_large reply.
std::string limit_refusal(const protocol::request_body& body, const request_limits& limits);

// Lowers the "at most this many" of fetch, tasks and events to max_batch: asking for up to N is
// answered with up to max_batch, which every client handles (it pages on), so it is no error.
void cap_page_sizes(protocol::request_body& body, const request_limits& limits);

}  // namespace dispatch
