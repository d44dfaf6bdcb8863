#include "actors/worker_actor.hpp"

#include <algorithm>

#include "actors/atoms.hpp"

namespace dispatch::actors {
namespace {

struct worker_state {
  std::string worker;
  caf::actor dispatcher;
  std::shared_ptr<const heartbeat_clock> clock;
  std::chrono::steady_clock::duration allowed{};  // silence after which the worker is lost
  std::chrono::milliseconds grid{};  // lateness allowed to a lost verdict, to share timers
  static inline const char* name = "worker";
};

using worker_actor = caf::stateful_actor<worker_state>;

// Sleeps until the worker's time would run out if no heartbeat came meanwhile, rounded up to the
// next multiple of `grid` on the steady clock: the timers of many workers then fall due
// together, and CAF's clock thread wakes once for all of them instead of once each.
void wait_for_deadline(worker_actor* self) {
  using namespace std::chrono;
  const auto& s = self->state;
  const auto now = steady_clock::now();
  // A millisecond more, so that a deadline reached exactly is past when the timer fires.
  const auto deadline = s.clock->last() + s.allowed + milliseconds(1);
  const auto grid = duration_cast<steady_clock::duration>(s.grid).count();
  const auto since_epoch = deadline.time_since_epoch().count();
  const auto on_grid = steady_clock::time_point(
      steady_clock::duration((since_epoch + grid - 1) / grid * grid));
  const auto wait = duration_cast<milliseconds>(on_grid - now) + milliseconds(1);
  self->delayed_send(self, std::max(wait, milliseconds(1)), liveness_atom::value);
}

caf::behavior worker_behavior(worker_actor* self, std::string id, caf::actor dispatcher,
                              std::shared_ptr<const heartbeat_clock> clock,
                              liveness_settings settings) {
  auto& st = self->state;
  st.worker = std::move(id);
  st.dispatcher = std::move(dispatcher);
  st.clock = std::move(clock);
  st.allowed = settings.heartbeat * settings.liveness;
  st.grid = std::clamp(settings.heartbeat / 4, std::chrono::milliseconds(1),
                       std::chrono::milliseconds(250));
  wait_for_deadline(self);
  return {
      [=](liveness_atom) {
        auto& s = self->state;
        if (std::chrono::steady_clock::now() - s.clock->last() > s.allowed) {
          self->send(s.dispatcher, lost_atom::value, s.worker,
                     caf::actor_cast<caf::actor>(self));
          self->quit();
          return;
        }
        wait_for_deadline(self);
      },
  };
}

}  // namespace

caf::actor spawn_worker(caf::local_actor* dispatcher, std::string worker,
                        std::shared_ptr<const heartbeat_clock> clock, liveness_settings settings) {
  return dispatcher->spawn(worker_behavior, std::move(worker),
                           caf::actor_cast<caf::actor>(dispatcher), std::move(clock), settings);
}

}  // namespace dispatch::actors
