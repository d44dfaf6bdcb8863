// Authentication, authorization, CURVE and the request limits against real dispatcherd processes:
// the first-start token files, each role's allowed and refused requests (with a producer limited
// to one project), --auth off, CURVE with the real keygen / worker-agent / dispatchctl, every
// configurable limit exceeded once, and dispatchctl token. Every refusal must carry its error
// code, leave the daemon answering, and store nothing.
//
// Not repeated here: a second worker completing a task it does not hold gets not_owner
// (protocol_flow_test "completions are checked against the holder and the lease", with the
// harness's admin token); the case below adds fail and extend, with worker tokens.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "protocol/codec.hpp"
#include "security/curve_keys.hpp"
#include "security/token_hash.hpp"
#include "tests/integration/harness.hpp"
#include "tests/support/files.hpp"
#include "tests/support/prometheus_scrape.hpp"

using namespace dispatch;
using namespace dispatch::testing;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
namespace sec = dispatch::security;

namespace {

using code = protocol::error_code;





std::string describe(const protocol::reply& r) {
  if (const auto* e = std::get_if<protocol::error>(&r.body))
    return "error " + std::string(protocol::to_string(e->code)) + ": " + e->message;
  return std::string(protocol::type_name(r.body));
}

// The reply must be an error with `expected` and a message containing `message_has`.
void check_refused(const protocol::reply& r, code expected, const std::string& message_has) {
  INFO("reply: " << describe(r));
  const auto* e = std::get_if<protocol::error>(&r.body);
  REQUIRE(e != nullptr);
  CHECK(e->code == expected);
  CHECK_THAT(e->message, Contains(message_has));
}

std::uint64_t total_tasks(const protocol::stats& s) {
  std::uint64_t n = 0;
  for (const auto& [status, count] : s.tasks) n += count;
  return n;
}

// `name`{labels} from a scrape of 127.0.0.1:`port`; 0 when the series is absent (not yet counted).
double metric(int port, const std::string& name, const labels& l) {
  const auto r = http_get(port, "/metrics");
  REQUIRE(r.status == 200);
  for (const auto& s : parse_exposition(r.body))
    if (s.name == name && s.labels_ == l) return s.value;
  return 0;
}

// What the daemon logged once it was ready (the first start prints the fresh tokens to stdout
// before that, by design, and the harness sends stdout to the same file).
std::string log_after_ready(const std::string& log) {
  const auto at = log.find("dispatcherd ready");
  return at == std::string::npos ? std::string() : log.substr(at);
}

struct run_result {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// Runs a real binary (dispatchctl) to its end, its output logged under `dir`.
run_result run_tool(const std::string& dir, std::vector<std::string> argv) {
  static int runs = 0;
  const auto log = dir + "/tool-" + std::to_string(++runs) + ".log";
  child_process p(std::move(argv), log);
  const auto exit = p.wait(10s);
  REQUIRE(exit.has_value());
  return {*exit, p.log()};
}

// A DEALER speaking the protocol, with CURVE when given keys (the harness's wire_client has
// none). call() returns nullopt when no reply arrives in time: for CURVE, that is how a refused
// handshake looks from the client.
class curve_client {
 public:
  curve_client(const std::string& endpoint, std::string token,
               const sec::curve_key_pair* client = nullptr, const std::string& server_public = {})
      : context_(1), socket_(context_, zmq::socket_type::dealer), token_(std::move(token)) {
    socket_.set(zmq::sockopt::linger, 0);
    if (client) {
      std::string error;
      if (!sec::apply_curve_client(socket_, *client, server_public, error))
        throw std::runtime_error(error);
    }
    socket_.connect(endpoint);
  }

  // Queues the request (the DEALER holds it until the handshake is done) and returns its id.
  std::uint64_t send(protocol::request_body body) {
    const auto id = next_id_++;
    std::string bytes;
    protocol::encode(protocol::request{id, std::move(body), token_}, bytes);
    if (!socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait))
      throw std::runtime_error("cannot queue a request");
    return id;
  }

  std::optional<protocol::reply> call(protocol::request_body body,
                                      std::chrono::milliseconds timeout) {
    return receive(timeout, send(std::move(body)));
  }

  // The reply to request `id` (any reply when 0), or nullopt when none arrives in time.
  std::optional<protocol::reply> receive(std::chrono::milliseconds timeout, std::uint64_t id = 0) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t in{socket_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&in, 1, left) == 0) return std::nullopt;
      zmq::message_t msg;
      if (!socket_.recv(msg, zmq::recv_flags::dontwait)) continue;
      protocol::reply r;
      protocol::decode_failure why;
      if (!protocol::decode(std::string_view(msg.data<char>(), msg.size()), r, why))
        throw std::runtime_error("undecodable reply: " + why.message);
      if (id == 0 || r.id == id) return r;
    }
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string token_;
  std::uint64_t next_id_ = 1;
};

sec::curve_key_pair read_pair(const std::string& prefix) {
  sec::curve_key_pair pair;
  std::string error;
  const bool read = sec::read_key_pair(prefix, pair, error);
  INFO(error);
  REQUIRE(read);
  return pair;
}

const char* const limited_token = "dsp_security-test-producer-limited-to-projA";

}  // namespace

// ---- 1. first start

