// Reading /metrics the way Prometheus does, for tests: a plain HTTP/1.0 GET over a socket (the
// server closes the connection after the response, so reading to EOF reads it all) and a parser
// of the text exposition format.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dispatch::testing {

// Closes a socket descriptor however the test leaves the scope.
class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

inline sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  return addr;
}

struct http_response {
  int status = 0;
  std::string headers;
  std::string body;
};

// GET `path` on 127.0.0.1:`port`; throws when nothing answers within 5 s or the answer is not HTTP.
inline http_response http_get(int port, const std::string& path) {
  fd_guard fd(::socket(AF_INET, SOCK_STREAM, 0));
  if (fd.get() < 0) throw std::runtime_error("socket() failed");
  timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  auto addr = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw std::runtime_error("nothing serves on 127.0.0.1:" + std::to_string(port));
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size()))
    throw std::runtime_error("send failed");
  std::string raw;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) throw std::runtime_error("recv failed or timed out");
    if (n == 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0)
    throw std::runtime_error("not an HTTP response: " + raw.substr(0, 200));
  http_response r;
  r.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

using labels = std::map<std::string, std::string>;

struct sample {
  std::string name;
  labels labels_;
  double value = 0;
};

// Parses the text exposition format: `name{k="v",...} value`, comments skipped.
inline std::vector<sample> parse_exposition(const std::string& text) {
  std::vector<sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    sample s;
    std::size_t i = line.find_first_of("{ ");
    s.name = line.substr(0, i);
    if (i != std::string::npos && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const auto eq = line.find('=', i);
        std::string key = line.substr(i, eq - i), value;
        i = eq + 2;  // past ="
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) ++i;
          value += line[i++];
        }
        ++i;  // past the closing quote
        if (i < line.size() && line[i] == ',') ++i;
        s.labels_[key] = value;
      }
    }
    s.value = std::stod(line.substr(line.find_last_of(' ') + 1));
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace dispatch::testing
