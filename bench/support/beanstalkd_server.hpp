// A beanstalkd process for the comparison: loopback, a free port, binlog on in a fresh
// directory (so it persists jobs, as dispatcherd does), ready once it accepts a connection.
#pragma once

#include <memory>
#include <string>

#include "bench/support/process.hpp"

namespace dispatch::bench {

constexpr const char* beanstalkd_path = "/usr/bin/beanstalkd";

class beanstalkd_server {
 public:
  beanstalkd_server();  // throws if beanstalkd is missing or does not start
  int port() const { return port_; }

 private:
  scratch_dir scratch_;
  int port_ = 0;
  std::unique_ptr<child_process> process_;
};

}  // namespace dispatch::bench