TEST_CASE("security: the first start makes 0600 token files with only hashes in "
          "the tokens file, and a restart keeps them",
          "[security]") {
  dispatcher_process d;
  const auto tokens_path = d.data_dir() + "/tokens";
  const auto credentials_path = d.credentials_path();
  REQUIRE(exists(tokens_path));
  REQUIRE(exists(credentials_path));
  CHECK(mode_of(tokens_path) == 0600);
  CHECK(mode_of(credentials_path) == 0600);
  const auto tokens_text = read_text(tokens_path);
  const auto credentials_text = read_text(credentials_path);

  for (const std::string role : {"admin", "producer", "worker"}) {
    INFO("role " << role);
    const auto token = d.token(role);
    CHECK_THAT(token, StartsWith("dsp_"));
    CHECK(tokens_text.find(token) == std::string::npos);
    CHECK(tokens_text.find(token.substr(4)) == std::string::npos);  // not even the random part
    CHECK_THAT(tokens_text, Contains(role + " * " + sec::hash_text(token)));
  }
  CHECK(d.token("admin") != d.token("producer"));
  CHECK(d.token("producer") != d.token("worker"));

  const auto use_every_token = [&] {
    wire_client admin(d.admin_endpoint(), d.token("admin"));
    expect<protocol::stats>(admin.call(protocol::get_stats{}));
    wire_client producer(d.work_endpoint(), d.token("producer"));
    const auto ids = submit(producer, {echo_task("p")});
    REQUIRE(ids.size() == 1);
    wire_client worker(d.work_endpoint(), d.token("worker"));
    expect<protocol::registered>(worker.call(worker_spec("w-first-start")));
    expect<protocol::ok>(worker.call(protocol::goodbye{}));
  };
  use_every_token();

  d.stop();
  d.start();
  CHECK(read_text(tokens_path) == tokens_text);
  CHECK(read_text(credentials_path) == credentials_text);
  CHECK(mode_of(tokens_path) == 0600);
  CHECK(mode_of(credentials_path) == 0600);
  use_every_token();
  CHECK(total_tasks(d.stats()) == 2);
  // Only a first start prints tokens: the second start's output has none of them.
  const auto second_log = d.process().log();
  for (const std::string role : {"admin", "producer", "worker"})
    CHECK(second_log.find(d.token(role)) == std::string::npos);
  CHECK(second_log.find("First start") == std::string::npos);
}

// ---- 2. no token, unknown token

TEST_CASE("security: requests without a token or with an unknown one are unauthenticated, "
          "counted, and never stored",
          "[security]") {
  const int metrics_port = free_ports(1)[0];
  dispatcher_process d({{"--metrics-address", "127.0.0.1:" + std::to_string(metrics_port)}});
  const std::string unknown = "dsp_" + std::string(64, '7');

  wire_client anonymous_work(d.work_endpoint(), "");
  wire_client anonymous_admin(d.admin_endpoint(), "");
  wire_client stranger_work(d.work_endpoint(), unknown);
  wire_client stranger_admin(d.admin_endpoint(), unknown);

  const auto no_token = "requires a token";
  check_refused(anonymous_work.call(protocol::submit{{echo_task("p")}}), code::unauthenticated,
                no_token);
  check_refused(anonymous_work.call(worker_spec("w1")), code::unauthenticated, no_token);
  check_refused(anonymous_admin.call(protocol::get_stats{}), code::unauthenticated, no_token);
  check_refused(stranger_work.call(protocol::submit{{echo_task("p")}}), code::unauthenticated,
                "unknown token");
  check_refused(stranger_work.call(worker_spec("w2")), code::unauthenticated, "unknown token");
  check_refused(stranger_admin.call(protocol::get_stats{}), code::unauthenticated,
                "unknown token");
  // A token that only differs in case, or is the hash the daemon stores, is just as unknown.
  wire_client upper(d.work_endpoint(), "DSP" + d.token("admin").substr(3));
  check_refused(upper.call(protocol::submit{{echo_task("p")}}), code::unauthenticated, "unknown token");
  wire_client hashed(d.work_endpoint(), sec::hash_text(d.token("admin")));
  check_refused(hashed.call(protocol::submit{{echo_task("p")}}), code::unauthenticated,
                "unknown token");

  const auto s = d.stats();
  CHECK(total_tasks(s) == 0);
  CHECK(s.workers.empty());
  CHECK(s.projects.empty());

  // The I/O thread counts a refusal before it answers, so the counts are final now.
  CHECK(metric(metrics_port, "dispatch_refused_requests_total",
               {{"code", "unauthenticated"}, {"endpoint", "work"}}) == 6);
  CHECK(metric(metrics_port, "dispatch_refused_requests_total",
               {{"code", "unauthenticated"}, {"endpoint", "admin"}}) == 2);

  const auto log = d.process().log();
  CHECK(log.find(unknown) == std::string::npos);
  CHECK(log.find(unknown.substr(4)) == std::string::npos);
  CHECK_THAT(log,
             Contains("refused a request on the work endpoint from 127.0.0.1: unauthenticated"));
  // Nor does it log a valid token it was sent (before "ready" it printed the fresh ones, once).
  const auto after_ready = log_after_ready(log);
  REQUIRE_FALSE(after_ready.empty());
  CHECK(after_ready.find(d.token("admin").substr(4)) == std::string::npos);
}

// ---- 3. roles

