// Maps names (projects, task types, tags) to small dense ids, so that the scheduling hot path
// compares and indexes integers and hashes a string only when a name enters the policy.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace dispatch::policy::detail {

class interner {
 public:
  interner() = default;
  interner(const interner&) = delete;
  interner& operator=(const interner&) = delete;

  std::uint32_t intern(std::string_view name) {
    if (auto it = ids_.find(name); it != ids_.end()) return it->second;
    const auto id = static_cast<std::uint32_t>(names_.size());
    // A deque never relocates its elements, so the map's views into them stay valid.
    const std::string& stored = names_.emplace_back(name);
    ids_.emplace(stored, id);
    return id;
  }

  // Lookup without registering: read-only paths must not grow the tables.
  std::optional<std::uint32_t> find(std::string_view name) const {
    if (auto it = ids_.find(name); it != ids_.end()) return it->second;
    return std::nullopt;
  }

  std::size_t size() const { return names_.size(); }

 private:
  std::deque<std::string> names_;
  std::unordered_map<std::string_view, std::uint32_t> ids_;
};

}  // namespace dispatch::policy::detail
