// Wire names of error codes. They are part of the protocol: renaming one breaks every client.
#include <array>

#include "protocol/messages.hpp"

namespace dispatch::protocol {
namespace {
// Indexed by the enum value, so the order must follow the declaration in messages.hpp.
constexpr std::array<std::string_view, 17> error_names = {
    "malformed",       "unsupported_version", "unknown_type", "bad_field",      "too_large",
    "not_registered",  "unknown_task",        "not_owner",    "stale_lease",    "invalid_state",
    "storage",         "unknown_worker",      "unauthenticated", "forbidden", "rate_limited",
    "too_many_peers",  "internal"};
static_assert(static_cast<std::size_t>(error_code::internal) + 1 == error_names.size(),
              "every error_code needs a wire name");
}  // namespace

std::string_view to_string(error_code c) {
  const auto index = static_cast<std::size_t>(c);
  // A value outside the enum can only come from a cast bug; "internal" keeps replies well formed.
  return index < error_names.size() ? error_names[index] : error_names.back();
}

std::optional<error_code> parse_error_code(std::string_view text) {
  for (std::size_t i = 0; i < error_names.size(); ++i)
    if (error_names[i] == text) return static_cast<error_code>(i);
  return std::nullopt;
}

}  // namespace dispatch::protocol
