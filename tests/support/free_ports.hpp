// Free loopback ports for programs that start real daemons (integration tests, benchmarks).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

namespace dispatch::testing {

// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago.
inline std::vector<int> free_ports(std::size_t count) {
  // Every probe socket stays bound until all ports are known, so none is handed out twice.
  std::vector<int> fds, ports;
  const auto close_all = [&] {
    for (int fd : fds) ::close(fd);
  };
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      close_all();
      throw std::runtime_error("socket() failed");
    }
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close_all();
      throw std::runtime_error("cannot find a free port");
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  close_all();
  return ports;
}

}  // namespace dispatch::testing
