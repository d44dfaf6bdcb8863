// Where tokens come from on each side.
//
// The daemon: on a fresh install it makes one token per role, keeps their hashes in
// <data-dir>/tokens, and hands the tokens themselves to local clients in
// <data-dir>/credentials. Both files are created owner-only (0600) and never rewritten.
//
// The clients (dispatchctl, worker-agent, the demo): a token given on the command line, else a
// token file given on the command line, else $DISPATCH_TOKEN, else ./data/credentials when it
// exists. A token file is either one token, or lines "<role> <token>" of which the client's own
// role is taken (the form of <data-dir>/credentials).
#pragma once

#include <optional>
#include <string>

#include "security/role.hpp"

namespace dispatch::security {

constexpr const char* default_credentials_path = "./data/credentials";
constexpr const char* token_environment_variable = "DISPATCH_TOKEN";

struct first_start_result {
  bool created = false;       // false: the tokens file was already there, nothing written
  std::string credentials;    // created only: the text written to the credentials file
};

// Makes the two files above in `data_dir` when `tokens_path` does not exist yet. Returns false
// with `error` set when it cannot (the daemon must then not start: it would run without tokens).
bool ensure_first_start_tokens(const std::string& data_dir, const std::string& tokens_path,
                               first_start_result& out, std::string& error);

// The token for a client acting as `as`, from the sources in the order above. Returns nullopt
// with an empty `error` when no source has one (the request then goes out without a token), and
// nullopt with `error` set when a named file cannot be read or has no token for the role.
std::optional<std::string> resolve_client_token(role as, const std::string& explicit_token,
                                                const std::string& explicit_file,
                                                std::string& error);

}  // namespace dispatch::security
