// The tokens a dispatcher accepts, as hashes, and the principal each stands for.
//
// Text form (the tokens file, and each --token-hash option), one entry per line:
//
//     <role> <projects> sha256:<64 hex digits> [label]
//
// role is admin, producer or worker; projects is "*" (every project) or a comma-separated list of
// project names (producers only: the other roles must say "*"); the label, if given, names the
// entry in logs. Blank lines and lines starting with '#' are ignored.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "security/role.hpp"
#include "security/token_hash.hpp"

namespace dispatch::security {

class token_table {
 public:
  // Adds the entries of `text`. On a bad line returns false, and `error` says which line
  // (counted from 1, prefixed with `source`) and why; entries before it are kept.
  bool add_text(std::string_view text, std::string_view source, std::string& error);
  // add_text on the content of a file. A missing file is an error.
  bool add_file(const std::string& path, std::string& error);

  // The principal the token stands for, or nullptr. Every entry is compared, in constant time,
  // whatever matches, so the time taken says nothing about the token.
  const principal* authenticate(std::string_view token) const;

  std::size_t size() const { return entries_.size(); }

 private:
  struct entry {
    token_digest digest;
    principal who;
  };
  std::vector<entry> entries_;
};

// One line of the text form, for tools that hand out tokens.
std::string token_line(const principal& who, std::string_view token);

}  // namespace dispatch::security
