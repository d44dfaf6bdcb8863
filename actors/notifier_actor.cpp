#include "actors/notifier_actor.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "actors/atoms.hpp"
#include "actors/event_command_sink.hpp"
#include "actors/pin_actor_thread.hpp"
#include "persistence/event_log.hpp"
#include "protocol/wall_clock.hpp"

namespace dispatch::actors {
namespace {

// Retention runs this often, in steps of at most purge_step deletions. A step is one RocksDB
// write; steps follow each other through the mailbox, so events keep flowing during a long purge.
constexpr auto purge_interval = std::chrono::minutes(10);
constexpr std::size_t purge_step = 10'000;
// Events queued per subscriber before ZeroMQ drops them for that subscriber (the default is
// 1,000): room for a burst, such as a large batch submit, while a subscriber catches up. Missed
// events can still be read back from the log.
constexpr int pub_high_water_mark = 10'000;
// A failing log write is reported at most this often, with the count since the last report.
constexpr auto store_error_interval = std::chrono::seconds(10);

bool is_task_event(event_kind k) { return k <= event_kind::task_overdue; }

// The published form of an event: a msgpack map with the keys of the protocol's event_record,
// so a subscriber decodes it like the records in an `event_list` reply.
std::string publish_payload(const protocol::event_record& e) {
  const nlohmann::ordered_json j = {{"seq", e.seq},         {"kind", e.kind},
                                    {"at", e.at},           {"task", e.task},
                                    {"project", e.project}, {"worker", e.worker},
                                    {"detail", e.detail}};
  std::string out;
  nlohmann::ordered_json::to_msgpack(j, out);
  return out;
}

void log_event(const protocol::event_record& e, event_kind kind) {
  // Task events are many: debug. Worker, reserve and project events are rare and matter: info.
  const auto level = is_task_event(kind) ? spdlog::level::debug : spdlog::level::info;
  if (!spdlog::should_log(level)) return;
  spdlog::log(level, "event {} {}{}{}{}{}{}", e.seq, e.kind,
              e.task ? " task=" + std::to_string(e.task) : std::string(),
              e.project.empty() ? "" : " project=", e.project, e.worker.empty() ? "" : " worker=",
              e.worker, e.detail.empty() ? std::string() : " (" + e.detail + ")");
}

// Everything the notifier owns, made by spawn_notifier so that a failure can throw there.
struct notifier_resources {
  std::unique_ptr<persistence::event_log> log;
  std::unique_ptr<zmq::socket_t> pub;  // null: publishing is off
  std::unique_ptr<event_command_sink> sink;  // null: no command
  std::vector<int> cpus;                     // --storage-cpus
  std::chrono::milliseconds retention{0};  // 0: keep events forever
};

struct notifier_state {
  notifier_resources r;
  // Log write failures not yet reported, and when the last report was.
  std::uint64_t store_failures = 0;
  std::optional<std::chrono::steady_clock::time_point> last_store_report;

  notifier_state() = default;
  notifier_state(const notifier_state&) = delete;
  notifier_state& operator=(const notifier_state&) = delete;
  // The state dies with the actor. The socket must close here, on the actor's thread, and
  // without lingering, or the daemon's zmq::context_t would wait for it at exit; the sink stops
  // (bounded by its grace period) after it.
  ~notifier_state() {
    if (r.pub) r.pub->close();
    r.sink.reset();
  }

  static inline const char* name = "notifier";

  void store(std::vector<protocol::event_record>& records) {
    const persistence::status s = r.log->append(records);
    if (s.is_ok()) return;
    // The events still go out (they have their numbers); only reading them back is lost.
    ++store_failures;
    const auto now = std::chrono::steady_clock::now();
    if (last_store_report && now - *last_store_report < store_error_interval) return;
    spdlog::error("events not stored ({} batches since the last report): {}", store_failures,
                  s.to_string());
    store_failures = 0;
    last_store_report = now;
  }

