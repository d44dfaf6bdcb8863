// The notifier receives every event the dispatcher produces, in order, and is the only place
// events go from there: it gives each one a sequence number, stores it (an event log beside the
// task store, kept for a retention window), publishes it on a ZeroMQ PUB socket (topic = event
// kind, so subscribers filter with ZeroMQ subscriptions), hands it to the configured sinks (a
// command run with the event as JSON on stdin), and logs it. No sink can slow the dispatcher:
// slow sinks queue and retry on their own time.
//
//   (events_atom, event_list)            store, publish, deliver
//   (list_atom, protocol::list_events)   -> protocol::event_list (stored events after a seq)
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

namespace zmq {
class context_t;
}

namespace dispatch::actors {

struct notifier_settings {
  std::string events_endpoint = "tcp://127.0.0.1:5557";  // PUB socket; "" = no publishing
  std::string data_dir = "./data";                       // the event log lives in data_dir/events
  std::chrono::milliseconds retention{7 * 24 * 3600 * 1000};
  std::string command;  // run for every event with its JSON on stdin; "" = none
  std::vector<int> storage_cpus;  // its thread runs only on these CPUs; empty: anywhere
};

// Opens the event log and binds the PUB socket; throws std::runtime_error naming what failed.
caf::actor spawn_notifier(caf::actor_system& system, zmq::context_t& context,
                          const notifier_settings& settings);

}  // namespace dispatch::actors
