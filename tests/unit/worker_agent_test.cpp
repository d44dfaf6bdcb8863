// The worker agent: built-in handlers called directly, and the agent's protocol against a real
// ROUTER socket playing the dispatcher.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
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
#include "worker-agent/stop_token.hpp"  // a gate the tests open to let a job finish

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
  worker::job_controller never_stopped;
  auto control = never_stopped.control();
  return h(make_job(type, payload), control);
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

  // How heartbeats met by expect, next_request and quiet_for are answered; "ok" plays a
  // dispatcher older than heartbeat_reply.
  protocol::reply_body heartbeat_answer = protocol::heartbeat_reply{};

  // The oldest request of type T, received earlier or waited for. Heartbeats met on the way are
  // answered with heartbeat_answer unless `answer_heartbeats` is false (a silent dispatcher);
  // other requests are kept for a later expect.
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
        reply(*msg, heartbeat_answer);
    }
  }

  // The next request that is not a heartbeat, whatever its type: for checking the order of
  // requests. Heartbeats are answered on the way.
  incoming next_request(std::chrono::milliseconds timeout = 3s) {
    if (!backlog_.empty()) {
      incoming found = backlog_.front();
      backlog_.pop_front();
      return found;
    }
    const auto deadline = clock_type::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - clock_type::now());
      auto msg = next(std::max(left, 0ms));
      if (!msg) FAIL("timed out waiting for a request");
      if (!std::holds_alternative<protocol::heartbeat>(msg->body)) return *msg;
      reply(*msg, heartbeat_answer);
    }
  }

  struct quiet_period {
    int heartbeats = 0;
    std::vector<incoming> others;  // every request but heartbeats, in order
  };

  // Listens for `period`, answering heartbeats, and returns what came: for asserting that
  // something does NOT happen, which can only be observed over a bounded time.
  quiet_period quiet_for(std::chrono::milliseconds period) {
    quiet_period q;
    q.others.assign(backlog_.begin(), backlog_.end());
    backlog_.clear();
    const auto deadline = clock_type::now() + period;
    for (auto now = clock_type::now(); now < deadline; now = clock_type::now()) {
      auto msg = next(std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
      if (!msg) break;
      if (std::holds_alternative<protocol::heartbeat>(msg->body)) {
        ++q.heartbeats;
        reply(*msg, heartbeat_answer);
      } else {
        q.others.push_back(*msg);
      }
    }
    return q;
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

// For `period`, the agent sends nothing but heartbeats, at least `min_heartbeats` of them.
void expect_only_heartbeats(fake_dispatcher& d, std::chrono::milliseconds period,
                            int min_heartbeats) {
  const auto q = d.quiet_for(period);
  CHECK(q.heartbeats >= min_heartbeats);
  CHECK(q.others.empty());
}

// Ends a test as a dispatcher would see an agent told to stop: its open fetch (if it has one)
// answered empty, its goodbye answered ok; the agent must then exit with 0.
void stop_and_part(fake_dispatcher& d, worker::agent& a, running_agent& r,
                   const incoming* open_fetch = nullptr) {
  a.stop();
  if (open_fetch) d.reply(*open_fetch, protocol::jobs{});
  d.reply(d.expect<protocol::goodbye>(), protocol::ok{});
  CHECK(r.join() == 0);
}

worker::agent_options test_options(const fake_dispatcher& d, std::uint32_t capacity = 1) {
  worker::agent_options o;
  o.endpoint = d.endpoint();
  o.id = "test-worker";
  o.capacity = capacity;
  o.fetch_wait = 200ms;
  return o;
}

// The start of most tests: a dispatcher double and a running agent of `capacity` slots with the
// echo handler. TEST_CASE_METHOD(echo_agent<2>, ...) gives the test body d, a and r.
template <std::uint32_t capacity>
struct echo_agent {
  echo_agent() : a(test_options(d, capacity)), r(with_echo(a)) {}
  static worker::agent& with_echo(worker::agent& agent) {
    agent.add_handler("echo", builtin::echo);
    return agent;
  }
  fake_dispatcher d;
  worker::agent a;
  running_agent r;  // last: stops the agent before the rest goes
};

protocol::job wire_job(dispatch::task_id task, std::string type, std::string payload,
                       std::uint32_t attempt) {
  protocol::job j;
  j.task = task;
  j.project = "proj";
  j.type = std::move(type);
  j.payload = std::move(payload);
  j.attempt = attempt;
  j.timeout_ms = 60'000;
  return j;
}

protocol::heartbeat_reply order(std::string what) {
  protocol::heartbeat_reply r;
  r.order = std::move(what);
  return r;
}

template <class T>
bool is(const incoming& m) {
  return std::holds_alternative<T>(m.body);
}

// A handler that runs until the test opens its gate (or a stop is requested).
worker::handler gated(const worker::stop_source& gate) {
  return [gate](const worker::job& j, worker::job_control& control) {
    const auto open = gate.token();
    while (!open.stop_requested() && !control.stop_requested()) open.wait_for(10ms);
    return worker::job_outcome{true, "done " + j.payload, true};
  };
}

// The results of a report as text, to compare them all in one CHECK: "task/attempt completed:
// result" or "task/attempt failed (retryable|fatal): error". A field that does not belong to the
// outcome is shown too, so that it fails the comparison.
std::vector<std::string> results_of(const incoming& m) {
  INFO("got " << protocol::type_name(m.body));
  REQUIRE(is<protocol::report>(m));
  std::vector<std::string> out;
  for (const auto& r : std::get<protocol::report>(m.body).results) {
    std::string s = std::to_string(r.task) + "/" + std::to_string(r.attempt);
    if (r.failed) {
      s += std::string(" failed (") + (r.retryable ? "retryable" : "fatal") + "): " + r.error;
      if (!r.result.empty()) s += " [result " + r.result + "]";
    } else {
      s += " completed: " + r.result;
      if (!r.error.empty()) s += " [error " + r.error + "]";
    }
    out.push_back(std::move(s));
  }
  return out;
}

protocol::reported refusing(dispatch::task_id task, protocol::error_code code) {
  return protocol::reported{{{task, code, "refused by the test"}}};
}

// Registers the agent, orders a drain and answers the parked fetch with `jobs`: the agent hands
// them all back at once, in one report, which is returned unanswered. A drained agent fetches
// nothing more, so the test sees only what concerns these results.
incoming hand_back_while_draining(fake_dispatcher& d, std::vector<protocol::job> jobs,
                                  std::uint32_t liveness = 20) {
  d.reply(d.expect<protocol::register_worker>(), protocol::registered{50, liveness});
  const auto f = d.expect<protocol::fetch>();
  d.heartbeat_answer = order("drain");
  d.reply(d.expect<protocol::heartbeat>(false), order("drain"));
  d.reply(f, protocol::jobs{std::move(jobs)});
  return d.expect<protocol::report>();
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
  worker::job_controller stop;
  // Stop only once the command is certainly running: it creates the marker first.
  std::thread stopper([&] {
    eventually([&] { return std::filesystem::exists(marker); });
    stop.request_stop();
  });
  const auto start = clock_type::now();
  auto control = stop.control();
  const auto out = builtin::make_exec({})(
      make_job("exec", "touch '" + marker.string() + "'; sleep 30"), control);
  stopper.join();
  std::filesystem::remove(marker);
  CHECK(clock_type::now() - start < 2s);
  CHECK_FALSE(out.ok);
  CHECK(out.retryable);
  CHECK(out.data == "stopped");
}

TEST_CASE("sleep sleeps, and wakes early on a stop request", "[worker][sleep]") {
  CHECK(run(builtin::sleep, "sleep", "20").ok);

  worker::job_controller stop;
  // The outcome is the same whether the stop lands before or during the sleep.
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    stop.request_stop();
  });
  const auto start = clock_type::now();
  auto control = stop.control();
  const auto out = builtin::sleep(make_job("sleep", "30000"), control);
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

TEST_CASE("job_control carries stops, lease warnings and extensions", "[worker][job_control]") {
  std::vector<std::chrono::milliseconds> asked;  // the sink runs on the caller's thread: here
  worker::job_controller controller([&asked](std::chrono::milliseconds d) { asked.push_back(d); });
  auto control = controller.control();
  CHECK_FALSE(control.stop_requested());
  CHECK_FALSE(control.wait_for(1ms));

  CHECK_FALSE(control.lease_expiring());
  controller.warn_lease_expiring();
  CHECK(control.lease_expiring());
  control.extend_lease(90s);
  CHECK_FALSE(control.lease_expiring());  // the warning was acted upon
  control.extend_lease(std::chrono::hours(24 * 365));  // clamped to the protocol's limit
  CHECK_THROWS_AS(control.extend_lease(-1ms), std::invalid_argument);
  CHECK(asked == std::vector<std::chrono::milliseconds>{90s, worker::max_lease_extension});

  controller.request_stop();
  CHECK(control.stop_requested());
  CHECK(control.wait_for(10s));  // at once
}

// ---- the agent against a fake dispatcher ----

TEST_CASE_METHOD(echo_agent<2>, "agent registers, fetches, runs a job, reports it and says goodbye",
                 "[worker][agent]") {
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

  const auto c = d.expect<protocol::report>();
  CHECK(results_of(c) == std::vector<std::string>{"42/7 completed: hello"});
  d.reply(c, protocol::reported{});

  // Asked for the free slot while the job ran; a stopping agent waits for this answer.
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(std::get<protocol::fetch>(f2.body).max == 1);
  a.stop();
  d.reply(f2, protocol::jobs{});
  const auto bye = d.expect<protocol::goodbye>();
  d.reply(bye, protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE_METHOD(echo_agent<1>, "agent hands back jobs that arrive after stop", "[worker][agent]") {
  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{1000, 3});
  const auto f = d.expect<protocol::fetch>();
  a.stop();
  d.reply(f, protocol::jobs{{wire_job(5, "echo", "late", 2)}});

  const auto fl = d.expect<protocol::report>();
  CHECK(results_of(fl) == std::vector<std::string>{"5/2 failed (retryable): agent stopping"});
  d.reply(fl, protocol::reported{});
  d.reply(d.expect<protocol::goodbye>(), protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE_METHOD(echo_agent<1>, "agent registers again when the dispatcher no longer knows it",
                 "[worker][agent]") {
  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 3});
  const auto hb = d.expect<protocol::heartbeat>(false);
  d.reply(hb, protocol::error{protocol::error_code::not_registered, "who are you"});

  const auto again = d.expect<protocol::register_worker>();
  d.forget_backlog();  // the fetch sent before the refusal
  CHECK(again.peer == reg.peer);  // same connection
  d.reply(again, protocol::registered{50, 3});
  const auto f = d.expect<protocol::fetch>();
  stop_and_part(d, a, r, &f);
}

TEST_CASE("agent reconnects to a silent dispatcher and keeps its running job", "[worker][agent]") {
  fake_dispatcher d;
  worker::agent_options o = test_options(d);
  o.reconnect_min = 50ms;
  worker::agent a(o);
  worker::stop_source gate;
  a.add_handler("held", gated(gate));
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
  const auto c = d.expect<protocol::report>();
  CHECK(c.peer == again.peer);
  CHECK(results_of(c) == std::vector<std::string>{"42/3 completed: done x"});
  d.reply(c, protocol::reported{});
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(f2.peer == again.peer);
  stop_and_part(d, a, r, &f2);
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
  const auto lost = d.expect<protocol::report>(false);  // never acknowledged
  CHECK(results_of(lost) == std::vector<std::string>{"9/1 completed: e"});

  const auto again = d.expect<protocol::register_worker>(false);
  d.forget_backlog();
  CHECK(again.peer != reg.peer);
  CHECK(std::get<protocol::register_worker>(again.body).running ==
        std::vector<dispatch::task_id>{9});
  d.reply(again, protocol::registered{1000, 3});
  const auto c = d.expect<protocol::report>();
  CHECK(c.peer == again.peer);
  CHECK(results_of(c) == std::vector<std::string>{"9/1 completed: e"});
  d.reply(c, protocol::reported{});
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(f2.peer == again.peer);
  stop_and_part(d, a, r, &f2);
}

TEST_CASE("agent takes a plain ok heartbeat answer from an older dispatcher", "[worker][agent]") {
  fake_dispatcher d;
  d.heartbeat_answer = protocol::ok{};
  worker::agent a(test_options(d));
  a.add_handler("echo", builtin::echo);
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  // A liveness window of 1 s: wide enough that a loaded machine does not make the agent give up
  // on the connection, which is not what this test is about.
  d.reply(reg, protocol::registered{100, 10});
  const auto f = d.expect<protocol::fetch>();
  // Many heartbeat intervals pass: the connection is kept (no new register), heartbeats go on.
  expect_only_heartbeats(d, 600ms, 3);
  stop_and_part(d, a, r, &f);
}

TEST_CASE("agent stops a cancelled job and never reports it", "[worker][agent][cancel]") {
  fake_dispatcher d;
  std::atomic<bool> returned{false};
  worker::agent a(test_options(d));
  a.add_handler("sleep", [&returned](const worker::job& j, worker::job_control& control) {
    const auto out = builtin::sleep(j, control);
    returned = true;
    return out;
  });
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 20});
  d.reply(d.expect<protocol::fetch>(), protocol::jobs{{wire_job(77, "sleep", "30000", 4)}});

  // A lease warning reaches the handler; the agent never extends by itself (checked below: no
  // extend ever arrives).
  protocol::heartbeat_reply warning;
  warning.expiring = {77};
  d.reply(d.expect<protocol::heartbeat>(false), warning);

  protocol::heartbeat_reply cancel;
  cancel.cancel = {12345, 77};  // 12345 is not held: ignored
  const auto hb = d.expect<protocol::heartbeat>(false);
  const auto cancelled_at = clock_type::now();
  d.reply(hb, cancel);

  // The job ends at once and its slot is free again: the agent asks for work.
  const auto f = d.expect<protocol::fetch>();
  CHECK(clock_type::now() - cancelled_at < 2s);
  CHECK(std::get<protocol::fetch>(f.body).max == 1);
  CHECK(eventually([&] { return returned.load(); }));

  // Its outcome ("stopped") is never sent: only heartbeats come (the fetch stays parked).
  const auto q = d.quiet_for(400ms);
  CHECK(q.heartbeats >= 2);
  for (const auto& m : q.others) {
    INFO("unexpected " << protocol::type_name(m.body));
    CHECK(is<protocol::fetch>(m));
  }
  // Nor when stopping.
  a.stop();
  d.reply(f, protocol::jobs{});
  const auto bye = d.next_request();
  INFO("got " << protocol::type_name(bye.body));
  REQUIRE(is<protocol::goodbye>(bye));
  d.reply(bye, protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE_METHOD(echo_agent<2>,
                 "agent stops fetching on a drain order and resumes when it is lifted",
                 "[worker][agent][order]") {
  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 20});
  const auto f = d.expect<protocol::fetch>();  // parked at the dispatcher
  d.heartbeat_answer = order("drain");
  d.reply(d.expect<protocol::heartbeat>(false), order("drain"));

  // Jobs the parked fetch still brings go back at once instead of waiting for their lease, all
  // in one report.
  d.reply(f, protocol::jobs{{wire_job(8, "echo", "x", 3), wire_job(9, "echo", "y", 1)}});
  const auto fl = d.next_request();
  CHECK(results_of(fl) == std::vector<std::string>{"8/3 failed (retryable): worker draining",
                                                   "9/1 failed (retryable): worker draining"});
  d.reply(fl, protocol::reported{});

  // Heartbeats go on, fetches do not.
  expect_only_heartbeats(d, 400ms, 3);

  d.heartbeat_answer = order("none");
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(std::get<protocol::fetch>(f2.body).max == 2);
  stop_and_part(d, a, r, &f2);
}

