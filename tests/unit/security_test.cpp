// Tokens, roles and limits without a daemon: the tokens file format (security/token_table), token
// hashing (security/token_hash), the first-start files and the client's token sources
// (security/credentials_file), who may send what (dispatcher/authorization), the size limits
// (dispatcher/request_limits) and per-peer admission on a synthetic clock
// (dispatcher/peer_limiter).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dispatcher/authorization.hpp"
#include "dispatcher/peer_limiter.hpp"
#include "dispatcher/request_limits.hpp"
#include "protocol/codec.hpp"
#include "security/credentials_file.hpp"
#include "security/role.hpp"
#include "security/token_hash.hpp"
#include "security/token_table.hpp"
#include "tests/support/files.hpp"
#include "tests/support/temp_dir.hpp"

namespace {

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
namespace sec = dispatch::security;
namespace protocol = dispatch::protocol;
using dispatch::testing::temp_dir;
using dispatch::testing::mode_of;
using dispatch::testing::read_text;
using dispatch::testing::write_text;

// A well-formed hash line for `token`.
std::string line(const std::string& role, const std::string& projects, const std::string& token,
                 const std::string& label = {}) {
  return role + " " + projects + " " + sec::hash_text(token) + (label.empty() ? "" : " " + label);
}




// Sets or unsets one environment variable for the scope, then puts back what was there.
class env_guard {
 public:
  env_guard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = std::string(old);
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~env_guard() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Runs the scope in `dir` (the default credentials file is relative to the working directory).
class cwd_guard {
 public:
  explicit cwd_guard(const std::string& dir) {
    char buf[4096];
    REQUIRE(::getcwd(buf, sizeof buf) != nullptr);
    old_ = buf;
    REQUIRE(::chdir(dir.c_str()) == 0);
  }
  ~cwd_guard() { (void)::chdir(old_.c_str()); }
  cwd_guard(const cwd_guard&) = delete;
  cwd_guard& operator=(const cwd_guard&) = delete;

 private:
  std::string old_;
};

sec::principal principal_of(sec::role r, std::vector<std::string> projects = {}) {
  sec::principal p;
  p.who = r;
  p.projects = std::move(projects);
  return p;
}

protocol::task_spec spec(std::string project) {
  protocol::task_spec s;
  s.project = std::move(project);
  s.type = "echo";
  return s;
}

// Every request type, default-constructed (one per alternative of request_body).
template <std::size_t... I>
std::vector<protocol::request_body> all_bodies(std::index_sequence<I...>) {
  return {protocol::request_body(std::in_place_index<I>)...};
}
std::vector<protocol::request_body> all_bodies() {
  return all_bodies(std::make_index_sequence<std::variant_size_v<protocol::request_body>>{});
}

std::string name_of(const protocol::request_body& b) { return std::string(protocol::type_name(b)); }

}  // namespace

// ---- token_hash

TEST_CASE("hash_text is sha256: and 64 lowercase hex digits, and parse_hash_text reads it back",
          "[security][tokens]") {
  // SHA-256("abc"), FIPS 180-2 test vector.
  CHECK(sec::hash_text("abc") ==
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  for (const std::string& token :
       std::vector<std::string>{"", "x", "dsp_0123", std::string(300, 'z')}) {
    const auto text = sec::hash_text(token);
    REQUIRE(text.size() == 7 + 64);
    const auto d = sec::parse_hash_text(text);
    REQUIRE(d.has_value());
    CHECK(*d == sec::digest_of(token));
    CHECK(sec::same_digest(*d, sec::digest_of(token)));
    CHECK(sec::hash_text(*d) == text);
  }
  CHECK_FALSE(sec::same_digest(sec::digest_of("a"), sec::digest_of("b")));

  const std::string hex64(64, 'a');
  CHECK(sec::parse_hash_text("sha256:" + hex64).has_value());
  CHECK_FALSE(sec::parse_hash_text(hex64).has_value());                   // no prefix
  CHECK_FALSE(sec::parse_hash_text("sha512:" + hex64).has_value());       // other prefix
  CHECK_FALSE(sec::parse_hash_text("sha256:" + hex64.substr(1)).has_value());  // 63 digits
  CHECK_FALSE(sec::parse_hash_text("sha256:" + hex64 + "a").has_value());      // 65 digits
  CHECK_FALSE(sec::parse_hash_text("sha256:" + std::string(63, 'a') + "g").has_value());
  CHECK_FALSE(sec::parse_hash_text("sha256:" + std::string(63, 'a') + " ").has_value());
  CHECK_FALSE(sec::parse_hash_text("").has_value());
}

TEST_CASE("generate_token makes dsp_ and 64 hex digits, never the same twice",
          "[security][tokens]") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const auto t = sec::generate_token();
    REQUIRE(t.size() == 4 + 64);
    REQUIRE_THAT(t, StartsWith("dsp_"));
    REQUIRE(t.find_first_not_of("0123456789abcdef", 4) == std::string::npos);
    seen.insert(t);
  }
  CHECK(seen.size() == 200);
}

