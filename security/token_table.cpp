#include "security/token_table.hpp"

#include <fstream>
#include <sstream>

namespace dispatch::security {
namespace {

std::vector<std::string> split_projects(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    const auto end = comma == std::string::npos ? list.size() : comma;
    out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Parses one non-comment line; returns the reason it is bad, or an empty string.
std::string parse_line(const std::string& line, token_digest& digest, principal& who) {
  std::istringstream in(line);
  std::string role_text, projects, hash;
  if (!(in >> role_text >> projects >> hash))
    return "expected '<role> <projects> sha256:<hex> [label]'";
  const auto r = parse_role(role_text);
  if (!r) return "unknown role '" + role_text + "' (admin, producer or worker)";
  const auto d = parse_hash_text(hash);
  if (!d) return "the hash must be 'sha256:' and 64 hex digits (dispatchctl token prints one)";
  who = principal{};
  who.who = *r;
  if (projects != "*") {
    if (*r != role::producer) return "only producer tokens are limited to projects; use '*'";
    who.projects = split_projects(projects);
    for (const auto& p : who.projects)
      if (p.empty() || p.size() > 128) return "project names are 1..128 bytes";
  }
  std::getline(in >> std::ws, who.label);
  while (!who.label.empty() && (who.label.back() == '\r' || who.label.back() == ' '))
    who.label.pop_back();  // a file written on Windows
  if (who.label.empty()) who.label = std::string(to_string(*r)) + (projects == "*" ? "" : ":" + projects);
  digest = *d;
  return {};
}

}  // namespace

bool token_table::add_text(std::string_view text, std::string_view source, std::string& error) {
  std::istringstream lines{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    entry e;
    if (auto why = parse_line(line, e.digest, e.who); !why.empty()) {
      error = std::string(source) + ":" + std::to_string(number) + ": " + why;
      return false;
    }
    entries_.push_back(std::move(e));
  }
  return true;
}

bool token_table::add_file(const std::string& path, std::string& error) {
  std::ifstream file(path);
  if (!file) {
    error = "cannot read tokens file " + path;
    return false;
  }
  std::ostringstream content;
  content << file.rdbuf();
  return add_text(content.str(), path, error);
}

const principal* token_table::authenticate(std::string_view token) const {
  const token_digest presented = digest_of(token);
  const principal* found = nullptr;
  for (const auto& e : entries_) {
    // No early exit: every entry costs the same whether or not an earlier one matched.
    const bool match = same_digest(e.digest, presented);
    if (match && !found) found = &e.who;
  }
  return found;
}

std::string token_line(const principal& who, std::string_view token) {
  std::string projects;
  for (const auto& p : who.projects) projects += (projects.empty() ? "" : ",") + p;
  return std::string(to_string(who.who)) + " " + (projects.empty() ? "*" : projects) + " " +
         hash_text(token) + (who.label.empty() ? "" : " " + who.label);
}

}  // namespace dispatch::security
