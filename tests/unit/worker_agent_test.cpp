// The worker agent: built-in handlers called directly, and the agent's protocol against a real
// ROUTER socket playing the dispatcher.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <deque>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "worker-agent/agent.hpp"
#include "worker-agent/builtin_handlers.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
namespace protocol = dispatch::protocol;
namespace worker = dispatch::worker;
namespace builtin = dispatch::worker::handlers;

worker::job make_job(std::string type, std::string payload) {
  worker::job j;
  j.id = 1;
  j.project = "p";
  j.type = std::move(type);
  j.payload = std::move(payload);
  j.attempt = 1;
  return j;
}

worker::job_outcome run(const worker::handler& h, const std::string& type,
                        const std::string& payload) {
  worker::stop_source never;
  return h(make_job(type, payload), never.token());
}

// Waits (bounded) for a condition another thread or process brings about.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout = 2s) {
  const auto deadline = clock_type::now() + timeout;
  while (!done()) {
    if (clock_type::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// ---- the dispatcher side ----

struct incoming {
  std::string peer;  // ROUTER routing id: a new one per agent connection
  std::uint64_t id = 0;
  protocol::request_body body;
};

class fake_dispatcher {
 public:
  fake_dispatcher() : router_(ctx_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  }

  const std::string& endpoint() const { return endpoint_; }

  // The oldest request of type T, received earlier or waited for. Heartbeats met on the way are
  // answered "ok" unless `answer_heartbeats` is false (a silent dispatcher); other requests are
  // kept for a later expect.
  template <class T>
  incoming expect(bool answer_heartbeats = true, std::chrono::milliseconds timeout = 3s) {
    for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
      if (!std::holds_alternative<T>(it->body)) continue;
      incoming found = *it;
      backlog_.erase(it);
      return found;
    }
    const auto deadline = clock_type::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - clock_type::now());
      auto msg = next(std::max(left, 0ms));
      if (!msg) FAIL("timed out waiting for a " << typeid(T).name() << " request");
      if (std::holds_alternative<T>(msg->body)) return *msg;
      if (!std::holds_alternative<protocol::heartbeat>(msg->body))
        backlog_.push_back(*msg);
      else if (answer_heartbeats)
        reply(*msg, protocol::ok{});
    }
  }

  // Drops the requests kept by expect, e.g. those of a connection the agent gave up.
  void forget_backlog() { backlog_.clear(); }

  void reply(const incoming& to, protocol::reply_body body) {
    std::string bytes;
    protocol::encode(protocol::reply{to.id, std::move(body)}, bytes);
    router_.send(zmq::buffer(to.peer), zmq::send_flags::sndmore);
    router_.send(zmq::buffer(bytes), zmq::send_flags::none);
  }

 private:
  std::optional<incoming> next(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    std::vector<zmq::message_t> frames;
    REQUIRE(zmq::recv_multipart(router_, std::back_inserter(frames)));
    REQUIRE(frames.size() == 2);  // routing id, body
    protocol::request req;
    protocol::decode_failure why;
    const auto& body = frames[1];
    INFO(why.message);
    REQUIRE(protocol::decode(std::string_view(body.data<char>(), body.size()), req, why));
    return incoming{frames[0].to_string(), req.id, std::move(req.body)};
  }

  zmq::context_t ctx_;
  zmq::socket_t router_;
  std::string endpoint_;
  std::deque<incoming> backlog_;
};

// Runs agent::run() on a thread; always stops and joins it, even when an assertion fails.
class running_agent {
 public:
  explicit running_agent(worker::agent& a) : agent_(a), thread_([this] {
    try {
      rc_ = agent_.run();
    } catch (...) {
      error_ = std::current_exception();
    }
  }) {}
  ~running_agent() {
    if (thread_.joinable()) {
      agent_.stop();
      agent_.stop();  // also interrupt running jobs
      thread_.join();
    }
  }
  running_agent(const running_agent&) = delete;
  running_agent& operator=(const running_agent&) = delete;

  int join() {
    thread_.join();
    if (error_) std::rethrow_exception(error_);
    return rc_;
  }

 private:
  worker::agent& agent_;
  int rc_ = -1;
  std::exception_ptr error_;
  std::thread thread_;
};

worker::agent_options test_options(const fake_dispatcher& d, std::uint32_t capacity = 1) {
  worker::agent_options o;
  o.endpoint = d.endpoint();
  o.id = "test-worker";
  o.capacity = capacity;
  o.fetch_wait = 200ms;
  return o;
}

protocol::job wire_job(dispatch::task_id task, std::string type, std::string payload,
                       std::uint32_t attempt) {
  protocol::job j;
  j.task = task;
  j.project = "proj";
  j.type = std::move(type);
  j.payload = std::move(payload);
  j.attempt = attempt;
  return j;
}

}  // namespace

// ---- built-in handlers ----

TEST_CASE("exec captures stdout and stderr of a successful command", "[worker][exec]") {
  const auto out = run(builtin::make_exec({}), "exec", "echo out; echo err >&2");
  CHECK(out.ok);
  CHECK(out.data == "out\nerr\n");
}