// ---- token_table

TEST_CASE("token_table reads good lines, skipping blanks and comments", "[security][tokens]") {
  sec::token_table table;
  std::string error;
  const std::string text = "# tokens\n"
                           "\n"
                           "   \t\n" +
                           line("admin", "*", "t-admin", "ops team") + "\n" +
                           "  # indented comment\n" + line("worker", "*", "t-worker") + "\n" +
                           line("producer", "*", "t-prod-all") + "\n" +
                           line("producer", "billing,search", "t-prod-two") + "\n" +
                           "\t" + line("producer", "solo", "t-prod-one", "solo-app") + "\n";
  REQUIRE(table.add_text(text, "tokens", error));
  CHECK(error.empty());
  CHECK(table.size() == 5);

  const auto* admin = table.authenticate("t-admin");
  REQUIRE(admin != nullptr);
  CHECK(admin->who == sec::role::admin);
  CHECK(admin->label == "ops team");  // the rest of the line, spaces included
  CHECK(admin->all_projects());

  const auto* worker = table.authenticate("t-worker");
  REQUIRE(worker != nullptr);
  CHECK(worker->who == sec::role::worker);
  CHECK(worker->label == "worker");  // default label: the role

  const auto* all = table.authenticate("t-prod-all");
  REQUIRE(all != nullptr);
  CHECK(all->who == sec::role::producer);
  CHECK(all->projects.empty());
  CHECK(all->all_projects());
  CHECK(all->may_use("anything"));

  const auto* two = table.authenticate("t-prod-two");
  REQUIRE(two != nullptr);
  CHECK(two->projects == std::vector<std::string>{"billing", "search"});
  CHECK(two->label == "producer:billing,search");
  CHECK_FALSE(two->all_projects());
  CHECK(two->may_use("billing"));
  CHECK(two->may_use("search"));
  CHECK_FALSE(two->may_use("bill"));
  CHECK_FALSE(two->may_use(""));

  const auto* one = table.authenticate("t-prod-one");
  REQUIRE(one != nullptr);
  CHECK(one->projects == std::vector<std::string>{"solo"});
  CHECK(one->label == "solo-app");
}

TEST_CASE("token_table names the line and the reason of a bad line, keeping earlier entries",
          "[security][tokens]") {
  const std::string good = line("admin", "*", "good");
  const std::string hash = sec::hash_text("x");
  struct bad {
    std::string text;
    std::string reason;
  };
  const std::vector<bad> cases = {
      {"admin *", "expected '<role> <projects> sha256:<hex> [label]'"},
      {"admin", "expected '<role>"},
      {"root * " + hash, "unknown role 'root'"},
      {"Admin * " + hash, "unknown role 'Admin'"},
      {"admin * " + hash.substr(7), "the hash must be 'sha256:' and 64 hex digits"},
      {"admin * " + hash.substr(0, hash.size() - 1), "the hash must be"},
      {"admin * sha256:" + std::string(64, 'q'), "the hash must be"},
      {"admin * " + hash + "ff", "the hash must be"},
      {"worker projA " + hash, "only producer tokens are limited to projects"},
      {"admin projA " + hash, "only producer tokens are limited to projects"},
      {"producer a,,b " + hash, "project names are 1..128 bytes"},
      {"producer a, " + hash, "project names are 1..128 bytes"},
      {"producer ,a " + hash, "project names are 1..128 bytes"},
      {"producer " + std::string(129, 'p') + " " + hash, "project names are 1..128 bytes"},
  };
  for (const auto& c : cases) {
    INFO("bad line: " << c.text);
    sec::token_table table;
    std::string error;
    // Line 4 after a comment, a good line and a blank line: comments and blanks are counted.
    const std::string text =
        "# header\n" + good + "\n\n" + c.text + "\n" + line("worker", "*", "later");
    CHECK_FALSE(table.add_text(text, "/etc/dispatch/tokens", error));
    CHECK_THAT(error, StartsWith("/etc/dispatch/tokens:4: "));
    CHECK_THAT(error, Contains(c.reason));
    CHECK(table.size() == 1);  // the good line before it stays
    CHECK(table.authenticate("good") != nullptr);
    CHECK(table.authenticate("later") == nullptr);  // nothing after it
  }
  // A producer project of exactly 128 bytes is fine.
  sec::token_table table;
  std::string error;
  CHECK(table.add_text("producer " + std::string(128, 'p') + " " + hash, "t", error));
  CHECK(error.empty());
}