TEST_CASE("agent stops on a stop order: finishes and reports its job, then says goodbye",
          "[worker][agent][order]") {
  fake_dispatcher d;
  worker::agent a(test_options(d, 2));
  worker::stop_source gate;
  a.add_handler("held", gated(gate));
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 20});
  d.reply(d.expect<protocol::fetch>(), protocol::jobs{{wire_job(21, "held", "a", 2)}});
  const auto f2 = d.expect<protocol::fetch>();  // for the free slot; parked
  d.heartbeat_answer = order("stop");
  d.reply(d.expect<protocol::heartbeat>(false), order("stop"));

  // Answered after the order, the parked fetch's job goes back at once: proof the order took.
  d.reply(f2, protocol::jobs{{wire_job(22, "held", "b", 1)}});
  const auto fl = d.next_request();
  CHECK(results_of(fl) == std::vector<std::string>{"22/1 failed (retryable): agent stopping"});
  d.reply(fl, protocol::reported{});

  // The held job runs on; when it ends it is reported, and only then comes goodbye.
  gate.request_stop();
  const auto c = d.next_request();
  CHECK(results_of(c) == std::vector<std::string>{"21/2 completed: done a"});
  d.reply(c, protocol::reported{});
  const auto bye = d.next_request();
  INFO("got " << protocol::type_name(bye.body));
  REQUIRE(is<protocol::goodbye>(bye));
  d.reply(bye, protocol::ok{});
  CHECK(r.join() == 0);
}

