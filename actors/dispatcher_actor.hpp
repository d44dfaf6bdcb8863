// The dispatcher actor: the hub every request passes through. It owns the scheduling policy and
// the table of live tasks (pending and running, with their payloads), answers workers and
// producers, and turns every change into a store write (through the persistence actor), count
// changes (to the project actors) and events (to the notifier). docs/ARCHITECTURE.md shows the
// flows.
//
//   (inbound_atom, std::vector<inbound>)  the requests the I/O thread read in one wake-up
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/atoms.hpp"
#include "actors/worker_actor.hpp"

namespace dispatch {
class outbox;
}
namespace dispatch::metrics {
class dispatcher_metrics;
}

namespace dispatch::actors {

struct dispatcher_settings {
  liveness_settings liveness;
  std::chrono::milliseconds scale_interval{1000};
  std::chrono::milliseconds reserve_cooldown{10000};
  // After a restart, tasks that were running wait this long for their worker to re-register and
  // report them before they go back to the queue.
  std::chrono::milliseconds recovery_grace{5000};
  // A failed attempt waits min(retry_cap, retry_base * 2^(attempt-1)), scaled by a random
  // factor in [0.5, 1] so that tasks that failed together do not return together.
  std::chrono::milliseconds retry_base{1000};
  std::chrono::milliseconds retry_cap{300000};
  // A repeated idempotency key within this window returns the first task.
  std::chrono::milliseconds idempotency_window{24 * 3600 * 1000};
  // Live tasks kept whole in memory. Pending tasks submitted (or recovered) beyond it keep only
  // their id in memory and are read back from the store when dispatched.
  std::size_t resident_tasks = 100000;
  // Finished tasks are removed this long after they finished.
  std::chrono::milliseconds retention{7 * 24 * 3600 * 1000};
};

// Sends the replies queued so far at once, if the calling thread serves the sockets
// (io_driven_queue::send_output_now); true when it did and no request waits to be read.
using send_replies_now_fn = std::function<bool()>;

// `store` is read directly for point reads (idempotency keys, parked tasks) and by the task
// query actor the dispatcher spawns (store_reader_actor.hpp). Writes go through `persistence`,
// except small ones the dispatcher makes itself when nothing stands before them (see
// flush_writes in dispatcher_actor.cpp); `send_replies_now` lets it send its replies first.
caf::actor spawn_dispatcher(caf::actor_system& system, dispatcher_settings settings,
                            shared_recovery recovered, shared_store store,
                            caf::actor persistence, caf::actor notifier,
                            std::shared_ptr<outbox> out, send_replies_now_fn send_replies_now,
                            std::shared_ptr<metrics::dispatcher_metrics> metrics);

}  // namespace dispatch::actors