TEST_CASE("token_table::add_file reads a file and refuses a missing one", "[security][tokens]") {
  temp_dir dir;
  const auto path = dir.path() + "/tokens";
  write_text(path, line("worker", "*", "w") + "\n" + "bogus\n");
  sec::token_table table;
  std::string error;
  CHECK_FALSE(table.add_file(path, error));
  CHECK(error == path + ":2: expected '<role> <projects> sha256:<hex> [label]'");
  CHECK(table.size() == 1);

  error.clear();
  CHECK_FALSE(table.add_file(dir.path() + "/missing", error));
  CHECK_THAT(error, Contains("cannot read tokens file " + dir.path() + "/missing"));
}

TEST_CASE("authenticate maps each token to its principal and nothing else to anything",
          "[security][tokens]") {
  sec::token_table table;
  std::string error;
  REQUIRE(table.add_text(line("admin", "*", "alpha") + "\n" + line("producer", "p1", "beta"), "t",
                         error));
  const auto* a = table.authenticate("alpha");
  const auto* b = table.authenticate("beta");
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(a != b);
  CHECK(a->who == sec::role::admin);
  CHECK(b->who == sec::role::producer);
  CHECK(b->projects == std::vector<std::string>{"p1"});
  CHECK(table.authenticate("alpha") == a);  // stable

  CHECK(table.authenticate("") == nullptr);
  CHECK(table.authenticate("gamma") == nullptr);
  CHECK(table.authenticate("alph") == nullptr);
  CHECK(table.authenticate("alphaa") == nullptr);
  CHECK(table.authenticate("ALPHA") == nullptr);
  CHECK(table.authenticate(sec::hash_text("alpha")) == nullptr);  // the hash is not the token

  sec::token_table empty;
  CHECK(empty.authenticate("alpha") == nullptr);

  // The same token listed twice: the first entry wins.
  sec::token_table twice;
  REQUIRE(twice.add_text(line("worker", "*", "same") + "\n" + line("admin", "*", "same"), "t",
                         error));
  REQUIRE(twice.authenticate("same") != nullptr);
  CHECK(twice.authenticate("same")->who == sec::role::worker);
}

TEST_CASE("token_line is a line token_table accepts, for the same principal",
          "[security][tokens]") {
  auto who = principal_of(sec::role::producer, {"a", "b"});
  who.label = "ci";
  const auto text = sec::token_line(who, "tok");
  CHECK(text == "producer a,b " + sec::hash_text("tok") + " ci");
  CHECK(text.find("tok ") == std::string::npos);
  sec::token_table table;
  std::string error;
  REQUIRE(table.add_text(text, "t", error));
  const auto* p = table.authenticate("tok");
  REQUIRE(p != nullptr);
  CHECK(p->projects == who.projects);
  CHECK(p->label == "ci");
  CHECK(sec::token_line(principal_of(sec::role::worker), "w") == "worker * " + sec::hash_text("w"));
}

TEST_CASE("roles print and parse", "[security][tokens]") {
  for (auto r : {sec::role::worker, sec::role::producer, sec::role::admin})
    CHECK(sec::parse_role(sec::to_string(r)) == r);
  CHECK_FALSE(sec::parse_role("").has_value());
  CHECK_FALSE(sec::parse_role("root").has_value());
  // An admin is never limited, whatever projects its principal lists.
  CHECK(principal_of(sec::role::admin, {"x"}).may_use("y"));
}

// ---- credentials_file