TEST_CASE("security: each role's token allows its requests and is refused the rest",
          "[security]") {
  dispatcher_process d;
  wire_client worker(d.work_endpoint(), d.token("worker"));
  wire_client worker_at_admin(d.admin_endpoint(), d.token("worker"));
  wire_client producer(d.work_endpoint(), d.token("producer"));
  wire_client producer_at_admin(d.admin_endpoint(), d.token("producer"));
  wire_client admin_at_work(d.work_endpoint(), d.token("admin"));
  wire_client admin(d.admin_endpoint(), d.token("admin"));

  // Producer: submit, status, cancel, tasks.
  const auto ids = submit(producer, {echo_task("p1", "first"), echo_task("p1", "second")});
  REQUIRE(ids.size() == 2);
  CHECK(status_of(producer, ids[0]).status == task_status::pending);
  expect<protocol::ok>(producer.call(protocol::cancel{ids[1]}));
  CHECK(expect<protocol::task_list>(producer_at_admin.call(protocol::list_tasks{})).tasks.size() ==
        2);
  const auto producer_may_not = [&](wire_client& c, protocol::request_body body) {
    const auto name = std::string(protocol::type_name(body));
    INFO("producer sends " << name);
    check_refused(c.call(std::move(body)), code::forbidden,
                  "the producer role may not send \"" + name + "\"");
  };
  producer_may_not(producer, worker_spec("w-producer"));
  producer_may_not(producer, protocol::fetch{1, 0});
  producer_may_not(producer, protocol::report{{{ids[0], 1, false, "", "", true}}});
  producer_may_not(producer_at_admin, protocol::get_stats{});
  producer_may_not(producer_at_admin, protocol::list_workers{});
  producer_may_not(producer_at_admin, protocol::pause_project{"p1"});
  producer_may_not(producer_at_admin, protocol::retry_task{ids[1]});

  // Worker: register, heartbeat, fetch, extend, complete.
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  expect<protocol::heartbeat_reply>(worker.call(protocol::heartbeat{}));
  const auto jobs = fetch(worker, 1);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].task == ids[0]);
  expect<protocol::ok>(worker.call(protocol::extend{jobs[0].task, jobs[0].attempt, 60000}));
  expect<protocol::ok>(worker.call(protocol::complete{jobs[0].task, jobs[0].attempt, "done"}));
  const auto worker_may_not = [&](wire_client& c, protocol::request_body body) {
    const auto name = std::string(protocol::type_name(body));
    INFO("worker sends " << name);
    check_refused(c.call(std::move(body)), code::forbidden,
                  "the worker role may not send \"" + name + "\"");
  };
  worker_may_not(worker, protocol::submit{{echo_task("p1")}});
  worker_may_not(worker, protocol::get_task{ids[0]});
  worker_may_not(worker, protocol::cancel{ids[0]});
  worker_may_not(worker_at_admin, protocol::get_stats{});
  worker_may_not(worker_at_admin, protocol::list_tasks{});
  worker_may_not(worker_at_admin, protocol::pause_project{"p1"});

  // Admin: everything, on both endpoints.
  expect<protocol::registered>(admin_at_work.call(worker_spec("w-admin")));
  expect<protocol::heartbeat_reply>(admin_at_work.call(protocol::heartbeat{}));
  const auto admin_ids = submit(admin_at_work, {echo_task("p2", "x")});
  CHECK(status_of(admin, admin_ids[0]).project == "p2");
  expect<protocol::ok>(admin.call(protocol::pause_project{"p2"}));
  expect<protocol::ok>(admin.call(protocol::resume_project{"p2"}));
  CHECK(expect<protocol::worker_list>(admin.call(protocol::list_workers{})).workers.size() == 2);
  CHECK(expect<protocol::task_list>(admin.call(protocol::list_tasks{})).tasks.size() == 3);
  expect<protocol::ok>(admin.call(protocol::cancel{admin_ids[0]}));
  expect<protocol::ok>(admin.call(protocol::retry_task{admin_ids[0]}));

  // The refused requests changed nothing: two producer tasks and one admin task.
  const auto s = expect<protocol::stats>(admin.call(protocol::get_stats{}));
  CHECK(total_tasks(s) == 3);
  CHECK(s.tasks.at("completed") == 1);
  CHECK(s.tasks.at("cancelled") == 1);
  CHECK(s.tasks.at("pending") == 1);
  CHECK(find_worker(s, "w-producer") == nullptr);
}

