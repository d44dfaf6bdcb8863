// dispatchctl: command line client for the dispatcher's admin endpoint.
// All logic lives in the dispatch_ctl library; this only wires it to the process.
#include <iostream>

#include <zmq.hpp>

#include "dispatchctl/admin_client.hpp"
#include "dispatchctl/cli.hpp"
#include "dispatchctl/commands.hpp"
#include "dispatchctl/watch.hpp"

int main(int argc, char** argv) {
  using namespace dispatch::ctl;
  const parse_result parsed = parse_args(argc, argv);
  if (!parsed.run) {
    std::cout << parsed.out;
    std::cerr << parsed.err;
    return parsed.exit_code;
  }
  try {
    // Before any context exists: watch blocks signals first and makes its own (see watch.hpp).
    if (parsed.run->watch) return run_watch(*parsed.run, std::cout, std::cerr);
    zmq::context_t context;
    // Declared after the context so the socket closes first (linger 0, so no wait).
    admin_client client(context, parsed.run->endpoint, parsed.run->timeout);
    return execute(*parsed.run, client, std::cout, std::cerr);
  } catch (const std::exception& e) {
    // Only an unforeseen zmq failure lands here; still report it rather than abort.
    std::cerr << "dispatchctl: " << e.what() << "\n";
    return exit_failure;
  }
}