TEST_CASE("first start makes owner-only tokens and credentials files that match, once",
          "[security][credentials]") {
  temp_dir dir;
  const auto data = dir.path() + "/data";  // not there yet: made 0700
  const auto tokens = data + "/tokens";
  const auto credentials = data + "/credentials";
  sec::first_start_result first;
  std::string error;
  REQUIRE(sec::ensure_first_start_tokens(data, tokens, first, error));
  CHECK(first.created);
  CHECK(mode_of(data) == 0700);
  CHECK(mode_of(tokens) == 0600);
  CHECK(mode_of(credentials) == 0600);
  const auto tokens_text = read_text(tokens);
  const auto credentials_text = read_text(credentials);
  CHECK(first.credentials == credentials_text);

  sec::token_table table;
  REQUIRE(table.add_file(tokens, error));
  CHECK(table.size() == 3);
  std::set<std::string> seen;
  for (const std::string role : {"admin", "producer", "worker"}) {
    INFO("role " << role);
    // Every role has its line in the credentials, and that token authenticates as the role.
    std::istringstream lines(credentials_text);
    std::string l, token;
    while (std::getline(lines, l)) {
      std::istringstream words(l);
      std::string r, t;
      if (words >> r >> t && r == role) token = t;
    }
    REQUIRE_THAT(token, StartsWith("dsp_"));
    seen.insert(token);
    const auto* p = table.authenticate(token);
    REQUIRE(p != nullptr);
    CHECK(sec::to_string(p->who) == role);
    CHECK(p->all_projects());
    CHECK(p->label == role + "-initial");
    CHECK(tokens_text.find(token) == std::string::npos);  // only the hash is kept
    CHECK_THAT(tokens_text, Contains(sec::hash_text(token)));
    // The client side reads the same file for the same role.
    std::string resolve_error;
    CHECK(sec::resolve_client_token(*sec::parse_role(role), "", credentials, resolve_error) ==
          token);
  }
  CHECK(seen.size() == 3);

  // A second call changes nothing and hands out nothing.
  sec::first_start_result second;
  REQUIRE(sec::ensure_first_start_tokens(data, tokens, second, error));
  CHECK_FALSE(second.created);
  CHECK(second.credentials.empty());
  CHECK(read_text(tokens) == tokens_text);
  CHECK(read_text(credentials) == credentials_text);
}

TEST_CASE("first start replaces stale credentials when the tokens file is missing, and reports "
          "a directory it cannot use",
          "[security][credentials]") {
  temp_dir dir;
  const auto data = dir.path();
  write_text(data + "/credentials", "admin dsp_stale\n");
  sec::first_start_result r;
  std::string error;
  REQUIRE(sec::ensure_first_start_tokens(data, data + "/tokens", r, error));
  CHECK(r.created);
  CHECK(read_text(data + "/credentials").find("dsp_stale") == std::string::npos);
  CHECK(mode_of(data + "/credentials") == 0600);

  // A regular file where the data directory should be: nothing can be created under it.
  write_text(dir.path() + "/plain", "x");
  const auto bad = dir.path() + "/plain/data";
  sec::first_start_result failed;
  error.clear();
  CHECK_FALSE(sec::ensure_first_start_tokens(bad, bad + "/tokens", failed, error));
  CHECK_FALSE(failed.created);
  CHECK_THAT(error, Contains(bad));
}

