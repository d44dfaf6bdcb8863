// Defensive msgpack reading shared by every decoder of the protocol (private to
// dispatch_protocol).
//
// Readers throw decode_error, which never leaves the library: the public decode functions catch
// it and turn it into a decode_failure. Throwing keeps each decoder a straight list of fields
// instead of a check after every read.
#pragma once

#include <cstdint>
#include <limits>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

namespace dispatch::protocol::wire {

constexpr std::size_t max_name_bytes = 128;
constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

struct decode_error {
  error_code code = error_code::bad_field;
  std::string message;
};

// Where a value sits in the message ("tasks[3].priority"). Segments live on the stack of the
// decoder that is walking the message, and the text is only built when an error is reported.
class path {
 public:
  path() = default;
  path field(std::string_view key) const { return path(this, key, 0, false); }
  path index(std::size_t i) const { return path(this, {}, i, true); }
  std::string str() const;

 private:
  path(const path* parent, std::string_view key, std::size_t index, bool is_index)
      : parent_(parent), key_(key), index_(index), is_index_(is_index) {}
  const path* parent_ = nullptr;  // nullptr: the message itself
  std::string_view key_;
  std::size_t index_ = 0;
  bool is_index_ = false;
};

[[noreturn]] void fail(const path& at, std::string_view what,
                       error_code code = error_code::bad_field);

// For echoing untrusted text in an error message: bounded and free of control bytes.
std::string printable(std::string_view text, std::size_t max_bytes = 64);

// Exactly one msgpack value spanning all of `bytes`. Sizes and nesting are capped so that a
// tiny frame cannot declare a huge container; the returned objects reference `bytes`.
msgpack::object_handle parse_one(std::string_view bytes);

std::uint64_t read_uint(const msgpack::object& o, const path& at, std::uint64_t lo,
                        std::uint64_t hi);
std::int64_t read_int(const msgpack::object& o, const path& at, std::int64_t lo, std::int64_t hi);
std::string read_str(const msgpack::object& o, const path& at, std::size_t min_bytes,
                     std::size_t max_bytes);
std::string read_bytes(const msgpack::object& o, const path& at);  // bin or str
bool read_bool(const msgpack::object& o, const path& at);
// Checks the type and entry count; returns the elements.
const msgpack::object* read_array(const msgpack::object& o, const path& at, std::size_t min,
                                  std::size_t max, std::size_t& count);

// A map being decoded. nil counts as absent; a key given twice is rejected rather than letting
// two peers disagree about which copy wins. Keys that are not strings are ignored like unknown
// keys.
//
// Lookups cost about one comparison each: the keys are checked for repeats once, up front, and a
// lookup starts where the previous one matched, since readers ask for fields in the order writers
// wrote them. (Stored tasks have some 25 fields; a full scan per field made lookups a tenth of
// the daemon's start-up.)
class fields {
 public:
  fields(const msgpack::object& o, const path& at);  // throws unless `o` is a map

  const msgpack::object* find(std::string_view key) const;
  const msgpack::object& need(std::string_view key) const;  // throws when absent
  path at(std::string_view key) const { return path_.field(key); }
  const path& where() const { return path_; }

  template <class Read>
  auto required(std::string_view key, Read read) const {
    return read(need(key), at(key));
  }
  template <class T, class Read>
  T optional(std::string_view key, T fallback, Read read) const {
    const msgpack::object* o = find(key);
    return o ? static_cast<T>(read(*o, at(key))) : fallback;
  }

 private:
  const msgpack::object& map_;
  path path_;
  bool keys_unique_ = false;        // false: find() scans every key, to report the repeat
  mutable std::uint32_t next_ = 0;  // the entry after the last match
};

// ---- value readers, composable: each is callable as (const msgpack::object&, const path&) ----

template <class T>
auto as_uint(T lo = 0, T hi = std::numeric_limits<T>::max()) {
  return [lo, hi](const msgpack::object& o, const path& at) {
    return static_cast<T>(read_uint(o, at, lo, hi));
  };
}

template <class T>
auto as_int(T lo = std::numeric_limits<T>::min(), T hi = std::numeric_limits<T>::max()) {
  return [lo, hi](const msgpack::object& o, const path& at) {
    return static_cast<T>(read_int(o, at, lo, hi));
  };
}

inline constexpr auto as_name = [](const msgpack::object& o, const path& at) {
  return read_str(o, at, 1, max_name_bytes);
};
inline constexpr auto as_text = [](const msgpack::object& o, const path& at) {
  return read_str(o, at, 0, unbounded);
};
inline constexpr auto as_bytes = [](const msgpack::object& o, const path& at) {
  return read_bytes(o, at);
};
inline constexpr auto as_bool = [](const msgpack::object& o, const path& at) {
  return read_bool(o, at);
};

task_status read_status(const msgpack::object& o, const path& at);
worker_pool read_pool(const msgpack::object& o, const path& at);
inline constexpr auto as_status = [](const msgpack::object& o, const path& at) {
  return read_status(o, at);
};
inline constexpr auto as_pool = [](const msgpack::object& o, const path& at) {
  return read_pool(o, at);
};

template <class Read>
auto array_of(std::size_t min, std::size_t max, Read each) {
  return [min, max, each](const msgpack::object& o, const path& at) {
    std::size_t count = 0;
    const msgpack::object* items = read_array(o, at, min, max, count);
    std::vector<decltype(each(o, at))> out;
    out.reserve(count);
    for (std::size_t i = 0; i < count; ++i) out.push_back(each(items[i], at.index(i)));
    return out;
  };
}

}  // namespace dispatch::protocol::wire
