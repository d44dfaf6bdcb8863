// libFuzzer target for dispatchctl's command line (the admin query parser) and the time and
// duration spellings it accepts. The fuzz bytes become an argv: arguments separated by '\n' or NUL
// (a C argument cannot hold a NUL anyway), "dispatchctl" in front, at most max_args of them.
// Built with ASan and UBSan and run by scripts/fuzz.sh admin; the seeds are admin_corpus/.
//
// What must hold for any argv (each checked below; see tools/dispatchctl/cli.cpp for why):
//  * parse_args returns: no exception escapes, no crash, no undefined behaviour.
//  * Without a run, the exit code is 0 (help on `out`, nothing on `err`) or 2 (a message on
//    `err` starting "dispatchctl: ", nothing on `out`).
//  * With a run: exit code 0 and no text; the reply timeout is positive; CURVE key options come
//    in pairs; `watch`, `token` and `keygen` runs carry no request and no report (one command at
//    a time); every other run carries an admin or producer request whose values are inside the
//    bounds the validators promise (ids >= 1, limit 1..10000, lease 1 ms..1 week, times > 0,
//    report range non-empty, no empty tag or event kind, ...).
//  * That request, with the --token given, encodes; the dispatcher's decoder takes it back unless
//    a name (project, type, worker, tag), max_attempts or the token is outside the protocol's
//    bounds, which dispatchctl leaves to the dispatcher to refuse (see leaves_to_dispatcher); a
//    refusal is then bad_field, never malformed. What decodes re-encodes to the same bytes.
//  * Every argument that parses as a time or a duration formats and parses back to the same value;
//    an RFC 3339 time formats to its own canonical spelling.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dispatchctl/cli.hpp"
#include "dispatchctl/time_format.hpp"
#include "protocol/codec.hpp"
#include "protocol/duration.hpp"

