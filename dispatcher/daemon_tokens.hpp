// The tokens dispatcherd accepts: the tokens file (made with fresh tokens on a first start when
// it is the default one and missing) plus every --token-hash.
#pragma once

#include <string>

#include "dispatcher/daemon_config.hpp"
#include "security/token_table.hpp"

namespace dispatch {

// False with `error` set when the tokens cannot be read, or none is configured: a daemon with
// authentication on and no token would refuse everyone, which is never what was meant.
bool load_daemon_tokens(const daemon_config& cfg, security::token_table& out, std::string& error);

}  // namespace dispatch