TEST_CASE("security: a producer limited to a project cannot see or touch other projects",
          "[security]") {
  dispatcher_process d({{"--token-hash",
                         "producer projA " + sec::hash_text(limited_token) + " projA-only"}});
  wire_client limited(d.work_endpoint(), limited_token);
  wire_client limited_at_admin(d.admin_endpoint(), limited_token);
  wire_client admin(d.work_endpoint());  // the harness's admin token
  wire_client admin_at_admin(d.admin_endpoint());

  const auto own = submit(limited, {echo_task("projA", "mine")});
  REQUIRE(own.size() == 1);
  check_refused(limited.call(protocol::submit{{echo_task("projB")}}), code::forbidden,
                "may not use project \"projB\"");
  // One foreign task refuses the whole batch: the projA task in it is not stored either.
  check_refused(limited.call(protocol::submit{{echo_task("projA", "batch"), echo_task("projB")}}),
                code::forbidden, "projB");

  const auto foreign_live = submit(admin, {echo_task("projB", "theirs")})[0];
  const auto foreign_done = submit(admin, {echo_task("projB", "theirs, finished")})[0];
  expect<protocol::ok>(admin.call(protocol::cancel{foreign_done}));

  // Another project's tasks look like no task at all, live or stored, exactly like a missing id.
  check_refused(limited.call(protocol::get_task{foreign_live}), code::unknown_task,
                "no task " + std::to_string(foreign_live));
  check_refused(limited.call(protocol::get_task{foreign_done}), code::unknown_task,
                "no task " + std::to_string(foreign_done));
  check_refused(limited.call(protocol::get_task{999999}), code::unknown_task, "no task 999999");
  check_refused(limited.call(protocol::cancel{foreign_live}), code::unknown_task,
                "no task " + std::to_string(foreign_live));
  check_refused(limited.call(protocol::cancel{foreign_done}), code::unknown_task,
                "no task " + std::to_string(foreign_done));
  CHECK(status_of(admin, foreign_live).status == task_status::pending);

  // Its own project works.
  CHECK(status_of(limited, own[0]).payload == "mine");
  protocol::list_tasks query;
  check_refused(limited_at_admin.call(query), code::forbidden, "limited to some projects");
  query.project = "projB";
  check_refused(limited_at_admin.call(query), code::forbidden, "may not use project \"projB\"");
  query.project = "projA";
  const auto listed = expect<protocol::task_list>(limited_at_admin.call(query)).tasks;
  REQUIRE(listed.size() == 1);  // the refused batch stored nothing
  CHECK(listed[0].id == own[0]);
  expect<protocol::ok>(limited.call(protocol::cancel{own[0]}));
  // Still a producer: no admin requests.
  check_refused(limited_at_admin.call(protocol::get_stats{}), code::forbidden,
                "may not send \"stats\"");

  const auto s = expect<protocol::stats>(admin_at_admin.call(protocol::get_stats{}));
  CHECK(total_tasks(s) == 3);
  CHECK(s.tasks.at("cancelled") == 2);
}

// ---- 4. task ownership with worker tokens

TEST_CASE("security: one worker token, two workers: neither may report on the other's task",
          "[security]") {
  dispatcher_process d;
  wire_client w1(d.work_endpoint(), d.token("worker"));
  wire_client w2(d.work_endpoint(), d.token("worker"));
  wire_client producer(d.work_endpoint(), d.token("producer"));
  expect<protocol::registered>(w1.call(worker_spec("w1")));
  expect<protocol::registered>(w2.call(worker_spec("w2")));
  const auto ids = submit(producer, {echo_task("p", "x")});
  const auto jobs = fetch(w1, 1);
  REQUIRE(jobs.size() == 1);
  const auto& j = jobs[0];
  CHECK(error_of(w2.call(protocol::complete{j.task, j.attempt, "stolen"})) == code::not_owner);
  CHECK(error_of(w2.call(protocol::fail{j.task, j.attempt, "sabotage", false})) == code::not_owner);
  CHECK(error_of(w2.call(protocol::extend{j.task, j.attempt, 1000})) == code::not_owner);
  const auto stolen = expect<protocol::reported>(
      w2.call(protocol::report{{{j.task, j.attempt, false, "stolen", "", true}}}));
  REQUIRE(stolen.refused.size() == 1);
  CHECK(stolen.refused[0].code == code::not_owner);
  CHECK(status_of(producer, ids[0]).status == task_status::running);
  expect<protocol::ok>(w1.call(protocol::complete{j.task, j.attempt, "mine"}));
  CHECK(status_of(producer, ids[0]).result == "mine");
}

// ---- 5. --auth off

TEST_CASE("security: with --auth off requests without a token are served", "[security]") {
  dispatcher_process d({{"--auth", "off"}});
  wire_client producer(d.work_endpoint(), "");
  wire_client worker(d.work_endpoint(), "");
  wire_client admin(d.admin_endpoint(), "");
  wire_client stranger(d.admin_endpoint(), "dsp_not-a-token-anyone-knows");
  const auto ids = submit(producer, {echo_task("p", "open")});
  expect<protocol::registered>(worker.call(worker_spec("w1")));
  const auto jobs = fetch(worker, 1);
  REQUIRE(jobs.size() == 1);
  expect<protocol::ok>(worker.call(protocol::complete{jobs[0].task, jobs[0].attempt, "done"}));
  CHECK(expect<protocol::stats>(admin.call(protocol::get_stats{})).tasks.at("completed") == 1);
  CHECK(expect<protocol::stats>(stranger.call(protocol::get_stats{})).tasks.at("completed") == 1);
  CHECK(status_of(producer, ids[0]).result == "done");
  // No tokens are made when none are checked.
  CHECK_FALSE(exists(d.data_dir() + "/tokens"));
  CHECK_FALSE(exists(d.credentials_path()));
  CHECK_THAT(d.process().log(), Contains("authentication is off"));
}

// ---- 6. CURVE

