// The commands that make credentials locally and send nothing: `token` (and `keygen`).
#pragma once

#include <ostream>

#include "dispatchctl/cli.hpp"

namespace dispatch::ctl {

// Prints a fresh token and the tokens-file line that accepts it. Returns an exit code.
int run_new_token(const new_token_options& options, bool json, std::ostream& out);
// Writes a CURVE key pair and prints the public key. Returns an exit code.
int run_keygen(const keygen_options& options, bool json, std::ostream& out, std::ostream& err);

}  // namespace dispatch::ctl