TEST_CASE("client tokens come from the command line, a file, $DISPATCH_TOKEN, then "
          "./data/credentials",
          "[security][credentials]") {
  temp_dir dir;
  const auto roles_file = dir.path() + "/roles";
  write_text(roles_file, "# made by hand\n\nadmin dsp_file_admin\nworker dsp_file_worker\n");
  const auto bare_file = dir.path() + "/bare";
  write_text(bare_file, "# one token\n  dsp_bare  \n");
  // The default file, in a working directory of its own.
  const auto cwd = dir.path() + "/cwd";
  REQUIRE(::mkdir(cwd.c_str(), 0700) == 0);
  REQUIRE(::mkdir((cwd + "/data").c_str(), 0700) == 0);
  write_text(cwd + "/data/credentials", "admin dsp_default_admin\nproducer dsp_default_producer\n");
  const auto empty_cwd = dir.path() + "/empty";
  REQUIRE(::mkdir(empty_cwd.c_str(), 0700) == 0);

  const auto admin = sec::role::admin;
  const auto worker = sec::role::worker;
  const auto producer = sec::role::producer;
  std::string error;

  SECTION("an explicit token beats everything") {
    env_guard env("DISPATCH_TOKEN", "dsp_env");
    cwd_guard in(cwd);
    CHECK(sec::resolve_client_token(admin, "dsp_explicit", roles_file, error) == "dsp_explicit");
    CHECK(error.empty());
    // Even a token file that does not exist is not looked at.
    CHECK(sec::resolve_client_token(admin, "dsp_explicit", dir.path() + "/missing", error) ==
          "dsp_explicit");
    CHECK(error.empty());
  }
  SECTION("an explicit file beats the environment and the default file; its role line is taken") {
    env_guard env("DISPATCH_TOKEN", "dsp_env");
    cwd_guard in(cwd);
    CHECK(sec::resolve_client_token(admin, "", roles_file, error) == "dsp_file_admin");
    CHECK(sec::resolve_client_token(worker, "", roles_file, error) == "dsp_file_worker");
    CHECK(error.empty());
    // No producer line and no bare token: an error naming the file and the role.
    CHECK_FALSE(sec::resolve_client_token(producer, "", roles_file, error).has_value());
    CHECK_THAT(error, Contains(roles_file));
    CHECK_THAT(error, Contains("producer"));
    // A bare token serves every role.
    for (auto r : {admin, worker, producer}) {
      CHECK(sec::resolve_client_token(r, "", bare_file, error) == "dsp_bare");
      CHECK(error.empty());
    }
  }
  SECTION("a missing explicit file is an error, not a fall-through") {
    env_guard env("DISPATCH_TOKEN", "dsp_env");
    const auto missing = dir.path() + "/missing";
    CHECK_FALSE(sec::resolve_client_token(admin, "", missing, error).has_value());
    CHECK_THAT(error, Contains("cannot read token file " + missing));
  }
  SECTION("$DISPATCH_TOKEN beats the default file") {
    env_guard env("DISPATCH_TOKEN", "dsp_env");
    cwd_guard in(cwd);
    CHECK(sec::resolve_client_token(admin, "", "", error) == "dsp_env");
    CHECK(error.empty());
  }
  SECTION("an empty $DISPATCH_TOKEN counts as unset; then ./data/credentials, by role") {
    env_guard env("DISPATCH_TOKEN", "");
    cwd_guard in(cwd);
    CHECK(sec::resolve_client_token(admin, "", "", error) == "dsp_default_admin");
    CHECK(sec::resolve_client_token(producer, "", "", error) == "dsp_default_producer");
    CHECK(error.empty());
    CHECK_FALSE(sec::resolve_client_token(worker, "", "", error).has_value());
    CHECK_THAT(error, Contains("worker"));
  }
  SECTION("no source at all: no token and no error") {
    env_guard env("DISPATCH_TOKEN", nullptr);
    cwd_guard in(empty_cwd);
    error = "left over";
    CHECK_FALSE(sec::resolve_client_token(admin, "", "", error).has_value());
    CHECK(error.empty());
  }
}

// ---- authorization

TEST_CASE("each role may send its own messages and nothing else", "[security][authorization]") {
  const std::set<std::string> worker_messages = {"register",  "fetch",   "complete", "fail",
                                                 "heartbeat", "goodbye", "extend",   "report"};
  const std::set<std::string> producer_messages = {"submit", "status", "cancel", "tasks"};
  const auto worker = principal_of(sec::role::worker);
  const auto producer = principal_of(sec::role::producer);
  const auto admin = principal_of(sec::role::admin);
  std::set<std::string> names;
  for (const auto& body : all_bodies()) {
    const auto name = name_of(body);
    names.insert(name);
    INFO("message " << name);
    CHECK(dispatch::authorization_refusal(admin, body).empty());
    if (worker_messages.count(name)) {
      CHECK(dispatch::authorization_refusal(worker, body).empty());
    } else {
      CHECK(dispatch::authorization_refusal(worker, body) ==
            "the worker role may not send \"" + name + "\"");
    }
    if (producer_messages.count(name)) {
      CHECK(dispatch::authorization_refusal(producer, body).empty());
    } else {
      CHECK(dispatch::authorization_refusal(producer, body) ==
            "the producer role may not send \"" + name + "\"");
    }
  }
  // Every message named above exists (a renamed message must not slip through the rules).
  for (const auto& n : worker_messages) CHECK(names.count(n) == 1);
  for (const auto& n : producer_messages) CHECK(names.count(n) == 1);
  // Admin messages explicitly: a producer may not run the dispatcher.
  for (const auto& body : {protocol::request_body{protocol::get_stats{}},
                           protocol::request_body{protocol::list_workers{}},
                           protocol::request_body{protocol::pause_project{"p"}},
                           protocol::request_body{protocol::list_events{}},
                           protocol::request_body{protocol::retry_task{1}}}) {
    CHECK_FALSE(dispatch::authorization_refusal(producer, body).empty());
    CHECK_FALSE(dispatch::authorization_refusal(worker, body).empty());
  }
}

