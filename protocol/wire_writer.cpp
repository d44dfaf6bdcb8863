#include "protocol/wire_writer.hpp"

#include "protocol/messages.hpp"

namespace dispatch::protocol::wire {

writer::writer(std::string& out) : sink_(out), packer_(sink_) { out.clear(); }

// msgpack lengths are 32-bit; frames are capped far below that (max-frame), so the narrowing
// cannot bite for any message the dispatcher would accept.
void writer::map(std::size_t entries) { packer_.pack_map(static_cast<std::uint32_t>(entries)); }
void writer::array(std::size_t size) { packer_.pack_array(static_cast<std::uint32_t>(size)); }

void writer::str(std::string_view s) {
  packer_.pack_str(static_cast<std::uint32_t>(s.size()));
  packer_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

void writer::bin(std::string_view b) {
  packer_.pack_bin(static_cast<std::uint32_t>(b.size()));
  packer_.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
}

void writer::boolean(bool b) {
  if (b)
    packer_.pack_true();
  else
    packer_.pack_false();
}

void writer::names(std::string_view k, const std::vector<std::string>& v) {
  key(k);
  array(v.size());
  for (const auto& s : v) str(s);
}

void writer::ids(std::string_view k, const std::vector<std::uint64_t>& v) {
  key(k);
  array(v.size());
  for (auto id : v) uint(id);
}

void writer::header(std::string_view type, std::uint64_t id, std::size_t body_fields) {
  map(3 + body_fields);
  number("v", version);
  text("type", type);
  number("id", id);
}

}  // namespace dispatch::protocol::wire
