#include "security/curve_keys.hpp"

#include <fcntl.h>     // open
#include <stdlib.h>    // mkstemp
#include <string.h>    // explicit_bzero
#include <sys/stat.h>  // fstat, fchmod, lstat
#include <unistd.h>    // read, write, close, fsync, unlink

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>  // rename
#include <cstring>
#include <utility>

namespace dispatch::security {
namespace {

// Key files hold one short line; anything much larger is not a key file, and reading it whole
// would only waste memory. Allow lists may hold many thousands of keys.
constexpr std::size_t max_key_file_size = 64 * 1024;
constexpr std::size_t max_allow_list_size = 64 * 1024 * 1024;

std::string errno_text(int err) { return std::strerror(err); }

// Closes the descriptor on every path out of a function.
class unique_fd {
 public:
  explicit unique_fd(int fd) : fd_(fd) {}
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  int get() const { return fd_; }
  // close() reports write-back errors some file systems only detect then.
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string_view trim(std::string_view s) {
  const char* blanks = " \t\r\n\f\v";
  auto first = s.find_first_not_of(blanks);
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(blanks);
  return s.substr(first, last - first + 1);
}

// Calls `fn(line_number, trimmed_line)` for every line that is neither blank nor a comment.
template <typename Fn>
void for_each_content_line(std::string_view text, Fn&& fn) {
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    auto end = text.find('\n');
    std::string_view line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (line.empty() || line.front() == '#') continue;
    fn(line_number, line);
  }
}

// Says why `text` is not a key without quoting it: the text may be a secret key with a typo.
std::string why_not_a_key(std::string_view text) {
  if (text.size() != curve_z85_key_size)
    return "not a CURVE key (expected 40 Z85 characters, found " + std::to_string(text.size()) +
           ")";
  return "not a CURVE key (40 characters, but not valid Z85)";
}

bool read_file(const std::string& path, std::size_t limit, const char* what, std::string& content,
               struct stat& info, std::string& error) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    error = std::string("cannot open ") + what + " " + path + ": " + errno_text(errno);
    return false;
  }
  if (::fstat(fd.get(), &info) != 0) {
    error = std::string("cannot stat ") + what + " " + path + ": " + errno_text(errno);
    return false;
  }
  if (!S_ISREG(info.st_mode)) {
    error = std::string(what) + " " + path + " is not a regular file";
    return false;
  }
  content.clear();
  std::array<char, 4096> buffer{};
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::string("cannot read ") + what + " " + path + ": " + errno_text(errno);
      return false;
    }
    if (n == 0) return true;
    content.append(buffer.data(), static_cast<std::size_t>(n));
    if (content.size() > limit) {
      error = std::string(what) + " " + path + " is larger than " + std::to_string(limit) +
              " bytes; it cannot be a " + what;
      return false;
    }
  }
}

// The one key in a key file's text.
bool parse_key_text(std::string_view text, const std::string& path, const char* what,
                    std::string& key, std::string& error) {
  std::string found;
  std::size_t found_line = 0;
  bool ok = true;
  for_each_content_line(text, [&](std::size_t line_number, std::string_view line) {
    if (!ok) return;
    const std::string where = path + ":" + std::to_string(line_number) + ": ";
    if (!found.empty()) {
      error = where + "more than one key in " + what + " (the first is on line " +
              std::to_string(found_line) + ")";
      ok = false;
    } else if (!is_curve_key(line)) {
      error = where + why_not_a_key(line) + " in " + what;
      ok = false;
    } else {
      found.assign(line);
      found_line = line_number;
    }
  });
  if (!ok) return false;
  if (found.empty()) {
    error = std::string(what) + " " + path + " holds no key";
    return false;
  }
  key = std::move(found);
  return true;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Writes, sets the exact mode (the umask may have narrowed it, and a replaced file must not keep
// a looser one), syncs and closes `fd`; `path` is only for the message.
bool finish_file(unique_fd& fd, const std::string& path, std::string_view content, mode_t mode,
                 std::string& error) {
  if (!write_all(fd.get(), content) || ::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0 ||
      fd.close() != 0) {
    error = "cannot write " + path + ": " + errno_text(errno);
    return false;
  }
  return true;
}

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a rename in `directory` durable; best effort, the key itself is already synced.
void sync_directory(const std::string& directory) {
  unique_fd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());
}

// overwrite::refuse: create `path` exclusively.
bool create_exclusive(const std::string& path, std::string_view content, mode_t mode,
                      std::string& error) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) {
    error = errno == EEXIST ? path + " already exists; not overwriting it"
                            : "cannot create " + path + ": " + errno_text(errno);
    return false;
  }
  if (!finish_file(fd, path, content, mode, error)) {
    ::unlink(path.c_str());
    return false;
  }
  return true;
}

