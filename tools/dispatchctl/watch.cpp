#include "dispatchctl/watch.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <utility>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "dispatchctl/admin_client.hpp"
#include "dispatchctl/cli.hpp"
#include "dispatchctl/time_format.hpp"
#include "protocol/codec.hpp"

namespace dispatch::ctl {
namespace {

using clock = std::chrono::steady_clock;

// Stored events are fetched in pages of this many.
constexpr std::uint32_t replay_page = 1000;
// Before the replay starts, the subscription is given this long to reach the dispatcher (ZeroMQ
// connects and subscribes in the background): events published after the replay's last page
// must already flow to us, or they would fall between replay and live stream.
constexpr auto subscribe_settle = std::chrono::milliseconds(200);
// Live events queued in ZeroMQ while this process is busy (printing, replaying). The rest are
// dropped by ZeroMQ; --from-seq with the last seq seen recovers them.
constexpr int receive_high_water_mark = 100'000;

// SIGINT and SIGTERM, taken as readable data on a descriptor that sits in the same poll as the
// socket, rather than by a handler: no global flag, and no interrupted call to retry.
class signal_watch {
 public:
  signal_watch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
    fd_ = signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
  }
  ~signal_watch() {
    if (fd_ >= 0) ::close(fd_);
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  signal_watch(const signal_watch&) = delete;
  signal_watch& operator=(const signal_watch&) = delete;

  int fd() const { return fd_; }
  // Takes a pending signal, if any.
  bool received() {
    signalfd_siginfo info;
    return ::read(fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info);
  }

 private:
  sigset_t set_;
  sigset_t previous_;
  int fd_ = -1;
};

// Control characters would let an event rewrite the terminal or split its line.
std::string escaped(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

template <class T>
bool get_unsigned(const nlohmann::json& j, const char* key, T& out) {
  const auto it = j.find(key);
  if (it == j.end()) return true;  // absent: keeps the default
  if (!it->is_number_unsigned()) return false;
  out = it->get<T>();
  return true;
}

bool get_string(const nlohmann::json& j, const char* key, std::string& out) {
  const auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

// Receives every message waiting on `sub` without blocking, and hands each decoded event on.
template <class Handle>
void drain(zmq::socket_t& sub, std::ostream& err, Handle handle) {
  for (;;) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(sub, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    std::optional<protocol::event_record> e;
    if (parts.size() == 2) e = decode_published(parts[1].to_string_view());
    if (!e) {
      err << "dispatchctl: ignored a published message that is not an event\n";
      continue;
    }
    handle(std::move(*e));
  }
}

// Waits for the socket, a signal or the timeout (-1: none). True when a signal came.
bool wait(zmq::socket_t& sub, signal_watch& signals, std::chrono::milliseconds timeout) {
  zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, signals.fd(), ZMQ_POLLIN, 0}};
  try {
    zmq::poll(items, 2, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    return false;
  }
  return (items[1].revents & ZMQ_POLLIN) != 0 && signals.received();
}

class printer {
 public:
  printer(bool json, std::ostream& out) : json_(json), out_(out) {}
  void operator()(const protocol::event_record& e) {
    // Flushed per event: a watch is read live, often through a pipe.
    out_ << (json_ ? event_json_line(e) : event_line(e)) << '\n' << std::flush;
  }

 private:
  bool json_;
  std::ostream& out_;
};

}  // namespace

std::optional<protocol::event_record> decode_published(std::string_view payload) {
  const auto j = nlohmann::json::from_msgpack(payload.begin(), payload.end(), /*strict=*/true,
                                              /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("seq") || !j.contains("kind")) return std::nullopt;
  protocol::event_record e;
  // "at" is signed on the wire (ms since the epoch); msgpack stores it unsigned when positive.
  const auto at = j.find("at");
  if (at != j.end()) {
    if (!at->is_number_integer()) return std::nullopt;
    e.at = at->get<millis>();
  }
  if (!get_unsigned(j, "seq", e.seq) || !get_string(j, "kind", e.kind) ||
      !get_unsigned(j, "task", e.task) || !get_string(j, "project", e.project) ||
      !get_string(j, "worker", e.worker) || !get_string(j, "detail", e.detail))
    return std::nullopt;
  return e;
}

bool wanted(const watch_options& w, const protocol::event_record& e) {
  return !w.project || e.project == *w.project;
}

std::string event_line(const protocol::event_record& e) {
  std::string line = std::to_string(e.seq);
  line += "  ";
  line += format_rfc3339(e.at).value_or("-");
  line += "  ";
  line += escaped(e.kind);
  std::string fields;
  const auto field = [&](const char* name, const std::string& value) {
    if (value.empty()) return;
    fields += fields.empty() ? "" : " ";
    fields += name;
    fields += '=';
    fields += escaped(value);
  };
  if (e.task != 0) field("task", std::to_string(e.task));
  field("project", e.project);
  field("worker", e.worker);
  if (!fields.empty()) line += "  " + fields;
  if (!e.detail.empty()) line += "  " + escaped(e.detail);
  return line;
}

std::string event_json_line(const protocol::event_record& e) {
  nlohmann::ordered_json j;
  j["seq"] = e.seq;
  j["kind"] = e.kind;
  const auto at = format_rfc3339(e.at);
  j["at"] = at ? nlohmann::ordered_json(*at) : nlohmann::ordered_json(nullptr);
  j["task"] = e.task != 0 ? nlohmann::ordered_json(e.task) : nlohmann::ordered_json(nullptr);
  j["project"] = e.project.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.project);
  j["worker"] = e.worker.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.worker);
  j["detail"] = e.detail;
  // Names and details are not guaranteed to be UTF-8: replace bad bytes rather than fail.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

int run_watch(const invocation& inv, std::ostream& out, std::ostream& err) {
  const watch_options& w = *inv.watch;
  // Before the context: ZeroMQ's threads inherit this thread's mask, and one of them taking a
  // SIGINT would end the process with the default action instead of exit status 0.
  signal_watch signals;
  if (signals.fd() < 0) {
    err << "dispatchctl: cannot watch for signals: " << std::strerror(errno) << "\n";
    return exit_failure;
  }
  zmq::context_t context;
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::rcvhwm, receive_high_water_mark);
  sub.set(zmq::sockopt::reconnect_ivl, 100);  // the dispatcher may (re)start while we watch
  try {
    sub.connect(w.events_endpoint);
  } catch (const zmq::error_t& e) {
    err << "dispatchctl: cannot use endpoint '" << w.events_endpoint << "': " << e.what() << "\n";
    return exit_usage;
  }
  // Topics are event kinds, so ZeroMQ's prefix match is exactly the --types filter.
  if (w.types.empty()) sub.set(zmq::sockopt::subscribe, "");
  for (const auto& t : w.types) sub.set(zmq::sockopt::subscribe, t);

