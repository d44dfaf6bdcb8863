#include "dispatcher/daemon_tokens.hpp"

#include <cstdio>

#include <spdlog/spdlog.h>

#include "security/credentials_file.hpp"

namespace dispatch {

bool load_daemon_tokens(const daemon_config& cfg, security::token_table& out, std::string& error) {
  // Only the default file is made: a file the operator named and that is missing is a mistake
  // to report, not something to paper over with new tokens.
  if (cfg.tokens_file == cfg.data_dir + "/tokens") {
    security::first_start_result first;
    if (!security::ensure_first_start_tokens(cfg.data_dir, cfg.tokens_file, first, error))
      return false;
    if (first.created) {
      // Printed once, to stdout and not the log, so that log shipping never carries them.
      std::printf(
          "First start: made one token per role. They are in %s/credentials (readable only by "
          "this user);\nthe dispatcher keeps only their hashes, in %s.\n%s\n",
          cfg.data_dir.c_str(), cfg.tokens_file.c_str(), first.credentials.c_str());
      std::fflush(stdout);
    }
  }
  if (!out.add_file(cfg.tokens_file, error)) return false;
  for (const auto& line : cfg.token_hashes)
    if (!out.add_text(line, "--token-hash", error)) return false;
  if (out.size() == 0) {
    error = "authentication is on but no token is configured (add lines to " + cfg.tokens_file +
            ", or run with --auth off)";
    return false;
  }
  spdlog::info("authentication on: {} tokens accepted", out.size());
  return true;
}

}  // namespace dispatch
