// Thin msgpack writer shared by every encoder of the protocol (private to dispatch_protocol).
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace dispatch::protocol::wire {

// msgpack::packer wants a stream with write(); appending straight to the caller's string avoids
// an intermediate sbuffer and a copy of every frame.
class string_sink {
 public:
  explicit string_sink(std::string& out) : out_(out) {}
  void write(const char* data, std::size_t size) { out_.append(data, size); }

 private:
  std::string& out_;
};

// Containers are written with their size first, so callers state entry counts up front; the
// round-trip tests catch a count that disagrees with the fields written.
class writer {
 public:
  explicit writer(std::string& out);

  void map(std::size_t entries);
  void array(std::size_t size);
  void key(std::string_view k) { str(k); }
  void str(std::string_view s);
  void bin(std::string_view b);
  void uint(std::uint64_t v) { packer_.pack_uint64(v); }
  void sint(std::int64_t v) { packer_.pack_int64(v); }
  void boolean(bool b);

  // key + value shorthands; distinct names because a string literal would otherwise pick the
  // bool overload (a standard conversion beats the one to string_view).
  void text(std::string_view k, std::string_view v) {
    key(k);
    str(v);
  }
  void bytes(std::string_view k, std::string_view v) {
    key(k);
    bin(v);
  }
  void flag(std::string_view k, bool v) {
    key(k);
    boolean(v);
  }
  template <class T>
  void number(std::string_view k, T v) {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
    key(k);
    if constexpr (std::is_signed_v<T>)
      sint(v);
    else
      uint(v);
  }
  void names(std::string_view k, const std::vector<std::string>& v);
  void ids(std::string_view k, const std::vector<std::uint64_t>& v);

  // Opens a message map: "v", "type" and "id" followed by `body_fields` more entries.
  void header(std::string_view type, std::uint64_t id, std::size_t body_fields);

 private:
  string_sink sink_;
  msgpack::packer<string_sink> packer_;
};

}  // namespace dispatch::protocol::wire
