// A CAF 0.17 scheduler policy around io_driven_queue: one queue shared by the scheduler's
// threads, the first of which serves the daemon's sockets while it has no job. Load it with
// `cfg.load<io_driven_scheduler>()` before the actor system starts, then attach the io_loop with
// `io_driven_queue_of(system).attach(io)`.
#pragma once

#include <caf/actor_system.hpp>
#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "actors/io_driven_queue.hpp"

namespace dispatch::actors {

class io_driven_scheduling : public caf::policy::unprofiled {
 public:
  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {}
    io_driven_queue queue;
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {}
  };

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    d(self).queue.push(job);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    d(self->parent()).queue.push(job);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    d(self->parent()).queue.push(job);
  }

  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    d(self->parent()).queue.push(job);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    return d(self->parent()).queue.pop(self->id() == 0);
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker*, UnaryFunction) {}

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    d(self).queue.drain(f);
  }
};

using io_driven_scheduler = caf::scheduler::coordinator<io_driven_scheduling>;

// `system` must run an io_driven_scheduler; anything else is a programming error.
inline io_driven_queue& io_driven_queue_of(caf::actor_system& system) {
  return dynamic_cast<io_driven_scheduler&>(system.scheduler()).data().queue;
}

}  // namespace dispatch::actors
