#include "actors/notifier_actor.hpp"

#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"

namespace dispatch::actors {
namespace {

bool is_task_event(event_kind k) { return k <= event_kind::task_overdue; }

struct notifier_state {
  std::uint64_t delivered = 0;
  static inline const char* name = "notifier";
};

caf::behavior notifier(caf::stateful_actor<notifier_state>* self) {
  return {
      [=](events_atom, const event_list& events) {
        for (const auto& e : events) {
          ++self->state.delivered;
          const auto level = is_task_event(e.kind) ? spdlog::level::debug : spdlog::level::info;
          if (!spdlog::should_log(level)) continue;
          spdlog::log(level, "event {}{}{}{}{}{}{}", to_string(e.kind),
                      e.task ? " task=" + std::to_string(e.task) : std::string(),
                      e.project.empty() ? "" : " project=", e.project,
                      e.worker.empty() ? "" : " worker=", e.worker,
                      e.detail.empty() ? std::string() : " (" + e.detail + ")");
        }
      },
  };
}

}  // namespace

caf::actor spawn_notifier(caf::actor_system& system) { return system.spawn(notifier); }

}  // namespace dispatch::actors
