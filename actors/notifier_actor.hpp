// Receives every event the dispatcher produces, in order. For now its one sink is the log: task
// events at debug level (they are many), worker, reserve and project events at info level.
//
//   (events_atom, event_list)
#pragma once

#include <caf/fwd.hpp>

namespace dispatch::actors {

caf::actor spawn_notifier(caf::actor_system& system);

}  // namespace dispatch::actors