TEST_CASE("security: CURVE lets allowed keys in (real worker-agent and dispatchctl) and nobody "
          "else",
          "[security][curve]") {
  temp_dir dir;
  const auto data = dir.path() + "/data";
  // Key pairs made by the real dispatchctl.
  for (const std::string name : {"server", "client", "stranger"}) {
    const auto r = run_tool(dir.path(), {dispatchctl_path(), "keygen", dir.path() + "/" + name});
    INFO(r.out);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Contains("public key: "));
    CHECK(mode_of(dir.path() + "/" + name + ".key") == 0600);
  }
  const auto server = read_pair(dir.path() + "/server");
  const auto client = read_pair(dir.path() + "/client");
  const auto stranger = read_pair(dir.path() + "/stranger");
  // keygen refuses to overwrite.
  CHECK(run_tool(dir.path(), {dispatchctl_path(), "keygen", dir.path() + "/server"}).code == 1);
  CHECK(read_pair(dir.path() + "/server").secret_key == server.secret_key);
  write_text(dir.path() + "/allow", "# clients\n" + client.public_key + " test-client\n");

  const auto ports = free_ports(3);
  const auto work = tcp_endpoint(ports[0]);
  const auto admin_endpoint = tcp_endpoint(ports[1]);
  const int metrics_port = ports[2];
  std::vector<std::string> argv = {dispatcherd_path(),
                                   "--data-dir", data,
                                   "--work-endpoint", work,
                                   "--admin-endpoint", admin_endpoint,
                                   "--threads", "2",
                                   "--events-endpoint", "off",
                                   "--metrics-address", "127.0.0.1:" + std::to_string(metrics_port),
                                   "--curve-secret-key", dir.path() + "/server.key",
                                   "--curve-allow", dir.path() + "/allow"};
  for (auto& a : test_token_args()) argv.push_back(std::move(a));
  child_process daemon(argv, dir.path() + "/dispatcherd.log");
  // Ready once it answers a CURVE client (the harness's plain probe never would).
  const bool ready = wait_until(
      [&] {
        if (!daemon.running()) return true;
        curve_client probe(admin_endpoint, test_admin_token, &client, server.public_key);
        return probe.call(protocol::get_stats{}, 200ms).has_value();
      },
      15s);
  INFO(daemon.log());
  REQUIRE(ready);
  REQUIRE(daemon.running());
  CHECK_THAT(daemon.log(), Contains("CURVE on: server public key " + server.public_key));

  curve_client admin(admin_endpoint, test_admin_token, &client, server.public_key);
  const auto stored = [&] {
    const auto r = admin.call(protocol::get_stats{}, 5s);
    REQUIRE(r.has_value());
    return total_tasks(expect<protocol::stats>(*r));
  };
  const auto refused_handshakes = [&] {
    return metric(metrics_port, "dispatch_handshakes_refused_total",
                  {{"reason", "client key not allowed"}});
  };
  CHECK(refused_handshakes() == 0);

  // (a) The allowed client: a real worker-agent (it registers meanwhile; used further down)...
  child_process agent({worker_agent_path(), "--endpoint", work, "--id", "curve-w1", "--token-file",
                       data + "/credentials", "--curve-secret-key", dir.path() + "/client.key",
                       "--curve-server-key", dir.path() + "/server.pub"},
                      dir.path() + "/agent.log");

  // Every refused client at once, so that one quiet second covers them all.
  // The real dispatchctl with a key not on the allow list gives up with a hint.
  child_process ctl_outsider({dispatchctl_path(), "--endpoint", admin_endpoint, "--token",
                              test_admin_token, "--timeout", "1s", "--curve-secret-key",
                              dir.path() + "/stranger.key", "--curve-server-key",
                              dir.path() + "/server.pub", "stats"},
                             dir.path() + "/ctl-outsider.log");
  // (b) Plain, with a valid token: no handshake, no reply, nothing stored.
  wire_client plain(work, test_admin_token);
  plain.send(protocol::submit{{echo_task("plain")}});
  wire_client plain_admin(admin_endpoint, test_admin_token);
  plain_admin.send(protocol::get_stats{});
  // (c) A CURVE key not on the allow list: refused at the handshake, and counted.
  curve_client outsider(work, test_admin_token, &stranger, server.public_key);
  outsider.send(protocol::submit{{echo_task("outsider")}});
  // (d) An allowed key, but the wrong server key: the client cannot even say hello.
  curve_client misled(work, test_admin_token, &client, stranger.public_key);
  misled.send(protocol::submit{{echo_task("misled")}});

  CHECK_FALSE(plain.receive(1s).has_value());
  CHECK_FALSE(plain_admin.receive(10ms).has_value());
  CHECK_FALSE(outsider.receive(10ms).has_value());
  CHECK_FALSE(misled.receive(10ms).has_value());
  CHECK(wait_until([&] { return refused_handshakes() >= 1; }, 3s));
  const auto ctl_exit = ctl_outsider.wait(5s);
  REQUIRE(ctl_exit.has_value());
  CHECK(*ctl_exit == 1);
  CHECK_THAT(ctl_outsider.log(), Contains("allow list"));
  CHECK(stored() == 0);
  REQUIRE(daemon.running());

  // (a) ...registered over CURVE with its worker token...
  const bool registered = wait_until(
      [&] {
        const auto r = admin.call(protocol::get_stats{}, 2s);
        REQUIRE(r.has_value());
        return find_worker(expect<protocol::stats>(*r), "curve-w1") != nullptr;
      },
      5s);
  INFO("agent log:\n" << agent.log());
  REQUIRE(registered);
  // ...and the real dispatchctl, with the first-start tokens.
  // The server key as Z85 text this time, the admin line of the credentials file as the token.
  const auto submitted =
      run_tool(dir.path(), {dispatchctl_path(), "--endpoint", admin_endpoint, "--token-file",
                            data + "/credentials", "--curve-secret-key",
                            dir.path() + "/client.key", "--curve-server-key", server.public_key,
                            "submit", "--project", "curve", "--type", "echo", "--payload",
                            "over curve"});
  INFO(submitted.out);
  REQUIRE(submitted.code == 0);
  std::smatch m;
  REQUIRE(std::regex_match(submitted.out, m, std::regex(R"(^(\d+)\n$)")));
  const task_id id = std::stoull(m[1].str());
  task done;
  const bool completed = wait_until(
      [&] {
        const auto r = admin.call(protocol::get_task{id}, 2s);
        REQUIRE(r.has_value());
        done = expect<protocol::task_info>(*r).t;
        return done.status == task_status::completed;
      },
      8s);
  REQUIRE(completed);
  CHECK(done.result == "over curve");
  CHECK(done.worker == "curve-w1");
  CHECK(stored() == 1);

  // No secret key ever reaches the log.
  const auto log = daemon.log();
  CHECK(log.find(server.secret_key) == std::string::npos);
  CHECK(log.find(client.secret_key) == std::string::npos);
  CHECK(log.find(stranger.secret_key) == std::string::npos);
}

