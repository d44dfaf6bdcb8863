#include "dispatchctl/credential_commands.hpp"

#include <nlohmann/json.hpp>

#include "security/curve_keys.hpp"
#include "security/token_hash.hpp"
#include "security/token_table.hpp"

namespace dispatch::ctl {

int run_new_token(const new_token_options& options, bool json, std::ostream& out) {
  security::principal who;
  who.who = *security::parse_role(options.role);  // the parser accepted only known roles
  who.projects = options.projects;
  who.label = options.label;
  const std::string token = security::generate_token();
  const std::string line = security::token_line(who, token);
  if (json) {
    out << nlohmann::json{{"token", token}, {"line", line}}.dump() << "\n";
  } else {
    out << "token: " << token << "\n"
        << "Add this line to the dispatcher's tokens file (it holds only the hash):\n"
        << line << "\n";
  }
  return exit_ok;
}

int run_keygen(const keygen_options& options, bool json, std::ostream& out, std::ostream& err) {
  security::curve_key_pair pair;
  std::string error;
  if (!security::generate_key_pair(pair, error) ||
      !security::write_key_pair(options.prefix, pair,
                                options.force ? security::overwrite::replace
                                              : security::overwrite::refuse,
                                error)) {
    err << "dispatchctl: keygen: " << error << "\n";
    return exit_failure;
  }
  if (json) {
    out << nlohmann::json{{"public_key", pair.public_key},
                          {"secret_key_file", options.prefix + ".key"},
                          {"public_key_file", options.prefix + ".pub"}}
               .dump()
        << "\n";
  } else {
    out << "public key: " << pair.public_key << "\n"
        << "wrote " << options.prefix << ".key (secret, owner only) and " << options.prefix
        << ".pub\n";
  }
  return exit_ok;
}

}  // namespace dispatch::ctl