namespace {

using namespace dispatch;
namespace proto = dispatch::protocol;

// 2026-11-21T05:40:25.123Z: a fixed clock, so that a crash reproduces from its input alone.
constexpr millis fixed_now = 1795239625123;
// More arguments than any real command line has; keeps one input from running for long.
constexpr std::size_t max_args = 64;
// The protocol's bounds (docs/PROTOCOL.md) that dispatchctl does not check itself.
constexpr std::size_t max_name = 128;
constexpr std::size_t max_tags = 32;
constexpr std::uint32_t max_attempts_limit = 1000;
constexpr std::int64_t max_lease_ms = 7LL * 24 * 3600 * 1000;
// 10000-01-01T00:00:00Z: RFC 3339 as parse_rfc3339 reads it ends in year 9999.
constexpr millis end_of_year_9999 = 253402300800000;

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "admin_parser_fuzz: invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

void require(bool ok, const char* what, const std::string& detail = {}) {
  if (!ok) fail(what, detail);
}

bool name_ok(const std::string& s) { return !s.empty() && s.size() <= max_name; }
bool name_ok(const std::optional<std::string>& s) { return !s || name_ok(*s); }

// True when the request holds a value that dispatchctl accepts but the protocol does not: names
// outside 1..128 bytes, more than 32 tags, max_attempts above 1000, a --token above 256 bytes.
// The dispatcher answers those with bad_field (exit status 1), so they are a usability gap rather
// than a safety one; were cli.cpp to check them itself, this would simply never return true.
bool leaves_to_dispatcher(const std::string& token, const proto::request_body& body) {
  if (token.size() > proto::max_token_bytes) return true;
  if (const auto* s = std::get_if<proto::submit>(&body)) {
    for (const auto& t : s->tasks) {
      if (!name_ok(t.project) || !name_ok(t.type) || t.tags.size() > max_tags ||
          t.max_attempts > max_attempts_limit)
        return true;
      for (const auto& tag : t.tags)
        if (!name_ok(tag)) return true;
    }
    return false;
  }
  if (const auto* l = std::get_if<proto::list_tasks>(&body))
    return !name_ok(l->project) || !name_ok(l->type) || !name_ok(l->worker);
  if (const auto* p = std::get_if<proto::pause_project>(&body)) return !name_ok(p->project);
  if (const auto* p = std::get_if<proto::resume_project>(&body)) return !name_ok(p->project);
  if (const auto* c = std::get_if<proto::configure_project>(&body)) return !name_ok(c->project);
  if (const auto* o = std::get_if<proto::worker_order>(&body)) return !name_ok(o->worker);
  if (const auto* p = std::get_if<proto::set_pool>(&body)) return !name_ok(p->worker);
  return false;
}

// The bounds cli.cpp's validators and its conversion code guarantee for each command.
void check_request_values(const ctl::invocation& inv) {
  const auto& body = inv.request;
  require(!inv.all_pages || std::holds_alternative<proto::list_tasks>(body),
          "--all without a tasks query");
  if (const auto* s = std::get_if<proto::submit>(&body)) {
    require(s->tasks.size() == 1, "submit sends one task");
    const auto& t = s->tasks.front();
    require(t.max_attempts >= 1, "max_attempts >= 1");
    require(t.timeout_ms >= 1 && t.timeout_ms <= max_lease_ms, "timeout_ms in 1..1 week");
    require(t.delay_ms <= max_lease_ms, "delay_ms <= 1 week");
    require(t.run_at >= 0 && t.deadline >= 0, "times not negative");
    require(t.run_at == 0 || t.delay_ms == 0, "--run-at excludes --delay");
    for (const auto& tag : t.tags) require(!tag.empty(), "no empty tag");
    require(t.idempotency_key.size() <= 256, "idempotency key <= 256 bytes");
    require(t.title.size() <= 256 && t.description.size() <= 4096, "title / description size");
  } else if (const auto* l = std::get_if<proto::list_tasks>(&body)) {
    require(l->limit >= 1 && l->limit <= 10000, "limit in 1..10000");
    require(l->created_from >= 0 && l->created_to >= 0 && l->finished_from >= 0 &&
                l->finished_to >= 0,
            "time bounds not negative");
    require(l->text.size() <= 256, "text <= 256 bytes");
    if (inv.report) {
      require(l->oldest_first && l->limit == ctl::report_page_size, "report pages oldest first");
      require(l->finished_from > 0 && l->finished_to > l->finished_from,
              "report range is non-empty");
      require(!inv.all_pages, "report is not tasks --all");
    }
  } else if (const auto* c = std::get_if<proto::configure_project>(&body)) {
    require(!c->max_inflight || *c->max_inflight <= 1000000, "max_inflight <= 1000000");
    require(!c->weight || (*c->weight >= 1 && *c->weight <= 1000), "weight in 1..1000");
  } else if (const auto* o = std::get_if<proto::worker_order>(&body)) {
    require(o->order == "drain" || o->order == "stop" || o->order == "resume", "order name");
  } else if (const auto* g = std::get_if<proto::get_task>(&body)) {
    require(g->task >= 1, "task id >= 1");
  } else if (const auto* c = std::get_if<proto::cancel>(&body)) {
    require(c->task >= 1, "task id >= 1");
  } else if (const auto* r = std::get_if<proto::retry_task>(&body)) {
    require(r->task >= 1, "task id >= 1");
  } else if (const auto* r = std::get_if<proto::remove_task>(&body)) {
    require(r->task >= 1, "task id >= 1");
  } else {
    require(std::holds_alternative<proto::list_workers>(body) ||
                std::holds_alternative<proto::list_projects>(body) ||
                std::holds_alternative<proto::get_stats>(body) ||
                std::holds_alternative<proto::pause_project>(body) ||
                std::holds_alternative<proto::resume_project>(body) ||
                std::holds_alternative<proto::set_pool>(body),
            "a request dispatchctl sends (not a worker message)");
  }
  require(!inv.report || std::holds_alternative<proto::list_tasks>(body), "report is a query");
}

// The request goes through the real codec, as it would on the wire to dispatcherd.
void check_wire(const std::string& token, const proto::request_body& body) {
  proto::request sent;
  sent.id = 7;
  sent.token = token;  // as --token gives it (main() may take it from a file or $DISPATCH_TOKEN)
  sent.body = body;
  std::string bytes;
  proto::encode(sent, bytes);
  proto::request received;
  proto::decode_failure why;
  const bool decoded = proto::decode(bytes, received, why);
  if (leaves_to_dispatcher(token, body)) {
    require(!decoded, "out-of-bounds name or max_attempts was accepted by the decoder");
    require(why.code == proto::error_code::bad_field && why.request_id == 7,
            "refused as bad_field with the request id", why.message);
    return;
  }
  require(decoded, "dispatchctl's request does not decode", why.message);
  require(received.id == 7 && received.token == token && received.body.index() == body.index(),
          "same id, token and message");
  std::string again;
  proto::encode(received, again);
  require(again == bytes, "decoded request re-encodes differently");
}

void check_parse(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) argv.push_back(a.c_str());
  ctl::parse_result r;
  try {
    r = ctl::parse_args(static_cast<int>(argv.size()), argv.data(), fixed_now);
  } catch (const std::exception& e) {
    fail("parse_args threw", e.what());
  } catch (...) {
    fail("parse_args threw a non-std exception");
  }