TEST_CASE("a producer limited to projects may use only those", "[security][authorization]") {
  const auto limited = principal_of(sec::role::producer, {"projA", "projC"});
  const auto any = principal_of(sec::role::producer);
  using dispatch::authorization_refusal;

  CHECK(authorization_refusal(limited, protocol::submit{{spec("projA")}}).empty());
  CHECK(authorization_refusal(limited, protocol::submit{{spec("projA"), spec("projC")}}).empty());
  CHECK(authorization_refusal(limited, protocol::submit{{spec("projB")}}) ==
        "this token may not use project \"projB\"");
  // One foreign task refuses the whole batch.
  CHECK(authorization_refusal(limited, protocol::submit{{spec("projA"), spec("projB")}}) ==
        "this token may not use project \"projB\"");
  CHECK(authorization_refusal(any, protocol::submit{{spec("projB")}}).empty());

  protocol::list_tasks q;
  CHECK_THAT(authorization_refusal(limited, q), Contains("limited to some projects"));
  CHECK(authorization_refusal(any, q).empty());
  q.project = "projA";
  CHECK(authorization_refusal(limited, q).empty());
  q.project = "projB";
  CHECK(authorization_refusal(limited, q) == "this token may not use project \"projB\"");

  // Tasks named by id are left to the dispatcher actor, which knows their project.
  CHECK(authorization_refusal(limited, protocol::get_task{42}).empty());
  CHECK(authorization_refusal(limited, protocol::cancel{42}).empty());
  // Still a producer: no admin or worker messages.
  CHECK_FALSE(authorization_refusal(limited, protocol::get_stats{}).empty());
  CHECK_FALSE(authorization_refusal(limited, protocol::fetch{}).empty());
}

// ---- request_limits

TEST_CASE("cap_page_sizes lowers fetch max and query limits to max-batch, and nothing else",
          "[security][limits]") {
  dispatch::request_limits limits;
  limits.max_batch = 3;
  protocol::request_body f = protocol::fetch{8, 100};
  dispatch::cap_page_sizes(f, limits);
  CHECK(std::get<protocol::fetch>(f).max == 3);
  CHECK(std::get<protocol::fetch>(f).wait_ms == 100);
  protocol::request_body t = protocol::list_tasks{};
  dispatch::cap_page_sizes(t, limits);
  CHECK(std::get<protocol::list_tasks>(t).limit == 3);
  protocol::request_body e = protocol::list_events{};
  dispatch::cap_page_sizes(e, limits);
  CHECK(std::get<protocol::list_events>(e).limit == 3);
  protocol::request_body small = protocol::fetch{2, 0};
  dispatch::cap_page_sizes(small, limits);
  CHECK(std::get<protocol::fetch>(small).max == 2);
}

