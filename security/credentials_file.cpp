#include "security/credentials_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "security/token_hash.hpp"
#include "security/token_table.hpp"

namespace dispatch::security {
namespace {

// Creates `path` owner-only and fails if it exists, so a second daemon racing the first can never
// replace tokens already handed out.
bool write_new_private_file(const std::string& path, const std::string& content,
                            std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = "cannot create " + path + ": " + std::strerror(errno);
    return false;
  }
  std::size_t done = 0;
  while (done < content.size()) {
    const auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = "cannot write " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) error = "cannot sync " + path + ": " + std::strerror(errno);
  return synced;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::optional<std::string> token_from_file(role as, const std::string& path, std::string& error) {
  std::ifstream file(path);
  if (!file) {
    error = "cannot read token file " + path;
    return std::nullopt;
  }
  std::string line;
  std::vector<std::string> bare;
  while (std::getline(file, line)) {
    std::istringstream words(line);
    std::string first, second;
    if (!(words >> first) || first[0] == '#') continue;
    if (words >> second) {
      if (parse_role(first) == as) return second;
    } else {
      bare.push_back(first);
    }
  }
  if (bare.size() == 1) return bare.front();
  error = "token file " + path + " has no token for the " + std::string(to_string(as)) + " role";
  return std::nullopt;
}

}  // namespace

bool ensure_first_start_tokens(const std::string& data_dir, const std::string& tokens_path,
                               first_start_result& out, std::string& error) {
  out = first_start_result{};
  if (file_exists(tokens_path)) return true;
  std::string hashes =
      "# Tokens this dispatcher accepts, as hashes (see docs/SECURITY.md).\n"
      "# <role> <projects> sha256:<hex> [label]\n";
  std::string plain =
      "# Tokens made on the first start, for local clients. Keep private; the dispatcher itself\n"
      "# only reads the hashes in the tokens file.\n";
  for (role r : {role::admin, role::producer, role::worker}) {
    const std::string token = generate_token();
    principal who;
    who.who = r;
    who.label = std::string(to_string(r)) + "-initial";
    hashes += token_line(who, token) + "\n";
    plain += std::string(to_string(r)) + " " + token + "\n";
  }
  ::mkdir(data_dir.c_str(), 0700);  // usually there already (the store made it)
  const std::string credentials_path = data_dir + "/credentials";
  // The credentials first: should the tokens file fail, the next start simply tries again.
  if (file_exists(credentials_path) && ::unlink(credentials_path.c_str()) != 0) {
    error = "cannot replace stale " + credentials_path + ": " + std::strerror(errno);
    return false;
  }
  if (!write_new_private_file(credentials_path, plain, error) ||
      !write_new_private_file(tokens_path, hashes, error))
    return false;
  out.created = true;
  out.credentials = std::move(plain);
  return true;
}

std::optional<std::string> resolve_client_token(role as, const std::string& explicit_token,
                                                const std::string& explicit_file,
                                                std::string& error) {
  error.clear();
  if (!explicit_token.empty()) return explicit_token;
  if (!explicit_file.empty()) return token_from_file(as, explicit_file, error);
  if (const char* env = std::getenv(token_environment_variable); env && *env) return std::string(env);
  if (file_exists(default_credentials_path)) return token_from_file(as, default_credentials_path, error);
  return std::nullopt;
}

}  // namespace dispatch::security