// ---- 7. limits

TEST_CASE("security: every size limit refuses with too_large, naming the field and the option",
          "[security][limits]") {
  const int metrics_port = free_ports(1)[0];
  dispatcher_process d({{"--max-payload", "100", "--max-batch", "3", "--max-name", "10",
                         "--max-text", "20", "--max-tags", "2", "--metrics-address",
                         "127.0.0.1:" + std::to_string(metrics_port)}});
  wire_client work(d.work_endpoint());
  wire_client admin(d.admin_endpoint());
  const auto with = [](auto change) {
    auto s = echo_task("p");
    change(s);
    return protocol::submit{{s}};
  };
  struct limit_case {
    std::string what;
    wire_client* via;
    protocol::request_body body;
    std::string field;
    std::string option;
  };
  auto tagged_worker = worker_spec("w");
  tagged_worker.tags = {"a", "b", "c"};
  protocol::list_tasks long_search;
  long_search.text = std::string(21, 's');
  const std::vector<limit_case> cases = {
      {"payload", &work, with([](auto& s) { s.payload = std::string(101, 'x'); }),
       "'tasks[0].payload': 101 bytes exceeds the limit of 100", "--max-payload"},
      {"batch", &work,
       protocol::submit{{echo_task("p"), echo_task("p"), echo_task("p"), echo_task("p")}},
       "'tasks': 4 entries exceed the limit of 3", "--max-batch"},
      {"project", &work, protocol::submit{{echo_task(std::string(11, 'p'))}}, "'tasks[0].project'",
       "--max-name"},
      {"type", &work, with([](auto& s) { s.type = std::string(11, 't'); }), "'tasks[0].type'",
       "--max-name"},
      {"worker id", &work, worker_spec(std::string(11, 'w')), "'worker'", "--max-name"},
      {"task tags", &work, with([](auto& s) { s.tags = {"a", "b", "c"}; }), "'tasks[0].tags'",
       "--max-tags"},
      {"tag name", &work, with([](auto& s) { s.tags = {std::string(11, 'g')}; }),
       "'tasks[0].tags[0]'", "--max-name"},
      {"worker tags", &work, tagged_worker, "'tags'", "--max-tags"},
      {"title", &work, with([](auto& s) { s.title = std::string(21, 'T'); }), "'tasks[0].title'",
       "--max-text"},
      {"description", &work, with([](auto& s) { s.description = std::string(21, 'D'); }),
       "'tasks[0].description'", "--max-text"},
      {"search text", &admin, long_search, "'text'", "--max-text"},
      {"fail error", &work, protocol::fail{1, 1, std::string(21, 'e'), false}, "'error'",
       "--max-text"},
      {"report size", &work, protocol::report{std::vector<protocol::task_result>(4)},
       "'results': 4 entries exceed the limit of 3", "--max-batch"},
      {"report result", &work,
       protocol::report{{protocol::task_result{}, {1, 1, false, std::string(101, 'r'), "", true}}},
       "'results[1].result': 101 bytes exceeds the limit of 100", "--max-payload"},
      {"result", &work, protocol::complete{1, 1, std::string(101, 'r')}, "'result'",
       "--max-payload"},
  };
  int refused_at_work = 0, refused_at_admin = 0;
  for (const auto& c : cases) {
    INFO(c.what);
    const auto r = c.via->call(c.body);
    check_refused(r, code::too_large, "field " + c.field);
    check_refused(r, code::too_large, "(" + c.option + ")");
    ++(c.via == &work ? refused_at_work : refused_at_admin);
  }
  // Still answering, and nothing of it stored.
  REQUIRE(d.process().running());
  auto s = d.stats();
  CHECK(total_tasks(s) == 0);
  CHECK(s.projects.empty());
  CHECK(s.workers.empty());
  CHECK(metric(metrics_port, "dispatch_refused_requests_total",
               {{"code", "too_large"}, {"endpoint", "work"}}) == refused_at_work);
  CHECK(metric(metrics_port, "dispatch_refused_requests_total",
               {{"code", "too_large"}, {"endpoint", "admin"}}) == refused_at_admin);

  // Exactly at every limit is fine.
  auto at_limit = echo_task(std::string(10, 'p'), std::string(100, 'x'));
  at_limit.type = std::string(10, 't');
  at_limit.tags = {std::string(10, 'g'), "h"};
  at_limit.title = std::string(20, 'T');
  at_limit.description = std::string(20, 'D');
  const auto ids = submit(work, {at_limit, at_limit, at_limit});
  REQUIRE(ids.size() == 3);
  auto w = worker_spec(std::string(10, 'w'), 3, {std::string(10, 't'), "echo"});
  w.tags = at_limit.tags;  // a worker must carry every tag of a task it runs
  expect<protocol::registered>(work.call(w));
  // Page sizes above --max-batch are capped, not refused: asking for 8 gets the 3 there are.
  const auto jobs = fetch(work, 8);
  REQUIRE(jobs.size() == 3);
  // A result one byte too long is refused and the task keeps running; at the limit it completes.
  check_refused(work.call(protocol::complete{jobs[0].task, jobs[0].attempt, std::string(101, 'r')}),
                code::too_large, "--max-payload");
  CHECK(status_of(work, jobs[0].task).status == task_status::running);
  expect<protocol::ok>(
      work.call(protocol::complete{jobs[0].task, jobs[0].attempt, std::string(100, 'r')}));
  check_refused(
      work.call(protocol::fail{jobs[1].task, jobs[1].attempt, std::string(21, 'e'), false}),
      code::too_large, "--max-text");
  expect<protocol::ok>(
      work.call(protocol::fail{jobs[1].task, jobs[1].attempt, std::string(20, 'e'), false}));
  protocol::list_tasks page;  // the default page of 100 is capped at 3
  page.text = std::string(10, 't');
  CHECK(expect<protocol::task_list>(admin.call(page)).tasks.size() == 3);
  submit(work, {at_limit});
  page.text.clear();
  const auto capped = expect<protocol::task_list>(admin.call(page));
  CHECK(capped.tasks.size() == 3);
  CHECK(capped.next != 0);  // and the client pages on
  s = d.stats();
  CHECK(s.tasks.at("completed") == 1);
  CHECK(s.tasks.at("failed") + s.tasks.at("dead") == 1);
  CHECK(s.tasks.at("running") == 1);
}

