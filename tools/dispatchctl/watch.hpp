// `dispatchctl watch`: follows the dispatcher's event stream (its PUB socket) and prints one line
// per event until SIGINT or SIGTERM, optionally after replaying the stored events that followed
// a given seq, so that a watcher that was away misses nothing and sees nothing twice.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::ctl {

struct invocation;  // cli.hpp

constexpr const char* default_events_endpoint = "tcp://127.0.0.1:5557";

struct watch_options {
  std::string events_endpoint = default_events_endpoint;
  std::optional<std::string> project;  // only this project's events (filtered here)
  // Kinds or kind prefixes ("task.", "worker.lost"), as ZeroMQ subscriptions; empty: every event.
  std::vector<std::string> types;
  // Replay the stored events after this seq (from the admin endpoint) before following live.
  std::optional<std::uint64_t> from_seq;
};

// Runs inv.watch until SIGINT or SIGTERM (exit_ok). Fails with exit_failure when the replay
// cannot be fetched, exit_usage for an endpoint ZeroMQ does not accept. Blocks SIGINT and SIGTERM
// in the calling thread while it runs (it takes them through a signalfd), and creates its own
// ZeroMQ context after doing so, so that no ZeroMQ thread can receive them instead.
int run_watch(const invocation& inv, std::ostream& out, std::ostream& err);

// ---- the pieces, apart for tests ----

// A published event: [topic][msgpack map with the keys of protocol::event_record]. nullopt when
// the payload is not such a map.
std::optional<protocol::event_record> decode_published(std::string_view payload);

// Whether the live event passes the filters that the subscription cannot apply (the project).
bool wanted(const watch_options& w, const protocol::event_record& e);

// "12  2026-11-21T05:40:25.123Z  task.completed  task=7 project=p worker=w1  detail"; fields
// that are not set are left out, control characters are escaped. No trailing newline.
std::string event_line(const protocol::event_record& e);

// One line of JSON: {"seq","kind","at","task","project","worker","detail"}; "at" is RFC 3339 UTC,
// "task" null for worker and project events, "project" / "worker" null when empty.
std::string event_json_line(const protocol::event_record& e);

}  // namespace dispatch::ctl
