#include "protocol/wire_reader.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <new>

namespace dispatch::protocol::wire {
namespace {

// Deeper than any message of the protocol (stats -> projects -> project -> counts is 4) with
// room for future optional fields, yet shallow enough that a nesting bomb is refused early.
constexpr std::size_t max_depth = 32;

// The decoded objects may point into the frame: it outlives them, and copying every payload
// into the zone would double the memory a large frame costs.
bool reference_everything(msgpack::type::object_type, std::size_t, void*) { return true; }

std::string range_text(std::uint64_t lo, std::uint64_t hi) {
  return std::to_string(lo) + ".." + std::to_string(hi);
}

std::string int_range_text(std::int64_t lo, std::int64_t hi) {
  return std::to_string(lo) + ".." + std::to_string(hi);
}

std::string count_text(std::size_t min, std::size_t max) {
  if (min == 0 && max == unbounded) return "";
  if (max == unbounded)
    return min == 1 ? " of at least 1 entry" : " of at least " + std::to_string(min) + " entries";
  if (min == 0) return " of at most " + std::to_string(max) + " entries";
  return " of " + range_text(min, max) + " entries";
}

}  // namespace

std::string path::str() const {
  if (!parent_) return std::string();
  std::string parent = parent_->str();
  if (is_index_) return parent + "[" + std::to_string(index_) + "]";
  // Keys of count maps come from the peer, hence printable().
  return parent.empty() ? printable(key_) : parent + "." + printable(key_);
}

void fail(const path& at, std::string_view what, error_code code) {
  std::string where = at.str();
  throw decode_error{code, where.empty() ? std::string(what) : where + ": " + std::string(what)};
}

std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  const std::size_t shown = std::min(text.size(), max_bytes);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  if (shown < text.size()) out += "...";
  return out;
}

msgpack::object_handle parse_one(std::string_view bytes) {
  // Every array element takes at least one byte and every map entry two, so no honest value can
  // declare more than that; capping here stops "array of 4 billion" in a 5-byte frame before the
  // zone allocates room for it.
  const std::size_t len = bytes.size();
  if (len == 0) throw decode_error{error_code::malformed, "not msgpack: the frame is empty"};
  const msgpack::unpack_limit limit(len, len / 2, len, len, len, max_depth);
  std::size_t offset = 0;
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(bytes.data(), len, offset, &reference_everything, nullptr, limit);
  } catch (const msgpack::insufficient_bytes&) {
    throw decode_error{error_code::malformed, "not msgpack: the value is truncated"};
  } catch (const msgpack::depth_size_overflow&) {
    throw decode_error{error_code::malformed,
                       "not msgpack we accept: nested deeper than " + std::to_string(max_depth)};
  } catch (const msgpack::size_overflow&) {
    throw decode_error{error_code::malformed,
                       "not msgpack: a container or string is longer than the frame"};
  } catch (const msgpack::unpack_error& e) {
    throw decode_error{error_code::malformed, std::string("not msgpack: ") + e.what()};
  } catch (const std::bad_alloc&) {
    throw decode_error{error_code::malformed, "not msgpack: declared sizes are absurd"};
  }
  if (offset != len)
    throw decode_error{error_code::malformed,
                       std::to_string(len - offset) + " trailing bytes after the msgpack value"};
  return handle;
}

std::uint64_t read_uint(const msgpack::object& o, const path& at, std::uint64_t lo,
                        std::uint64_t hi) {
  if (o.type == msgpack::type::POSITIVE_INTEGER && o.via.u64 >= lo && o.via.u64 <= hi)
    return o.via.u64;
  if (lo == 0 && hi == std::numeric_limits<std::uint64_t>::max())
    fail(at, "expected a non-negative integer");
  if (lo == 0 && hi == std::numeric_limits<std::uint32_t>::max())
    fail(at, "expected an integer in uint32 range");
  fail(at, "expected an integer in " + range_text(lo, hi));
}