TEST_CASE("security: --max-rate refuses a flood with rate_limited, stores only what it admitted, "
          "and serves the peer again after a pause",
          "[security][limits]") {
  const int metrics_port = free_ports(1)[0];
  dispatcher_process d({{"--max-rate", "20", "--metrics-address",
                         "127.0.0.1:" + std::to_string(metrics_port)}});
  wire_client flood(d.work_endpoint());
  constexpr int sent = 100;
  for (int i = 0; i < sent; ++i) flood.send(protocol::submit{{echo_task("flood", std::to_string(i))}});
  // A refused message is answered before it is decoded, so its reply carries id 0.
  int admitted = 0, limited = 0, other = 0;
  std::string message;
  for (int i = 0; i < sent; ++i) {
    const auto r = flood.receive(5s);
    REQUIRE(r.has_value());
    if (std::holds_alternative<protocol::submitted>(r->body)) {
      ++admitted;
    } else if (const auto* e = std::get_if<protocol::error>(&r->body);
               e && e->code == code::rate_limited) {
      ++limited;
      message = e->message;
      CHECK(r->id == 0);
    } else {
      ++other;
      UNSCOPED_INFO("unexpected reply: " << describe(*r));
    }
  }
  INFO("admitted " << admitted << ", rate_limited " << limited);
  CHECK(other == 0);
  CHECK(admitted >= 20);  // the burst is one second's worth
  CHECK(admitted <= 60);  // and then about 20 a second: the flood takes far less than 2 s
  CHECK(limited == sent - admitted - other);
  CHECK_THAT(message, Contains("more than 20 messages a second"));
  CHECK_THAT(message, Contains("(--max-rate)"));

  // Other connections are not affected, and exactly the admitted submits were stored.
  REQUIRE(d.process().running());
  CHECK(total_tasks(d.stats()) == static_cast<std::uint64_t>(admitted));
  CHECK(metric(metrics_port, "dispatch_refused_requests_total",
               {{"code", "rate_limited"}, {"endpoint", "work"}}) == limited);

  // A second later the bucket has refilled.
  std::this_thread::sleep_for(1100ms);
  for (int i = 0; i < 10; ++i) {
    INFO("request " << i << " after the pause");
    expect<protocol::submitted>(flood.call(protocol::submit{{echo_task("flood", "after")}}));
  }
  CHECK(total_tasks(d.stats()) == static_cast<std::uint64_t>(admitted) + 10);
}

TEST_CASE("security: --max-peers refuses one connection too many with too_many_peers until a "
          "peer has been idle for --peer-idle",
          "[security][limits]") {
  dispatcher_process d({{"--max-peers", "2", "--peer-idle", "500ms"}});
  // The harness's readiness probe was a peer too: let it fall idle (idle peers are swept at most
  // once a second).
  std::this_thread::sleep_for(1600ms);
  wire_client a(d.admin_endpoint());
  wire_client b(d.work_endpoint());  // the two endpoints share the count
  expect<protocol::stats>(a.call(protocol::get_stats{}));
  check_refused(b.call(protocol::get_task{999}), code::unknown_task, "no task 999");

  wire_client c(d.work_endpoint());
  c.send(protocol::submit{{echo_task("third")}});
  const auto refused = c.receive(5s);
  REQUIRE(refused.has_value());
  CHECK(refused->id == 0);
  check_refused(*refused, code::too_many_peers, "already serves 2 connections (--max-peers)");

  // "a" keeps talking, "b" falls silent: "c" gets in once "b" has been idle long enough.
  const auto started = std::chrono::steady_clock::now();
  std::optional<protocol::reply> answer;
  const bool admitted = wait_until(
      [&] {
        expect<protocol::stats>(a.call(protocol::get_stats{}));
        c.send(protocol::get_task{999});
        answer = c.receive(2s);
        REQUIRE(answer.has_value());
        const auto* e = std::get_if<protocol::error>(&answer->body);
        return !(e && e->code == code::too_many_peers);
      },
      5s);
  const auto waited = std::chrono::steady_clock::now() - started;
  REQUIRE(admitted);
  check_refused(*answer, code::unknown_task, "no task 999");  // it reached the dispatcher
  CHECK(waited >= 300ms);  // not at once: "b" had to go idle first

  // "a" and "c" hold the two slots now.
  wire_client e(d.admin_endpoint());
  e.send(protocol::get_stats{});
  const auto fourth = e.receive(5s);
  REQUIRE(fourth.has_value());
  check_refused(*fourth, code::too_many_peers, "try again later");

  // Healthy, and the refused submit was not stored.
  REQUIRE(d.process().running());
  const auto s = expect<protocol::stats>(a.call(protocol::get_stats{}));
  CHECK(total_tasks(s) == 0);
  CHECK(s.projects.empty());
}