TEST_CASE("a handler extends its lease and sees the dispatcher's lease warning",
          "[worker][agent][lease]") {
  fake_dispatcher d;
  std::atomic<bool> warned{false};
  worker::stop_source gate;
  worker::agent a(test_options(d));
  a.add_handler("long", [&warned, gate](const worker::job& j, worker::job_control& control) {
    control.extend_lease(1500ms);
    const auto open = gate.token();
    while (!open.stop_requested() && !control.stop_requested()) {
      if (control.lease_expiring()) {
        warned = true;
        control.extend_lease(j.timeout);
      }
      open.wait_for(5ms);
    }
    return worker::job_outcome{true, "", true};
  });
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 20});
  d.reply(d.expect<protocol::fetch>(), protocol::jobs{{wire_job(31, "long", "", 6)}});

  const auto e1 = d.next_request();
  INFO("got " << protocol::type_name(e1.body));
  REQUIRE(is<protocol::extend>(e1));
  CHECK(std::get<protocol::extend>(e1.body).task == 31);
  CHECK(std::get<protocol::extend>(e1.body).attempt == 6);
  CHECK(std::get<protocol::extend>(e1.body).extend_ms == 1500);
  d.reply(e1, protocol::ok{});
  CHECK_FALSE(warned);  // no warning yet: heartbeats were answered without one

  protocol::heartbeat_reply warning;
  warning.expiring = {31};
  d.reply(d.expect<protocol::heartbeat>(false), warning);
  const auto e2 = d.next_request();
  INFO("got " << protocol::type_name(e2.body));
  REQUIRE(is<protocol::extend>(e2));
  CHECK(warned);
  CHECK(std::get<protocol::extend>(e2.body).task == 31);
  CHECK(std::get<protocol::extend>(e2.body).attempt == 6);
  CHECK(std::get<protocol::extend>(e2.body).extend_ms == 60'000);  // the job's timeout
  d.reply(e2, protocol::error{protocol::error_code::stale_lease, "too late"});  // only logged

  gate.request_stop();
  const auto c = d.next_request();
  CHECK(results_of(c) == std::vector<std::string>{"31/6 completed: "});
  d.reply(c, protocol::reported{});
  const auto f2 = d.expect<protocol::fetch>();
  stop_and_part(d, a, r, &f2);
}

