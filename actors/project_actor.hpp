// One actor per project: the authority on its settings (paused, max_inflight, weight), which it
// stores before it confirms them, and keeper of its task counts per status. The queue of the
// project's tasks lives in the dispatcher's policy, because choosing the most urgent task across
// all projects in O(log n) needs one index over all of them.
//
//   (settings_atom, project_settings)       -> project_settings once stored, or an error
//   (moved_atom, status_deltas)             -> applies count changes
//   (info_atom)                             -> protocol::project_info
#pragma once

#include <array>
#include <string>

#include <caf/fwd.hpp>

#include "persistence/task_store.hpp"

namespace dispatch::actors {

caf::actor spawn_project(caf::local_actor* parent, std::string name, project_settings settings,
                         persistence::status_counts counts, caf::actor persistence);

}  // namespace dispatch::actors
