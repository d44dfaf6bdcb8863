#include "bench/support/beanstalkd_server.hpp"

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "bench/support/beanstalk_client.hpp"

namespace dispatch::bench {

beanstalkd_server::beanstalkd_server() : scratch_("beanstalkd-bench") {
  if (::access(beanstalkd_path, X_OK) != 0)
    throw std::runtime_error(std::string(beanstalkd_path) +
                             " not found (scripts/bench.sh installs the Debian package)");
  port_ = free_ports(1)[0];
  const std::string binlog = scratch_.path() + "/binlog";
  std::filesystem::create_directories(binlog);
  process_ = std::make_unique<child_process>(
      std::vector<std::string>{beanstalkd_path, "-l", "127.0.0.1", "-p", std::to_string(port_),
                               "-b", binlog},
      scratch_.path() + "/beanstalkd.log");
  const bool ready = wait_until(
      [&] {
        if (!process_->running()) return true;
        try {
          beanstalk_connection probe(port_);
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      std::chrono::seconds(10));
  if (!ready || !process_->running())
    throw std::runtime_error("beanstalkd did not start:\n" + process_->log_tail());
}

}  // namespace dispatch::bench
