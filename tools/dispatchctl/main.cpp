// dispatchctl: command line client for the dispatcher's admin endpoint.
// All logic lives in the dispatch_ctl library; this only wires it to the process.
#include <iostream>

#include <zmq.hpp>

#include "dispatchctl/admin_client.hpp"
#include "dispatchctl/cli.hpp"
#include "dispatchctl/commands.hpp"
#include "dispatchctl/credential_commands.hpp"
#include "dispatchctl/watch.hpp"
#include "security/credentials_file.hpp"

int main(int argc, char** argv) {
  using namespace dispatch::ctl;
  const parse_result parsed = parse_args(argc, argv);
  if (!parsed.run) {
    std::cout << parsed.out;
    std::cerr << parsed.err;
    return parsed.exit_code;
  }
  invocation run = *parsed.run;
  try {
    if (run.new_token) return run_new_token(*run.new_token, run.json, std::cout);
    if (run.keygen) return run_keygen(*run.keygen, run.json, std::cout, std::cerr);
    std::string credential_error;
    auto token = dispatch::security::resolve_client_token(dispatch::security::role::admin,
                                                          run.token, run.token_file, credential_error);
    if (!token && !credential_error.empty()) {
      std::cerr << "dispatchctl: " << credential_error << "\n";
      return exit_usage;
    }
    run.token = token.value_or("");
    if (!run.curve_secret_key.empty()) {
      run.curve_keys.emplace();
      if (!dispatch::security::load_curve_client_keys(run.curve_secret_key, run.curve_server_key,
                                                      *run.curve_keys, credential_error)) {
        std::cerr << "dispatchctl: " << credential_error << "\n";
        return exit_usage;
      }
    }
    // Before any context exists: watch blocks signals first and makes its own (see watch.hpp).
    if (run.watch) return run_watch(run, std::cout, std::cerr);
    zmq::context_t context;
    // Declared after the context so the socket closes first (linger 0, so no wait).
    admin_client client(context, run.endpoint, run.timeout, run.token, run.curve_keys);
    return execute(run, client, std::cout, std::cerr);
  } catch (const std::exception& e) {
    // Only an unforeseen zmq failure lands here; still report it rather than abort.
    std::cerr << "dispatchctl: " << e.what() << "\n";
    return exit_failure;
  }
}