// ---- results reported together ----

TEST_CASE("agent reports jobs that finished together in one report", "[worker][agent][report]") {
  fake_dispatcher d;
  worker::agent a(test_options(d, 2));
  worker::stop_source gate;
  std::atomic<int> returned{0};
  a.add_handler("held",
                [&returned, h = gated(gate)](const worker::job& j, worker::job_control& control) {
                  auto out = h(j, control);
                  ++returned;
                  return out;
                });
  running_agent r(a);

  const auto reg = d.expect<protocol::register_worker>();
  d.reply(reg, protocol::registered{50, 20});
  d.reply(d.expect<protocol::fetch>(),
          protocol::jobs{{wire_job(11, "held", "a", 1), wire_job(12, "held", "b", 2)}});

  // Both jobs end while the agent registers again, so their results are ready at one moment.
  d.reply(d.expect<protocol::heartbeat>(false),
          protocol::error{protocol::error_code::not_registered, "who are you"});
  const auto again = d.expect<protocol::register_worker>();
  CHECK(std::get<protocol::register_worker>(again.body).running ==
        std::vector<dispatch::task_id>{11, 12});
  gate.request_stop();
  REQUIRE(eventually([&] { return returned.load() == 2; }));
  std::this_thread::sleep_for(500ms);  // for the job threads to pass the results on
  d.reply(again, protocol::registered{50, 20});

  const auto rep = d.expect<protocol::report>();
  auto results = results_of(rep);
  std::sort(results.begin(), results.end());  // the jobs' threads race to the finish
  CHECK(results == std::vector<std::string>{"11/1 completed: done a", "12/2 completed: done b"});
  d.reply(rep, protocol::reported{});

  const auto f2 = d.expect<protocol::fetch>();
  CHECK(std::get<protocol::fetch>(f2.body).max == 2);
  stop_and_part(d, a, r, &f2);
}

