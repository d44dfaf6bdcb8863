#include "actors/project_actor.hpp"

#include "actors/atoms.hpp"

namespace dispatch::actors {
namespace {

struct project_state {
  std::string project;
  project_settings settings;
  persistence::status_counts counts{};
  caf::actor persistence;
  static inline const char* name = "project";
};

using project_actor = caf::stateful_actor<project_state>;

caf::behavior project(project_actor* self, std::string name, project_settings settings,
                      persistence::status_counts counts, caf::actor store) {
  auto& st = self->state;
  st.project = std::move(name);
  st.settings = settings;
  st.counts = counts;
  st.persistence = std::move(store);
  return {
      [=](settings_atom, project_settings wanted) {
        auto rp = self->make_response_promise();
        persistence::write_batch batch;
        batch.put_project(self->state.project, wanted);
        self->request(self->state.persistence, caf::infinite, write_atom::value, std::move(batch))
            .then(
                [=](caf::ok_atom) mutable {
                  self->state.settings = wanted;
                  rp.deliver(wanted);
                },
                [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [=](moved_atom, const status_deltas& deltas) {
        auto& counts = self->state.counts;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          // Counts are never negative; a delta below zero is clamped rather than wrapped.
          const auto next = static_cast<std::int64_t>(counts[i]) + deltas[i];
          counts[i] = next < 0 ? 0 : static_cast<std::uint64_t>(next);
        }
      },
      [=](info_atom) {
        const auto& s = self->state;
        protocol::project_info info;
        info.name = s.project;
        info.paused = s.settings.paused;
        info.max_inflight = s.settings.max_inflight;
        info.weight = s.settings.weight;
        for (int i = 0; i < task_status_count; ++i)
          info.counts.emplace(to_string(static_cast<task_status>(i)), s.counts[i]);
        return info;
      },
  };
}

}  // namespace

caf::actor spawn_project(caf::local_actor* parent, std::string name, project_settings settings,
                         persistence::status_counts counts, caf::actor persistence) {
  return parent->spawn(project, std::move(name), settings, counts,
                                    std::move(persistence));
}

}  // namespace dispatch::actors