std::int64_t read_int(const msgpack::object& o, const path& at, std::int64_t lo, std::int64_t hi) {
  std::optional<std::int64_t> value;
  if (o.type == msgpack::type::NEGATIVE_INTEGER) value = o.via.i64;
  if (o.type == msgpack::type::POSITIVE_INTEGER &&
      o.via.u64 <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    value = static_cast<std::int64_t>(o.via.u64);
  if (value && *value >= lo && *value <= hi) return *value;
  if (lo == std::numeric_limits<std::int32_t>::min() &&
      hi == std::numeric_limits<std::int32_t>::max())
    fail(at, "expected an integer in int32 range");
  if (lo == std::numeric_limits<std::int64_t>::min() &&
      hi == std::numeric_limits<std::int64_t>::max())
    fail(at, "expected an integer in int64 range");
  fail(at, "expected an integer in " + int_range_text(lo, hi));
}

std::string read_str(const msgpack::object& o, const path& at, std::size_t min_bytes,
                     std::size_t max_bytes) {
  if (o.type == msgpack::type::STR && o.via.str.size >= min_bytes && o.via.str.size <= max_bytes)
    return std::string(o.via.str.ptr, o.via.str.size);
  if (min_bytes == 0 && max_bytes == unbounded) fail(at, "expected a string");
  fail(at, "expected a string of " + range_text(min_bytes, max_bytes) + " bytes");
}

std::string read_bytes(const msgpack::object& o, const path& at) {
  if (o.type == msgpack::type::BIN) return std::string(o.via.bin.ptr, o.via.bin.size);
  if (o.type == msgpack::type::STR) return std::string(o.via.str.ptr, o.via.str.size);
  fail(at, "expected bin or str");
}

bool read_bool(const msgpack::object& o, const path& at) {
  if (o.type != msgpack::type::BOOLEAN) fail(at, "expected true or false");
  return o.via.boolean;
}

const msgpack::object* read_array(const msgpack::object& o, const path& at, std::size_t min,
                                  std::size_t max, std::size_t& count) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size < min || o.via.array.size > max)
    fail(at, "expected an array" + count_text(min, max));
  count = o.via.array.size;
  return o.via.array.ptr;
}

task_status read_status(const msgpack::object& o, const path& at) {
  if (o.type == msgpack::type::STR)
    if (auto s = parse_task_status(std::string_view(o.via.str.ptr, o.via.str.size))) return *s;
  fail(at, "expected one of pending|running|completed|failed|dead|cancelled");
}

worker_pool read_pool(const msgpack::object& o, const path& at) {
  if (o.type == msgpack::type::STR)
    if (auto p = parse_worker_pool(std::string_view(o.via.str.ptr, o.via.str.size))) return *p;
  fail(at, "expected \"active\" or \"reserve\"");
}

namespace {

std::string_view key_text(const msgpack::object& k) {
  return k.type == msgpack::type::STR ? std::string_view(k.via.str.ptr, k.via.str.size)
                                      : std::string_view();
}

// Whether no string key appears twice. Each key marks one of 256 bits picked by a cheap hash;
// only a key whose bit is already marked is compared with the keys before it, so the usual map
// costs one hash per key. Larger maps (never sent by a well-behaved peer) take the scanning path,
// so that keys made to collide cannot make this quadratic.
bool string_keys_unique(const msgpack::object_map& m) {
  if (m.size > 64) return false;
  std::array<std::uint64_t, 4> seen{};
  for (std::uint32_t i = 0; i < m.size; ++i) {
    if (m.ptr[i].key.type != msgpack::type::STR) continue;
    const auto k = key_text(m.ptr[i].key);
    const auto byte = [&](std::size_t at) { return static_cast<unsigned char>(k[at]); };
    const unsigned h =
        k.empty() ? 0u
                  : static_cast<unsigned>(k.size() * 31u + byte(0) * 7u + byte(k.size() / 2) * 13u +
                                          byte(k.size() - 1)) &
                        255u;
    std::uint64_t& word = seen[h >> 6];
    const std::uint64_t bit = std::uint64_t{1} << (h & 63u);
    if (word & bit)
      for (std::uint32_t j = 0; j < i; ++j)
        if (m.ptr[j].key.type == msgpack::type::STR && key_text(m.ptr[j].key) == k) return false;
    word |= bit;
  }
  return true;
}

}  // namespace

fields::fields(const msgpack::object& o, const path& at) : map_(o), path_(at) {
  if (o.type != msgpack::type::MAP) fail(at, "expected a map");
  keys_unique_ = string_keys_unique(o.via.map);
}

const msgpack::object* fields::find(std::string_view key) const {
  const msgpack::object_map& m = map_.via.map;
  if (keys_unique_) {
    for (std::uint32_t n = 0, i = next_; n < m.size; ++n, i = i + 1 == m.size ? 0 : i + 1) {
      const msgpack::object& k = m.ptr[i].key;
      if (k.type != msgpack::type::STR || key_text(k) != key) continue;
      next_ = i + 1 == m.size ? 0 : i + 1;
      const msgpack::object& v = m.ptr[i].val;
      return v.type != msgpack::type::NIL ? &v : nullptr;
    }
    return nullptr;
  }
  const msgpack::object* found = nullptr;
  for (std::uint32_t i = 0; i < m.size; ++i) {
    const msgpack::object& k = m.ptr[i].key;
    if (k.type != msgpack::type::STR || k.via.str.size != key.size() ||
        std::memcmp(k.via.str.ptr, key.data(), key.size()) != 0)
      continue;
    if (found) fail(at(key), "key given more than once");
    found = &m.ptr[i].val;
  }
  return found && found->type != msgpack::type::NIL ? found : nullptr;
}

const msgpack::object& fields::need(std::string_view key) const {
  const msgpack::object* o = find(key);
  if (!o) fail(at(key), "required field is missing");
  return *o;
}

}  // namespace dispatch::protocol::wire