// overwrite::replace: write beside `path`, then rename over it. mkstemp creates the temporary
// file with mode 0600, so the secret is never readable by others, not even for a moment.
bool replace_atomically(const std::string& path, std::string_view content, mode_t mode,
                        std::string& error) {
  std::string temp = path + ".tmp-XXXXXX";
  unique_fd fd(::mkstemp(temp.data()));
  if (fd.get() < 0) {
    error = "cannot create a temporary file beside " + path + ": " + errno_text(errno);
    return false;
  }
  if (!finish_file(fd, path, content, mode, error)) {
    ::unlink(temp.c_str());
    return false;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    error = "cannot rename " + temp + " to " + path + ": " + errno_text(errno);
    ::unlink(temp.c_str());
    return false;
  }
  return true;
}

bool path_exists(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

}  // namespace

bool generate_key_pair(curve_key_pair& out, std::string& error) {
  std::array<char, curve_z85_key_size + 1> public_key{};
  std::array<char, curve_z85_key_size + 1> secret_key{};
  if (zmq_curve_keypair(public_key.data(), secret_key.data()) != 0) {
    error = "cannot generate a CURVE key pair: " + std::string(zmq_strerror(zmq_errno())) +
            " (libzmq without CURVE support?)";
    return false;
  }
  out.public_key.assign(public_key.data(), curve_z85_key_size);
  out.secret_key.assign(secret_key.data(), curve_z85_key_size);
  // Do not leave a copy of the secret on the stack (explicit_bzero is never optimised away).
  ::explicit_bzero(secret_key.data(), secret_key.size());
  return true;
}

bool public_key_of(std::string_view secret_z85, std::string& public_z85, std::string& error) {
  if (!is_curve_key(secret_z85)) {
    error = "secret key is " + why_not_a_key(secret_z85);
    return false;
  }
  std::string secret(secret_z85);
  std::array<char, curve_z85_key_size + 1> public_key{};
  const bool ok = zmq_curve_public(public_key.data(), secret.c_str()) == 0;
  ::explicit_bzero(secret.data(), secret.size());
  if (!ok) {
    error = "cannot derive a CURVE public key: " + std::string(zmq_strerror(zmq_errno()));
    return false;
  }
  public_z85.assign(public_key.data(), curve_z85_key_size);
  return true;
}

bool is_curve_key(std::string_view text) {
  std::string binary;
  const bool ok = z85_to_binary(text, binary);
  ::explicit_bzero(binary.data(), binary.size());
  return ok;
}

bool z85_to_binary(std::string_view z85, std::string& binary) {
  // zmq_z85_decode reads a C string, so an embedded NUL would silently shorten the input.
  if (z85.size() != curve_z85_key_size || z85.find('\0') != std::string_view::npos) return false;
  std::string text(z85);
  std::array<std::uint8_t, curve_binary_key_size> decoded{};
  const bool ok = zmq_z85_decode(decoded.data(), text.c_str()) != nullptr;
  if (ok) binary.assign(reinterpret_cast<const char*>(decoded.data()), decoded.size());
  // `z85` may be a secret key: leave no stray copies of it behind.
  ::explicit_bzero(text.data(), text.size());
  ::explicit_bzero(decoded.data(), decoded.size());
  return ok;
}

std::string binary_to_z85(std::string_view binary) {
  if (binary.size() != curve_binary_key_size) return {};
  std::array<char, curve_z85_key_size + 1> text{};
  if (zmq_z85_encode(text.data(), reinterpret_cast<const std::uint8_t*>(binary.data()),
                     binary.size()) == nullptr)
    return {};
  return std::string(text.data(), curve_z85_key_size);
}

bool write_key_pair(const std::string& prefix, const curve_key_pair& pair, overwrite mode,
                    std::string& error) {
  if (!is_curve_key(pair.public_key)) {
    error = "cannot write a key pair to " + prefix + ": public key is " +
            why_not_a_key(pair.public_key);
    return false;
  }
  std::string derived;
  if (!public_key_of(pair.secret_key, derived, error)) {
    error = "cannot write a key pair to " + prefix + ": " + error;
    return false;
  }
  if (derived != pair.public_key) {
    error = "cannot write a key pair to " + prefix +
            ": the public key does not belong to the secret key";
    return false;
  }

  const std::string secret_path = prefix + ".key";
  const std::string public_path = prefix + ".pub";
  const std::string secret_text =
      "# dispatch CURVE secret key: keep it private, never share or log it\n" + pair.secret_key +
      "\n";
  const std::string public_text = "# dispatch CURVE public key\n" + pair.public_key + "\n";

  if (mode == overwrite::refuse) {
    // Checked first so that an existing .pub does not leave a fresh .key behind; O_EXCL below
    // still settles any race with another writer.
    for (const auto* path : {&secret_path, &public_path}) {
      if (path_exists(*path)) {
        error = *path + " already exists; not overwriting it";
        return false;
      }
    }
    if (!create_exclusive(secret_path, secret_text, 0600, error)) return false;
    if (!create_exclusive(public_path, public_text, 0644, error)) {
      ::unlink(secret_path.c_str());  // ours: created just above
      return false;
    }
  } else {
    if (!replace_atomically(secret_path, secret_text, 0600, error) ||
        !replace_atomically(public_path, public_text, 0644, error))
      return false;
  }
  sync_directory(directory_of(secret_path));
  return true;
}