  printer print(inv.json, out);
  // With --from-seq, every event up to `cursor` has been shown (or filtered out) by the replay,
  // and live events at or below it are repeats.
  std::optional<std::uint64_t> cursor;

  if (w.from_seq) {
    cursor = *w.from_seq;
    // Live events that arrive during the replay wait here, so that ZeroMQ's queue cannot
    // overflow however long the replay takes.
    std::deque<protocol::event_record> early;
    const auto keep = [&](protocol::event_record&& e) { early.push_back(std::move(e)); };
    for (auto until = clock::now() + subscribe_settle; clock::now() < until;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
      if (wait(sub, signals, std::max(left, std::chrono::milliseconds(1)))) return exit_ok;
      drain(sub, err, keep);
    }

    admin_client admin(context, inv.endpoint, inv.timeout, inv.token, inv.curve_keys);
    for (;;) {
      protocol::list_events q;
      q.after = *cursor;
      q.limit = replay_page;
      q.project = w.project;
      q.kinds = w.types;
      const call_result result = admin.call(q);
      if (const auto* failure = std::get_if<client_error>(&result)) {
        err << "dispatchctl: " << failure->message << "\n";
        return failure->what == client_error::kind::bad_endpoint ? exit_usage : exit_failure;
      }
      const auto& reply = std::get<protocol::reply_body>(result);
      if (const auto* refused = std::get_if<protocol::error>(&reply)) {
        err << "dispatchctl: " << protocol::to_string(refused->code) << ": " << refused->message
            << "\n";
        return exit_failure;
      }
      const auto* page = std::get_if<protocol::event_list>(&reply);
      if (page == nullptr) {
        err << "dispatchctl: unexpected '" << protocol::type_name(reply)
            << "' reply to 'events'\n";
        return exit_failure;
      }
      for (const auto& e : page->events)
        if (e.seq > *cursor && wanted(w, e)) print(e);
      // `next` stops moving at the end of the log. It may pass the last event shown: events
      // the dispatcher examined and filtered out need no second look.
      if (page->next <= *cursor) break;
      cursor = page->next;
      drain(sub, err, keep);
      if (signals.received()) return exit_ok;
    }
    drain(sub, err, keep);
    for (const auto& e : early) {
      if (e.seq <= *cursor || !wanted(w, e)) continue;
      print(e);
      cursor = e.seq;
    }
  }

  const auto live = [&](protocol::event_record&& e) {
    if (!wanted(w, e)) return;
    if (cursor) {
      if (e.seq <= *cursor) return;
      cursor = e.seq;
    }
    print(e);
  };
  for (;;) {
    if (wait(sub, signals, std::chrono::milliseconds(-1))) return exit_ok;
    drain(sub, err, live);
  }
}

}  // namespace dispatch::ctl