TEST_CASE("limit_refusal names the field and the option of every limit", "[security][limits]") {
  dispatch::request_limits limits;
  limits.max_payload = 10;
  limits.max_batch = 3;
  limits.max_name = 5;
  limits.max_text = 8;
  limits.max_tags = 2;
  const auto refusal = [&](const protocol::request_body& b) {
    return dispatch::limit_refusal(b, limits);
  };
  const auto submit_of = [](protocol::task_spec s) { return protocol::submit{{std::move(s)}}; };

  struct limit_case {
    std::string what;
    protocol::request_body over;
    protocol::request_body at;  // the same at the limit: accepted
    std::string field;
    std::string option;
  };
  auto with = [](auto f) {
    auto s = spec("p");
    f(s);
    return protocol::submit{{s}};
  };
  protocol::register_worker reg_at;
  reg_at.worker = "w";
  reg_at.types = {"echo"};
  std::vector<limit_case> cases;
  cases.push_back({"payload", with([](auto& s) { s.payload = std::string(11, 'x'); }),
                   with([](auto& s) { s.payload = std::string(10, 'x'); }), "'tasks[0].payload'",
                   "--max-payload"});
  cases.push_back({"result", protocol::complete{1, 1, std::string(11, 'r')},
                   protocol::complete{1, 1, std::string(10, 'r')}, "'result'", "--max-payload"});
  {
    const auto report_of = [](std::size_t n, std::string result, std::string error) {
      protocol::report r;
      r.results.resize(n);
      r.results.back().result = std::move(result);
      r.results.front().error = std::move(error);
      return r;
    };
    cases.push_back(
        {"report size", report_of(4, "", ""), report_of(3, "", ""), "'results'", "--max-batch"});
    cases.push_back({"report result", report_of(2, std::string(11, 'r'), ""),
                     report_of(2, std::string(10, 'r'), ""), "'results[1].result'",
                     "--max-payload"});
    cases.push_back({"report error", report_of(2, "", std::string(9, 'e')),
                     report_of(2, "", std::string(8, 'e')), "'results[0].error'", "--max-text"});
  }
  {
    protocol::submit four{{spec("p"), spec("p"), spec("p"), spec("p")}};
    protocol::submit three{{spec("p"), spec("p"), spec("p")}};
    cases.push_back({"batch", four, three, "'tasks'", "--max-batch"});
  }
  cases.push_back({"project", submit_of(spec("projec")), submit_of(spec("proje")),
                   "'tasks[0].project'", "--max-name"});
  cases.push_back({"type", with([](auto& s) { s.type = "abcdef"; }),
                   with([](auto& s) { s.type = "abcde"; }), "'tasks[0].type'", "--max-name"});
  {
    auto over = reg_at;
    over.worker = "worker";
    auto at = reg_at;
    at.worker = "workr";
    cases.push_back({"worker name", over, at, "'worker'", "--max-name"});
  }
  cases.push_back({"task tag count", with([](auto& s) { s.tags = {"a", "b", "c"}; }),
                   with([](auto& s) { s.tags = {"a", "b"}; }), "'tasks[0].tags'", "--max-tags"});
  cases.push_back({"task tag name", with([](auto& s) { s.tags = {"a", "longer"}; }),
                   with([](auto& s) { s.tags = {"a", "longr"}; }), "'tasks[0].tags[1]'",
                   "--max-name"});
  {
    auto over = reg_at, at = reg_at;
    over.tags = {"a", "b", "c"};
    at.tags = {"a", "b"};
    cases.push_back({"worker tag count", over, at, "'tags'", "--max-tags"});
    over = reg_at;
    at = reg_at;
    over.types = {"a", "b", "c"};
    at.types = {"a", "b"};
    cases.push_back({"worker type count", over, at, "'types'", "--max-tags"});
    over = reg_at;
    at = reg_at;
    over.types = {"toolong"};
    at.types = {"short"};
    cases.push_back({"worker type name", over, at, "'types[0]'", "--max-name"});
  }
  cases.push_back({"title", with([](auto& s) { s.title = std::string(9, 't'); }),
                   with([](auto& s) { s.title = std::string(8, 't'); }), "'tasks[0].title'",
                   "--max-text"});
  cases.push_back({"description", with([](auto& s) { s.description = std::string(9, 'd'); }),
                   with([](auto& s) { s.description = std::string(8, 'd'); }),
                   "'tasks[0].description'", "--max-text"});
  cases.push_back({"fail error", protocol::fail{1, 1, std::string(9, 'e'), true},
                   protocol::fail{1, 1, std::string(8, 'e'), true}, "'error'", "--max-text"});
  {
    protocol::list_tasks over, at;
    over.text = std::string(9, 's');
    at.text = std::string(8, 's');
    cases.push_back({"search text", over, at, "'text'", "--max-text"});
  }
  {
    // The limits apply to every task of a batch, not only the first.
    protocol::submit over{{spec("p"), spec("p")}};
    over.tasks[1].payload = std::string(11, 'x');
    cases.push_back({"second task's payload", over, protocol::submit{{spec("p"), spec("p")}},
                     "'tasks[1].payload'", "--max-payload"});
  }

  for (const auto& c : cases) {
    INFO(c.what);
    const auto why = refusal(c.over);
    CHECK_THAT(why, StartsWith("field " + c.field + ": "));
    CHECK_THAT(why, Contains("(" + c.option + ")"));
    CHECK(refusal(c.at).empty());
  }
  // The message carries the size and the limit.
  CHECK(refusal(with([](auto& s) { s.payload = std::string(11, 'x'); })) ==
        "field 'tasks[0].payload': 11 bytes exceeds the limit of 10 (--max-payload)");
  CHECK(refusal(protocol::submit{{spec("p"), spec("p"), spec("p"), spec("p")}}) ==
        "field 'tasks': 4 entries exceed the limit of 3 (--max-batch)");
  // Messages with nothing to limit pass (page sizes are capped, not refused: see below), and the
  // defaults pass an ordinary request.
  for (const auto& body : all_bodies()) {
    INFO(name_of(body));
    CHECK(refusal(body).empty());
  }
  CHECK(dispatch::limit_refusal(protocol::submit{{spec("p")}}, dispatch::request_limits{}).empty());
}

// ---- peer_limiter

