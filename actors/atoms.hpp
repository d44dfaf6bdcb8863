// The vocabulary actors use among themselves (never on the wire: the wire is protocol/).
// Every type carried in a message is local-only, so it is declared an allowed unsafe message type
// rather than given a serializer it would never use.
#pragma once

#include <array>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include <caf/all.hpp>

#include "actors/event.hpp"
#include "dispatcher/envelope.hpp"
#include "persistence/task_store.hpp"
#include "protocol/messages.hpp"

namespace dispatch::actors {

using inbound_atom = caf::atom_constant<caf::atom("inbound")>;      // io -> dispatcher
using tick_atom = caf::atom_constant<caf::atom("tick")>;            // periodic reserve check
using fetch_end_atom = caf::atom_constant<caf::atom("fetchend")>;   // a long poll ran out
using grace_end_atom = caf::atom_constant<caf::atom("graceend")>;   // recovery grace is over
using liveness_atom = caf::atom_constant<caf::atom("liveness")>;    // worker actor's own timer
using lost_atom = caf::atom_constant<caf::atom("lost")>;            // worker actor -> dispatcher
using write_atom = caf::atom_constant<caf::atom("write")>;          // -> persistence
using flush_atom = caf::atom_constant<caf::atom("flush")>;          // persistence, to itself
using find_atom = caf::atom_constant<caf::atom("find")>;            // -> persistence: one task
using list_atom = caf::atom_constant<caf::atom("list")>;            // -> store reader, notifier
using read_atom = caf::atom_constant<caf::atom("read")>;            // -> store reader: tasks
using settings_atom = caf::atom_constant<caf::atom("settings")>;    // -> project: change them
using moved_atom = caf::atom_constant<caf::atom("moved")>;          // -> project: status change
using info_atom = caf::atom_constant<caf::atom("info")>;            // -> project: describe
using events_atom = caf::atom_constant<caf::atom("events")>;        // -> notifier
using events_due_atom = caf::atom_constant<caf::atom("eventsdue")>;  // dispatcher, to itself
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;    // drain, then quit
using purge_atom = caf::atom_constant<caf::atom("purge")>;          // retention of old tasks

using event_list = std::vector<event>;
// Change of the count of tasks per status (index = task_status).
using status_deltas = std::array<std::int64_t, task_status_count>;
using project_deltas = std::map<std::string, status_deltas>;
using task_list = std::vector<task>;
using shared_store = std::shared_ptr<persistence::task_store>;
using shared_recovery = std::shared_ptr<persistence::recovered_state>;

}  // namespace dispatch::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::inbound)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<dispatch::inbound>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::task)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::actors::task_list)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<dispatch::task_id>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::actors::event_list)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::actors::status_deltas)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::actors::project_deltas)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::project_settings)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::task_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::persistence::write_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::persistence::task_filter)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::persistence::purge_cursor)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::persistence::expired_entries)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::protocol::task_list)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::protocol::event_list)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::protocol::list_events)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::protocol::project_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::actors::shared_store)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dispatch::actors::shared_recovery)
