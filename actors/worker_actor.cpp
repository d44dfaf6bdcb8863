#include "actors/worker_actor.hpp"

#include "actors/atoms.hpp"

namespace dispatch::actors {
namespace {

using steady = std::chrono::steady_clock;

struct worker_state {
  std::string worker;
  caf::actor dispatcher;
  liveness_settings settings;
  steady::time_point last_heartbeat;
  static inline const char* name = "worker";
};

using worker_actor = caf::stateful_actor<worker_state>;

caf::behavior worker_behavior(worker_actor* self, std::string id, caf::actor dispatcher,
                              liveness_settings settings) {
  auto& st = self->state;
  st.worker = std::move(id);
  st.dispatcher = std::move(dispatcher);
  st.settings = settings;
  st.last_heartbeat = steady::now();  // registering counts as a sign of life
  self->delayed_send(self, settings.heartbeat, liveness_atom::value);
  return {
      [=](heartbeat_atom) { self->state.last_heartbeat = steady::now(); },
      [=](liveness_atom) {
        auto& s = self->state;
        const auto silent = steady::now() - s.last_heartbeat;
        if (silent > s.settings.heartbeat * s.settings.liveness) {
          self->send(s.dispatcher, lost_atom::value, s.worker,
                     caf::actor_cast<caf::actor>(self));
          self->quit();
          return;
        }
        self->delayed_send(self, s.settings.heartbeat, liveness_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_worker(caf::local_actor* dispatcher, std::string worker,
                        liveness_settings settings) {
  return dispatcher->spawn(worker_behavior, std::move(worker),
                           caf::actor_cast<caf::actor>(dispatcher), settings);
}

}  // namespace dispatch::actors