TEST_CASE_METHOD(echo_agent<2>, "agent drops a result its report got refused and carries on",
                 "[worker][agent][report]") {
  const auto rep =
      hand_back_while_draining(d, {wire_job(61, "echo", "x", 1), wire_job(62, "echo", "y", 4)});
  CHECK(results_of(rep) == std::vector<std::string>{"61/1 failed (retryable): worker draining",
                                                    "62/4 failed (retryable): worker draining"});
  d.reply(rep, refusing(61, protocol::error_code::stale_lease));

  // Neither result is sent again: the refused one is dropped, the other one was applied.
  expect_only_heartbeats(d, 300ms, 2);

  // The agent goes on working: a new job is run and reported.
  d.heartbeat_answer = order("none");
  const auto f2 = d.expect<protocol::fetch>();
  CHECK(std::get<protocol::fetch>(f2.body).max == 2);
  d.reply(f2, protocol::jobs{{wire_job(63, "echo", "z", 1)}});
  const auto c = d.expect<protocol::report>();
  CHECK(results_of(c) == std::vector<std::string>{"63/1 completed: z"});
  d.reply(c, protocol::reported{});

  const auto f3 = d.expect<protocol::fetch>();
  stop_and_part(d, a, r, &f3);
}

TEST_CASE_METHOD(echo_agent<2>,
                 "agent sends a whole report again after registering when it was not registered",
                 "[worker][agent][report]") {
  const auto rep =
      hand_back_while_draining(d, {wire_job(71, "echo", "x", 2), wire_job(72, "echo", "y", 1)});
  const std::vector<std::string> expected{"71/2 failed (retryable): worker draining",
                                          "72/1 failed (retryable): worker draining"};
  CHECK(results_of(rep) == expected);
  d.reply(rep, protocol::error{protocol::error_code::not_registered, "who are you"});

  // Until the dispatcher has their results, the tasks are still this worker's.
  const auto again = d.expect<protocol::register_worker>();
  CHECK(again.peer == rep.peer);  // same connection
  CHECK(std::get<protocol::register_worker>(again.body).running ==
        std::vector<dispatch::task_id>{71, 72});
  d.reply(again, protocol::registered{50, 20});

  const auto resent = d.expect<protocol::report>();
  CHECK(results_of(resent) == expected);
  d.reply(resent, protocol::reported{});

  expect_only_heartbeats(d, 300ms, 2);
  stop_and_part(d, a, r);
}