bool read_public_key_file(const std::string& path, std::string& public_z85, std::string& error) {
  std::string content;
  struct stat info {};
  return read_file(path, max_key_file_size, "public key file", content, info, error) &&
         parse_key_text(content, path, "public key file", public_z85, error);
}

bool read_secret_key_file(const std::string& path, std::string& secret_z85, std::string& error,
                          secret_file_mode mode) {
  std::string content;
  struct stat info {};
  if (!read_file(path, max_key_file_size, "secret key file", content, info, error)) return false;
  if (mode == secret_file_mode::private_only && (info.st_mode & 077) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    error = "secret key file " + path + " may be read or written by others (mode " + octal +
            "); run chmod 600 " + path;
    return false;
  }
  bool ok = parse_key_text(content, path, "secret key file", secret_z85, error);
  ::explicit_bzero(content.data(), content.size());  // leave `secret_z85` the only copy
  return ok;
}

bool read_key_pair(const std::string& prefix, curve_key_pair& out, std::string& error,
                   secret_file_mode mode) {
  curve_key_pair pair;
  if (!read_secret_key_file(prefix + ".key", pair.secret_key, error, mode) ||
      !read_public_key_file(prefix + ".pub", pair.public_key, error))
    return false;
  std::string derived;
  if (!public_key_of(pair.secret_key, derived, error)) return false;
  if (derived != pair.public_key) {
    error = "public key file " + prefix + ".pub does not belong to secret key file " + prefix +
            ".key";
    return false;
  }
  out = std::move(pair);
  return true;
}

std::set<std::string> curve_allow_list::keys() const {
  std::set<std::string> result;
  for (const auto& entry : names) result.insert(entry.first);
  return result;
}

bool parse_allow_list(std::string_view text, std::string_view source, curve_allow_list& out,
                      std::string& error) {
  out = curve_allow_list{};
  for_each_content_line(text, [&](std::size_t line_number, std::string_view line) {
    auto blank = line.find_first_of(" \t");
    std::string_view key = line.substr(0, blank);
    std::string_view name =
        blank == std::string_view::npos ? std::string_view{} : trim(line.substr(blank));
    std::string binary;
    if (!z85_to_binary(key, binary)) {
      out.errors.push_back(std::string(source) + ":" + std::to_string(line_number) + ": " +
                           why_not_a_key(key));
      return;
    }
    out.names.emplace(std::move(binary), std::string(name));  // a repeated key keeps its first name
  });
  if (out.errors.empty()) return true;
  error = out.errors.front();
  if (out.errors.size() > 1)
    error += " (and " + std::to_string(out.errors.size() - 1) + " more bad lines)";
  return false;
}

bool read_allow_list(const std::string& path, curve_allow_list& out, std::string& error) {
  out = curve_allow_list{};
  std::string content;
  struct stat info {};
  if (!read_file(path, max_allow_list_size, "allow list", content, info, error)) return false;
  return parse_allow_list(content, path, out, error);
}

bool apply_curve_server(zmq::socket_t& socket, const curve_key_pair& server, std::string& error,
                        const std::string& zap_domain) {
  if (!is_curve_key(server.secret_key) || !is_curve_key(server.public_key)) {
    error = "cannot make a CURVE server: its key pair is not valid";
    return false;
  }
  try {
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, server.secret_key);
    socket.set(zmq::sockopt::curve_publickey, server.public_key);
    socket.set(zmq::sockopt::zap_domain, zap_domain);
  } catch (const zmq::error_t& e) {
    error = std::string("cannot make a CURVE server: ") + e.what();
    return false;
  }
  return true;
}

bool apply_curve_client(zmq::socket_t& socket, const curve_key_pair& client,
                        std::string_view server_public_z85, std::string& error) {
  if (!is_curve_key(client.secret_key) || !is_curve_key(client.public_key)) {
    error = "cannot make a CURVE client: its key pair is not valid";
    return false;
  }
  if (!is_curve_key(server_public_z85)) {
    error = "cannot make a CURVE client: the server public key is " +
            why_not_a_key(server_public_z85);
    return false;
  }
  try {
    socket.set(zmq::sockopt::curve_serverkey, server_public_z85);
    socket.set(zmq::sockopt::curve_publickey, client.public_key);
    socket.set(zmq::sockopt::curve_secretkey, client.secret_key);
  } catch (const zmq::error_t& e) {
    error = std::string("cannot make a CURVE client: ") + e.what();
    return false;
  }
  return true;
}

bool load_curve_client_keys(const std::string& secret_key_file, const std::string& server_key,
                            curve_client_keys& out, std::string& error) {
  if (!read_secret_key_file(secret_key_file, out.client.secret_key, error) ||
      !public_key_of(out.client.secret_key, out.client.public_key, error))
    return false;
  if (is_curve_key(server_key)) {
    out.server_public = server_key;
    return true;
  }
  return read_public_key_file(server_key, out.server_public, error);
}

}  // namespace dispatch::security