  if (!r.run) {
    if (r.exit_code == ctl::exit_ok) {
      require(!r.out.empty() && r.err.empty(), "exit 0 without a run is help on stdout");
    } else {
      require(r.exit_code == ctl::exit_usage, "exit code 0 or 2 without a run",
              std::to_string(r.exit_code));
      require(r.out.empty() && r.err.rfind("dispatchctl: ", 0) == 0,
              "usage error names dispatchctl on stderr", r.err);
    }
    return;
  }
  require(r.exit_code == ctl::exit_ok && r.out.empty() && r.err.empty(), "a run has no text");
  const auto& inv = *r.run;
  require(inv.timeout.count() > 0, "reply timeout > 0");
  require((inv.watch ? 1 : 0) + (inv.new_token ? 1 : 0) + (inv.keygen ? 1 : 0) <= 1,
          "one command at a time");
  require(inv.curve_secret_key.empty() == inv.curve_server_key.empty(),
          "CURVE keys come in pairs");
  require(!inv.curve_keys, "key files are main()'s to read, not the parser's");
  if (inv.watch) {
    require(!inv.report && !inv.all_pages, "watch is only watch");
    for (const auto& kind : inv.watch->types) require(!kind.empty(), "no empty event kind");
    return;  // watch sends no `request` (it stays default-constructed)
  }
  if (inv.keygen) {  // "keygen": made locally, nothing is sent
    require(!inv.report && !inv.all_pages, "keygen is only keygen");
    return;
  }
  if (inv.new_token) {  // "token": made locally, nothing is sent
    const auto& t = *inv.new_token;
    require(!inv.report && !inv.all_pages, "token is only token");
    require(t.role == "admin" || t.role == "producer" || t.role == "worker", "token role", t.role);
    require(t.projects.empty() || t.role == "producer", "--projects only for producer tokens");
    for (const auto& p : t.projects) require(!p.empty(), "no empty project scope");
    return;
  }
  check_request_values(inv);
  check_wire(inv.token, inv.request);
}

// Times and durations, in every spelling the command line takes, against their formatters.
void check_time_text(std::string_view text) {
  if (const auto t = ctl::parse_rfc3339(text)) {
    require(*t > 0 && *t < end_of_year_9999, "RFC 3339 time in range", std::string(text));
    const auto shown = ctl::format_rfc3339(*t);
    require(shown.has_value(), "a parsed time formats");
    require(ctl::parse_rfc3339(*shown) == t, "format then parse is the same time", *shown);
    // The canonical spelling: upper case, the fraction cut or padded to milliseconds.
    std::string canonical(text.substr(0, 19));
    canonical[10] = 'T';
    std::string fraction = "000";
    if (text[19] == '.')
      for (std::size_t i = 0; i < 3 && 20 + i < text.size() - 1; ++i) fraction[i] = text[20 + i];
    canonical += "." + fraction + "Z";
    require(*shown == canonical, "formats to its canonical spelling", *shown + " vs " + canonical);
  }
  for (const bool relative : {false, true}) {
    if (const auto t = ctl::parse_time_arg(text, fixed_now, relative)) {
      require(*t > 0, "a time argument is after the epoch", std::string(text));
      if (!text.empty() && text.front() == '+')
        require(relative && *t > fixed_now, "+DURATION only when allowed, and in the future");
    }
  }
  if (const auto t = ctl::parse_time_filter(text, fixed_now))
    require(*t > 0, "a time filter is after the epoch (0 is open)", std::string(text));
  if (const auto d = parse_duration(text)) {
    require(d->count() >= 0, "durations are not negative");
    require(parse_duration(format_duration(*d)) == d, "duration format then parse",
            format_duration(*d));
  }
}

// Any ms value: formatting must not misbehave, and inside RFC 3339's years it must parse back.
void check_time_value(millis t) {
  const auto shown = ctl::format_rfc3339(t);
  if (t == 0) require(!shown, "0 is unset");
  if (t > 0 && t < end_of_year_9999) {
    require(shown.has_value(), "a time in range formats");
    require(ctl::parse_rfc3339(*shown) == t, "format then parse", *shown);
  }
  if (t >= 0) {
    const std::chrono::milliseconds d(t);
    require(parse_duration(format_duration(d)) == d, "duration format then parse");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // Empty input: no arguments at all. A trailing separator ends the last argument; it does not
  // start an empty one (an empty argument is two separators in a row, or one at the start).
  std::vector<std::string> args{"dispatchctl"};
  std::size_t start = 0;
  while (start < bytes.size() && args.size() < max_args) {
    std::size_t end = start;
    while (end < bytes.size() && bytes[end] != '\n' && bytes[end] != '\0') ++end;
    args.emplace_back(bytes.substr(start, end - start));
    start = end + 1;
  }

  check_parse(args);
  for (std::size_t i = 1; i < args.size(); ++i) check_time_text(args[i]);

  if (size >= sizeof(std::int64_t)) {
    std::int64_t t;
    std::memcpy(&t, data, sizeof t);
    check_time_value(t);
  }
  return 0;
}
