// The command line of dispatchctl, parsed into the request to send and how to show the reply.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dispatchctl/watch.hpp"
#include "protocol/messages.hpp"
#include "security/curve_keys.hpp"

namespace dispatch::ctl {

// Exit codes are part of the interface: scripts tell a typo (2) from a failed request (1).
constexpr int exit_ok = 0;
constexpr int exit_failure = 1;  // the dispatcher refused, or could not be reached
constexpr int exit_usage = 2;    // the command line was wrong

constexpr const char* default_endpoint = "tcp://127.0.0.1:5556";

// report: how the rows and totals are written (see commands.hpp), and the `tasks` page size it
// asks for: large enough that few round trips are needed, small enough for a quick reply.
enum class report_format { csv, json };
constexpr std::uint32_t report_page_size = 1000;
struct report_options {
  report_format format = report_format::csv;
};

// Everything a run needs. The request variant alternative names the command, so there is
// no separate command enum to keep in sync with it.
// "token": make a new token locally (nothing is sent) and print it with its tokens-file line.
struct new_token_options {
  std::string role;                   // admin, producer or worker
  std::vector<std::string> projects;  // producer only; empty = every project
  std::string label;
};

// "keygen": make a CURVE key pair locally, PREFIX.key (secret, 0600) and PREFIX.pub.
struct keygen_options {
  std::string prefix;
  bool force = false;  // replace existing files
};

struct invocation {
  std::string endpoint = default_endpoint;
  // Credentials as given; main() resolves them (files, environment) so parsing stays pure.
  std::string token;
  std::string token_file;
  // CURVE: the client's secret key file and the dispatcher's public key (file or Z85 text).
  std::string curve_secret_key;
  std::string curve_server_key;
  // Filled by main() from the two files above; parse_args leaves it empty.
  std::optional<security::curve_client_keys> curve_keys;
  std::chrono::milliseconds timeout{3000};
  bool json = false;
  protocol::request_body request;
  // Set for "watch", which follows the event stream instead of sending `request`.
  std::optional<watch_options> watch;
  // tasks --all: follow the reply's `next` to the end, printing each page as it arrives.
  bool all_pages = false;
  // Set for "report", which pages through `request` (a `tasks` query) and prints rows.
  std::optional<report_options> report;
  // Set for the local commands, which send nothing.
  std::optional<new_token_options> new_token;
  std::optional<keygen_options> keygen;
};

// Either something to run, or an exit code with the text the parser produced (help on
// stdout, a usage error on stderr). Nothing is printed by parse_args itself, so tests and
// main() decide where the text goes.
struct parse_result {
  std::optional<invocation> run;
  int exit_code = exit_ok;  // meaningful only when `run` is empty
  std::string out;
  std::string err;
};

parse_result parse_args(int argc, const char* const* argv);
// The same, with the wall clock fixed at `now` (ms since the epoch): "--deadline +10s" is
// counted from it. Lets tests check relative times exactly.
parse_result parse_args(int argc, const char* const* argv, millis now);

}  // namespace dispatch::ctl