TEST_CASE("agent never resends the result of a task cancelled while its report awaits an answer",
          "[worker][agent][report][cancel]") {
  fake_dispatcher d;
  worker::agent_options o = test_options(d, 2);
  o.reconnect_min = 50ms;
  worker::agent a(o);
  a.add_handler("echo", builtin::echo);
  running_agent r(a);

  // Lost after 300 ms of silence.
  const auto rep =
      hand_back_while_draining(d, {wire_job(81, "echo", "x", 1), wire_job(82, "echo", "y", 5)}, 6);
  CHECK(results_of(rep) == std::vector<std::string>{"81/1 failed (retryable): worker draining",
                                                    "82/5 failed (retryable): worker draining"});
  protocol::heartbeat_reply cancel = order("drain");
  cancel.cancel = {81};
  d.reply(d.expect<protocol::heartbeat>(false), cancel);

  // The report is never answered and the dispatcher falls silent: the agent reconnects and
  // sends again what is still unacknowledged, which is no longer the cancelled task's result.
  const auto again = d.expect<protocol::register_worker>(false);
  d.forget_backlog();
  CHECK(again.peer != rep.peer);
  CHECK(std::get<protocol::register_worker>(again.body).running ==
        std::vector<dispatch::task_id>{82});
  d.reply(again, protocol::registered{1000, 3});

  const auto resent = d.expect<protocol::report>();
  CHECK(resent.peer == again.peer);
  CHECK(results_of(resent) == std::vector<std::string>{"82/5 failed (retryable): worker draining"});
  d.reply(resent, protocol::reported{});

  expect_only_heartbeats(d, 300ms, 0);
  stop_and_part(d, a, r);
}

