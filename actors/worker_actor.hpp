// One actor per connected worker: its liveness clock. The dispatcher tells it of every heartbeat
// (and answers the heartbeat itself, since the answer carries orders and lease warnings drawn from
// the dispatcher's state). When no heartbeat arrived for liveness * heartbeat, it tells the
// dispatcher the worker is lost and stops; the dispatcher then hands the worker's tasks back.
//
//   (heartbeat_atom)  the worker is alive
//   to the dispatcher: (lost_atom, worker id, this actor)
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/fwd.hpp>

namespace dispatch::actors {

struct liveness_settings {
  std::chrono::milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;
};

caf::actor spawn_worker(caf::local_actor* dispatcher, std::string worker,
                        liveness_settings settings);

}  // namespace dispatch::actors
