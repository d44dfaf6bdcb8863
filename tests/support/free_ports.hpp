// Free loopback ports for programs that start real daemons (integration tests, benchmarks).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <stdexcept>
#include <vector>

namespace dispatch::testing {

// The lowest port the kernel hands out to outgoing connections (32768 unless configured).
inline int ephemeral_port_low() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  return range >> low ? low : 32768;
}

// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago.
// They are taken below the kernel's ephemeral range. A port from that range, once a stopped
// daemon frees it, can become the local port of any outgoing connection (a worker reconnecting,
// another test's client), and the daemon restarted on it then fails with "address in use".
inline std::vector<int> free_ports(std::size_t count) {
  constexpr int lowest = 10000;
  const int highest = ephemeral_port_low() - 1;
  if (highest - lowest < 1000) throw std::runtime_error("the ephemeral port range starts too low");
  // Every probe socket stays bound until all ports are known, so none is handed out twice; the
  // random start keeps parallel test processes apart.
  std::vector<int> fds, ports;
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> pick(lowest, highest);
  for (int attempt = 0; attempt < 1000 && ports.size() < count; ++attempt) {
    const int port = pick(random);
    if (std::find(ports.begin(), ports.end(), port) != ports.end()) continue;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd);
      continue;
    }
    fds.push_back(fd);
    ports.push_back(port);
  }
  for (int fd : fds) ::close(fd);
  if (ports.size() < count) throw std::runtime_error("cannot find free ports");
  return ports;
}

}  // namespace dispatch::testing
