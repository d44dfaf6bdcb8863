// One actor per connected worker: it answers the worker's heartbeats and watches its liveness.
// When no heartbeat arrived for liveness * heartbeat, it tells the dispatcher the worker is lost
// and stops; the dispatcher then hands the worker's tasks back to the queue.
//
//   (heartbeat_atom, request id)  -> replies "ok" to the worker
//   to the dispatcher: (lost_atom, worker id, this actor)
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

#include "dispatcher/envelope.hpp"

namespace dispatch {
class outbox;
}

namespace dispatch::actors {

struct liveness_settings {
  std::chrono::milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;
};

caf::actor spawn_worker(caf::local_actor* dispatcher, std::string worker, peer_address peer,
                        std::shared_ptr<outbox> out, liveness_settings settings);

}  // namespace dispatch::actors