TEST_CASE("exec reports a non-zero exit code with the end of the output", "[worker][exec]") {
  const auto out = run(builtin::make_exec({}), "exec", "echo boom; exit 3");
  CHECK_FALSE(out.ok);
  CHECK(out.retryable);
  CHECK(out.data == "exit code 3: boom");
}

TEST_CASE("exec truncates output beyond the limit", "[worker][exec]") {
  builtin::exec_options o;
  o.max_output = 10;
  const auto out = run(builtin::make_exec(o), "exec", "printf 0123456789abcdef");
  CHECK(out.ok);
  CHECK(out.data == "0123456789\n[output truncated: 6 bytes dropped]");
}

TEST_CASE("exec kills a command that runs past its timeout", "[worker][exec]") {
  builtin::exec_options o;
  o.timeout = 300ms;
  const auto start = clock_type::now();
  const auto out = run(builtin::make_exec(o), "exec", "sleep 30");
  CHECK(clock_type::now() - start < 2s);
  CHECK_FALSE(out.ok);
  CHECK(out.retryable);
  CHECK(out.data.rfind("timed out after 300ms", 0) == 0);
}

TEST_CASE("a stop request interrupts exec", "[worker][exec]") {
  const auto marker = std::filesystem::temp_directory_path() /
                      ("worker_agent_test." + std::to_string(::getpid()) + ".started");
  std::filesystem::remove(marker);
  worker::stop_source stop;
  // Stop only once the command is certainly running: it creates the marker first.
  std::thread stopper([&] {
    eventually([&] { return std::filesystem::exists(marker); });
    stop.request_stop();
  });
  const auto start = clock_type::now();
  const auto out = builtin::make_exec({})(
      make_job("exec", "touch '" + marker.string() + "'; sleep 30"), stop.token());
  stopper.join();
  std::filesystem::remove(marker);
  CHECK(clock_type::now() - start < 2s);
  CHECK_FALSE(out.ok);
  CHECK(out.retryable);
  CHECK(out.data == "stopped");
}

TEST_CASE("sleep sleeps, and wakes early on a stop request", "[worker][sleep]") {
  CHECK(run(builtin::sleep, "sleep", "20").ok);

  worker::stop_source stop;
  // The outcome is the same whether the stop lands before or during the sleep.
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  const auto start = clock_type::now();
  const auto out = builtin::sleep(make_job("sleep", "30000"), stop.token());
  stopper.join();
  CHECK(clock_type::now() - start < 2s);
  CHECK_FALSE(out.ok);
  CHECK(out.retryable);
  CHECK(out.data == "stopped");
}

TEST_CASE("sleep refuses a bad payload for good", "[worker][sleep]") {
  for (const std::string payload : {"", "abc", "-5", "10x", " 10", "1.5"}) {
    INFO("payload '" << payload << "'");
    const auto out = run(builtin::sleep, "sleep", payload);
    CHECK_FALSE(out.ok);
    CHECK_FALSE(out.retryable);
    CHECK(out.data.find("decimal number of milliseconds") != std::string::npos);
  }
}

TEST_CASE("echo returns the payload", "[worker][echo]") {
  const auto out = run(builtin::echo, "echo", std::string("bin\0ary", 7));
  CHECK(out.ok);
  CHECK(out.data == std::string("bin\0ary", 7));
}

TEST_CASE("fail fails, for good only when the payload is fatal", "[worker][fail]") {
  const auto soft = run(builtin::fail, "fail", "oops");
  CHECK_FALSE(soft.ok);
  CHECK(soft.retryable);
  CHECK(soft.data == "fail handler: oops");

  const auto fatal = run(builtin::fail, "fail", "fatal");
  CHECK_FALSE(fatal.ok);
  CHECK_FALSE(fatal.retryable);
  CHECK(fatal.data == "fail handler: fatal");
}

// ---- the agent against a fake dispatcher ----