// ---- 8. dispatchctl token

TEST_CASE("security: dispatchctl token makes a token and a line dispatcherd accepts",
          "[security]") {
  temp_dir dir;
  const auto r = run_tool(dir.path(), {dispatchctl_path(), "token", "--role", "producer",
                                       "--projects", "a,b", "--label", "ci-producer"});
  INFO(r.out);
  REQUIRE(r.code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex(R"(token: (dsp_[0-9a-f]{64})\n)")));
  const std::string token = m[1].str();
  REQUIRE(std::regex_search(r.out, m,
                            std::regex(R"((producer a,b sha256:[0-9a-f]{64} ci-producer)\n)")));
  const std::string line = m[1].str();
  CHECK(line == "producer a,b " + sec::hash_text(token) + " ci-producer");

  // --json gives the same pair; every run makes a new token.
  const auto j = run_tool(dir.path(), {dispatchctl_path(), "token", "--role", "worker", "--json"});
  REQUIRE(j.code == 0);
  REQUIRE(nlohmann::json::accept(j.out));
  const auto doc = nlohmann::json::parse(j.out);
  const auto worker_token = doc.at("token").get<std::string>();
  CHECK(worker_token != token);
  CHECK(doc.at("line").get<std::string>() == "worker * " + sec::hash_text(worker_token));
  // Projects are for producers only.
  const auto bad = run_tool(dir.path(), {dispatchctl_path(), "token", "--role", "worker",
                                         "--projects", "a"});
  CHECK(bad.code == 2);
  CHECK_THAT(bad.out, Contains("producer tokens only"));

  dispatcher_process d({{"--token-hash", line, "--token-hash", doc.at("line").get<std::string>()}});
  wire_client producer(d.work_endpoint(), token);
  CHECK(submit(producer, {echo_task("a"), echo_task("b")}).size() == 2);
  check_refused(producer.call(protocol::submit{{echo_task("c")}}), code::forbidden,
                "may not use project \"c\"");
  wire_client worker(d.work_endpoint(), worker_token);
  expect<protocol::registered>(worker.call(worker_spec("w-token")));
  check_refused(worker.call(protocol::submit{{echo_task("a")}}), code::forbidden, "worker role");
  // The label, not the token, is what the daemon may log.
  CHECK(d.process().log().find(token) == std::string::npos);

  // dispatchctl reads the admin line of the credentials file.
  const auto stats =
      run_tool(dir.path(), {dispatchctl_path(), "--endpoint", d.admin_endpoint(), "--token-file",
                            d.credentials_path(), "stats", "--json"});
  INFO(stats.out);
  CHECK(stats.code == 0);
  // A token the daemon does not know: refused, exit 1, the code in the message.
  const auto refused = run_tool(dir.path(), {dispatchctl_path(), "--endpoint", d.admin_endpoint(),
                                             "--token", "dsp_nobody", "stats"});
  CHECK(refused.code == 1);
  CHECK_THAT(refused.out, Contains("unauthenticated"));
}

TEST_CASE("security: dispatcherd refuses to start on a bad --token-hash or a missing tokens file",
          "[security]") {
  temp_dir dir;
  const auto ports = free_ports(2);
  const std::vector<std::string> base = {dispatcherd_path(), "--data-dir", dir.path() + "/data",
                                         "--work-endpoint", tcp_endpoint(ports[0]),
                                         "--admin-endpoint", tcp_endpoint(ports[1]),
                                         "--events-endpoint", "off", "--metrics-address",
                                         "127.0.0.1:0"};
  {
    auto argv = base;
    argv.insert(argv.end(), {"--token-hash", "admin * sha256:abc"});
    child_process p(argv, dir.path() + "/bad-hash.log");
    const auto exit = p.wait(10s);
    REQUIRE(exit.has_value());
    CHECK(*exit == 1);
    CHECK_THAT(p.log(), Contains("--token-hash:1: the hash must be"));
  }
  {
    auto argv = base;
    argv.insert(argv.end(), {"--tokens-file", dir.path() + "/no-such-tokens"});
    child_process p(argv, dir.path() + "/missing.log");
    const auto exit = p.wait(10s);
    REQUIRE(exit.has_value());
    CHECK(*exit == 1);
    CHECK_THAT(p.log(), Contains("cannot read tokens file " + dir.path() + "/no-such-tokens"));
    // A named file that is missing is not made up with fresh tokens.
    CHECK_FALSE(exists(dir.path() + "/no-such-tokens"));
  }
}