TEST_CASE_METHOD(echo_agent<2>,
                 "the answer to a report acknowledges the results beside a cancelled one",
                 "[worker][agent][report][cancel]") {
  const auto rep =
      hand_back_while_draining(d, {wire_job(91, "echo", "x", 1), wire_job(92, "echo", "y", 3)});
  CHECK(results_of(rep).size() == 2);
  protocol::heartbeat_reply cancel = order("drain");
  cancel.cancel = {91};
  d.reply(d.expect<protocol::heartbeat>(false), cancel);
  // As a dispatcher would: the cancelled task's result is refused, the other one applied.
  d.reply(rep, refusing(91, protocol::error_code::invalid_state));

  // Registering again shows what the agent still holds: nothing, and nothing is resent.
  d.reply(d.expect<protocol::heartbeat>(false),
          protocol::error{protocol::error_code::not_registered, "who are you"});
  const auto again = d.expect<protocol::register_worker>();
  CHECK(std::get<protocol::register_worker>(again.body).running.empty());
  d.reply(again, protocol::registered{50, 20});

  expect_only_heartbeats(d, 300ms, 2);
  stop_and_part(d, a, r);
}

TEST_CASE_METHOD(echo_agent<2>,
                 "agent sends the results of a report refused as too large one by one",
                 "[worker][agent][report]") {
  const auto rep =
      hand_back_while_draining(d, {wire_job(51, "echo", "x", 1), wire_job(52, "echo", "y", 2)});
  CHECK(results_of(rep).size() == 2);
  d.reply(rep, protocol::error{protocol::error_code::too_large, "results: above --max-batch"});

  // Each alone, in their order; one refused as too large again is dropped, not split further.
  const auto first = d.next_request();
  CHECK(results_of(first) == std::vector<std::string>{"51/1 failed (retryable): worker draining"});
  const auto second = d.next_request();
  CHECK(results_of(second) == std::vector<std::string>{"52/2 failed (retryable): worker draining"});
  d.reply(first, protocol::error{protocol::error_code::too_large, "results[0].error"});
  d.reply(second, protocol::reported{});

  expect_only_heartbeats(d, 300ms, 2);
  stop_and_part(d, a, r);
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