  void publish(const protocol::event_record& e) {
    if (!r.pub) return;
    try {
      // A PUB socket never blocks: at the high-water mark it drops for that subscriber.
      r.pub->send(zmq::buffer(e.kind), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      r.pub->send(zmq::buffer(publish_payload(e)), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& err) {
      spdlog::error("cannot publish event {}: {}", e.seq, err.what());
    }
  }
};

caf::behavior notifier(caf::stateful_actor<notifier_state>* self,
                       std::shared_ptr<notifier_resources> resources) {
  // Moved out rather than shared: CAF may keep the spawn arguments alive after this call, and
  // the socket must close with the state, not whenever CAF lets go of them.
  self->state.r = std::move(*resources);
  pin_actor_thread("notifier", self->state.r.cpus);  // detached: this is the actor's thread
  self->send(self, purge_atom::value);  // old events may have aged while the daemon was down
  return {
      [=](events_atom, const event_list& events) {
        auto& st = self->state;
        std::vector<protocol::event_record> records;
        records.reserve(events.size());
        for (const auto& e : events)
          records.push_back({0, std::string(to_string(e.kind)), e.at, e.task, e.project, e.worker,
                             e.detail});
        st.store(records);  // one write per message, however many events
        for (std::size_t i = 0; i < records.size(); ++i) {
          st.publish(records[i]);
          log_event(records[i], events[i].kind);
        }
        if (st.r.sink) st.r.sink->push(records);
      },
      [=](list_atom, const protocol::list_events& q) -> caf::result<protocol::event_list> {
        protocol::event_list page;
        const persistence::status s = self->state.r.log->read(q, page);
        if (!s.is_ok()) {
          spdlog::error("cannot read events: {}", s.to_string());
          return caf::make_error(caf::sec::runtime_error, s.to_string());
        }
        return page;
      },
      [=](purge_atom) {
        auto& st = self->state;
        if (st.r.retention.count() <= 0) return;
        persistence::event_purge_result result;
        const persistence::status s =
            st.r.log->purge(wall_now() - st.r.retention.count(), purge_step, result);
        if (!s.is_ok())
          spdlog::error("event retention: {}", s.to_string());
        else if (result.removed > 0)
          spdlog::debug("event retention: removed {} events{}", result.removed,
                        result.unreadable ? " (" + std::to_string(result.unreadable) +
                                                " unreadable)"
                                          : std::string());
        if (s.is_ok() && result.more)
          self->send(self, purge_atom::value);  // the next step, after what is queued
        else
          self->delayed_send(self, purge_interval, purge_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_notifier(caf::actor_system& system, zmq::context_t& context,
                          const notifier_settings& settings) {
  auto r = std::make_shared<notifier_resources>();
  r->cpus = settings.storage_cpus;
  const auto dir = (std::filesystem::path(settings.data_dir) / "events").string();
  if (const auto s = persistence::event_log::open(dir, r->log); !s.is_ok())
    throw std::runtime_error(s.to_string());
  if (!settings.events_endpoint.empty()) {
    r->pub = std::make_unique<zmq::socket_t>(context, zmq::socket_type::pub);
    r->pub->set(zmq::sockopt::linger, 0);  // see ~notifier_state
    r->pub->set(zmq::sockopt::sndhwm, pub_high_water_mark);
    try {
      r->pub->bind(settings.events_endpoint);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot bind the events endpoint " + settings.events_endpoint +
                               ": " + e.what());
    }
  }
  if (!settings.command.empty()) {
    command_sink_settings sink;
    sink.command = settings.command;
    r->sink = std::make_unique<event_command_sink>(std::move(sink));
  }
  r->retention = settings.retention;
  spdlog::debug("event log {}: last seq {}", dir, r->log->last_seq());
  // Detached: it writes RocksDB and runs its own socket, and must not hold a scheduler thread
  // the dispatcher needs while it does.
  return system.spawn<caf::detached>(notifier, std::move(r));
}

}  // namespace dispatch::actors