TEST_CASE("peer_limiter: a burst of `rate` messages, then rate_limited until it refills",
          "[security][peers]") {
  using dispatch::admission;
  dispatch::peer_limiter limiter({10, 100, 60s});
  const auto t0 = dispatch::peer_limiter::clock::time_point{} + 1h;
  for (int i = 0; i < 10; ++i) REQUIRE(limiter.admit("a", t0) == admission::admitted);
  CHECK(limiter.admit("a", t0) == admission::rate_limited);
  CHECK(limiter.admit("a", t0 + 50ms) == admission::rate_limited);  // half a message refilled
  // Another peer has a bucket of its own.
  CHECK(limiter.admit("b", t0) == admission::admitted);
  // 100 ms at 10/s: one more message (50 ms of it accrued above).
  CHECK(limiter.admit("a", t0 + 100ms) == admission::admitted);
  CHECK(limiter.admit("a", t0 + 100ms) == admission::rate_limited);
  // A long pause refills to the burst, and no further.
  const auto t1 = t0 + 10s;
  for (int i = 0; i < 10; ++i) REQUIRE(limiter.admit("a", t1) == admission::admitted);
  CHECK(limiter.admit("a", t1) == admission::rate_limited);
  // Steady traffic at the rate is always admitted.
  for (int i = 1; i <= 50; ++i) REQUIRE(limiter.admit("a", t1 + i * 100ms) == admission::admitted);
}

TEST_CASE("peer_limiter: rate 0 is unlimited", "[security][peers]") {
  dispatch::peer_limiter limiter({0, 100, 60s});
  const auto t0 = dispatch::peer_limiter::clock::time_point{} + 1h;
  for (int i = 0; i < 10000; ++i)
    REQUIRE(limiter.admit("a", t0) == dispatch::admission::admitted);
}

TEST_CASE("peer_limiter: too_many_peers at the cap, known peers carry on", "[security][peers]") {
  using dispatch::admission;
  dispatch::peer_limiter limiter({1000, 2, 60s});
  const auto t0 = dispatch::peer_limiter::clock::time_point{} + 1h;
  CHECK(limiter.admit("a", t0) == admission::admitted);
  CHECK(limiter.admit("b", t0) == admission::admitted);
  CHECK(limiter.peers() == 2);
  CHECK(limiter.admit("c", t0) == admission::too_many_peers);
  CHECK(limiter.admit("c", t0 + 10ms) == admission::too_many_peers);
  CHECK(limiter.peers() == 2);  // a refused peer takes no slot
  CHECK(limiter.admit("a", t0 + 20ms) == admission::admitted);
  CHECK(limiter.admit("b", t0 + 20ms) == admission::admitted);
}

TEST_CASE("peer_limiter: peers silent for `idle` are forgotten and free their slot",
          "[security][peers]") {
  using dispatch::admission;
  dispatch::peer_limiter limiter({1000, 2, 500ms});
  const auto t0 = dispatch::peer_limiter::clock::time_point{} + 1h;
  CHECK(limiter.admit("a", t0) == admission::admitted);
  CHECK(limiter.admit("b", t0) == admission::admitted);
  // "a" keeps talking, "b" falls silent.
  for (auto t = t0 + 200ms; t <= t0 + 1200ms; t += 200ms)
    REQUIRE(limiter.admit("a", t) == admission::admitted);
  // Idle peers are swept at most once a second, so by `idle` + 1 s "b" is gone, "a" is not.
  const auto later = t0 + 1500ms;
  CHECK(limiter.admit("c", later) == admission::admitted);
  CHECK(limiter.peers() == 2);
  CHECK(limiter.admit("d", later) == admission::too_many_peers);
  CHECK(limiter.admit("a", later) == admission::admitted);
  // A forgotten peer that comes back is a new peer, with a full bucket, if there is room.
  CHECK(limiter.admit("b", later) == admission::too_many_peers);
  CHECK(limiter.admit("b", later + 10s) == admission::admitted);
  CHECK(limiter.peers() == 1);  // a and c were silent for 10 s
}

// The bucket holds at least one message, or a --max-rate below 1 would admit nothing, ever.
TEST_CASE("peer_limiter: a rate below one message a second still admits messages",
          "[security][peers]") {
  dispatch::peer_limiter limiter({0.5, 100, 60s});
  const auto t0 = dispatch::peer_limiter::clock::time_point{} + 1h;
  int admitted = 0;
  for (int i = 0; i < 20; ++i)  // one message a second for 20 s: about 10 fit the rate
    if (limiter.admit("a", t0 + i * 1s) == dispatch::admission::admitted) ++admitted;
  CHECK(admitted >= 9);
}