TEST_CASE("agent registers, fetches, runs a job, reports it and says goodbye", "[worker][agent]") {
  fake_dispatcher d;
  worker::agent a(test_options(d, 2));
  a.add_handler("echo", builtin::echo);
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  const auto& rw = std::get<protocol::register_worker>(reg.body);
  CHECK(rw.worker == "test-worker");
  CHECK(rw.types == std::vector<std::string>{"echo"});
  CHECK(rw.capacity == 2);
  CHECK(rw.pool == dispatch::worker_pool::active);
  CHECK(rw.running.empty());
  d.reply(reg, protocol::registered{1000, 3});

  const auto f = d.expect<protocol::fetch>();
  CHECK(std::get<protocol::fetch>(f.body).max == 2);
  CHECK(std::get<protocol::fetch>(f.body).wait_ms == 200);
  d.reply(f, protocol::jobs{{wire_job(42, "echo", "hello", 7)}});

  const auto c = d.expect<protocol::complete>();
  const auto& done = std::get<protocol::complete>(c.body);
  CHECK(done.task == 42);
  CHECK(done.attempt == 7);
  CHECK(done.result == "hello");
  d.reply(c, protocol::ok{});

  // Asked for the free slot while the job ran; a stopping agent waits for this answer.
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(std::get<protocol::fetch>(f2.body).max == 1);
  a.stop();
  d.reply(f2, protocol::jobs{});
  const auto bye = d.expect<protocol::goodbye>();
  d.reply(bye, protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE("agent hands back jobs that arrive after stop", "[worker][agent]") {
  fake_dispatcher d;
  worker::agent a(test_options(d));
  a.add_handler("echo", builtin::echo);
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{1000, 3});
  const auto f = d.expect<protocol::fetch>();
  a.stop();
  d.reply(f, protocol::jobs{{wire_job(5, "echo", "late", 2)}});

  const auto fl = d.expect<protocol::fail>();
  const auto& failed = std::get<protocol::fail>(fl.body);
  CHECK(failed.task == 5);
  CHECK(failed.attempt == 2);
  CHECK(failed.retryable);
  CHECK(failed.error == "agent stopping");
  d.reply(fl, protocol::ok{});
  d.reply(d.expect<protocol::goodbye>(), protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE("agent registers again when the dispatcher no longer knows it", "[worker][agent]") {
  fake_dispatcher d;
  worker::agent a(test_options(d));
  a.add_handler("echo", builtin::echo);
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 3});
  const auto hb = d.expect<protocol::heartbeat>(false);
  d.reply(hb, protocol::error{protocol::error_code::not_registered, "who are you"});

  const auto again = d.expect<protocol::register_worker>();
  d.forget_backlog();  // the fetch sent before the refusal
  CHECK(again.peer == reg.peer);  // same connection
  d.reply(again, protocol::registered{50, 3});
  const auto f = d.expect<protocol::fetch>();
  a.stop();
  d.reply(f, protocol::jobs{});
  d.reply(d.expect<protocol::goodbye>(), protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE("agent reconnects to a silent dispatcher and keeps its running job", "[worker][agent]") {
  fake_dispatcher d;
  worker::agent_options o = test_options(d);
  o.reconnect_min = 50ms;
  worker::agent a(o);
  // A job that runs until the test lets it finish.
  worker::stop_source gate;
  a.add_handler("held", [gate](const worker::job& j, const worker::stop_token& stop) {
    const auto release = gate.token();
    while (!release.stop_requested() && !stop.stop_requested()) release.wait_for(10ms);
    return worker::job_outcome{true, "done " + j.payload, true};
  });
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 2});  // lost after 100 ms of silence
  const auto f = d.expect<protocol::fetch>();
  d.reply(f, protocol::jobs{{wire_job(42, "held", "x", 3)}});

  // Say nothing more: the agent must give up on this connection and register anew.
  const auto again = d.expect<protocol::register_worker>(false);
  d.forget_backlog();
  CHECK(again.peer != reg.peer);
  CHECK(std::get<protocol::register_worker>(again.body).running ==
        std::vector<dispatch::task_id>{42});
  d.reply(again, protocol::registered{1000, 3});

  gate.request_stop();
  const auto c = d.expect<protocol::complete>();
  CHECK(c.peer == again.peer);
  CHECK(std::get<protocol::complete>(c.body).task == 42);
  CHECK(std::get<protocol::complete>(c.body).attempt == 3);
  CHECK(std::get<protocol::complete>(c.body).result == "done x");
  d.reply(c, protocol::ok{});
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(f2.peer == again.peer);
  a.stop();
  d.reply(f2, protocol::jobs{});
  d.reply(d.expect<protocol::goodbye>(), protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE("agent resends an unacknowledged result after reconnecting", "[worker][agent]") {
  fake_dispatcher d;
  worker::agent_options o = test_options(d);
  o.reconnect_min = 50ms;
  worker::agent a(o);
  a.add_handler("echo", builtin::echo);
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 2});
  d.reply(d.expect<protocol::fetch>(), protocol::jobs{{wire_job(9, "echo", "e", 1)}});
  const auto lost = d.expect<protocol::complete>(false);  // never acknowledged

  const auto again = d.expect<protocol::register_worker>(false);
  d.forget_backlog();
  CHECK(again.peer != reg.peer);
  CHECK(std::get<protocol::register_worker>(again.body).running ==
        std::vector<dispatch::task_id>{9});
  d.reply(again, protocol::registered{1000, 3});
  const auto c = d.expect<protocol::complete>();
  CHECK(c.peer == again.peer);
  CHECK(std::get<protocol::complete>(c.body).task == 9);
  d.reply(c, protocol::ok{});
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(f2.peer == again.peer);
  a.stop();
  d.reply(f2, protocol::jobs{});
  d.reply(d.expect<protocol::goodbye>(), protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE("agent refuses a served type without a handler", "[worker][agent]") {
  worker::agent_options o;
  o.types = {"nope"};
  worker::agent a(o);
  a.add_handler("echo", builtin::echo);
  CHECK_THROWS_AS(a.run(), std::invalid_argument);
  o.capacity = 0;
  CHECK_THROWS_AS(worker::agent(o), std::invalid_argument);
}
