#include "security/token_hash.hpp"

#include <sodium.h>

#include <stdexcept>

namespace dispatch::security {
namespace {

constexpr std::string_view hash_prefix = "sha256:";

// sodium_init is idempotent and thread-safe; calling it before each use keeps callers free of an
// initialisation step they could forget.
void ensure_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium could not be initialised");
}

std::string hex(const unsigned char* bytes, std::size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes, n);
  out.pop_back();
  return out;
}

}  // namespace

std::string generate_token() {
  ensure_sodium();
  unsigned char random[32];
  randombytes_buf(random, sizeof random);
  std::string token = "dsp_" + hex(random, sizeof random);
  sodium_memzero(random, sizeof random);
  return token;
}

token_digest digest_of(std::string_view token) {
  ensure_sodium();
  token_digest d;
  crypto_hash_sha256(d.data(), reinterpret_cast<const unsigned char*>(token.data()), token.size());
  return d;
}

std::string hash_text(std::string_view token) { return hash_text(digest_of(token)); }

std::string hash_text(const token_digest& digest) {
  return std::string(hash_prefix) + hex(digest.data(), digest.size());
}

std::optional<token_digest> parse_hash_text(std::string_view text) {
  if (text.substr(0, hash_prefix.size()) != hash_prefix) return std::nullopt;
  text.remove_prefix(hash_prefix.size());
  if (text.size() != 64) return std::nullopt;
  token_digest d;
  std::size_t written = 0;
  if (sodium_hex2bin(d.data(), d.size(), text.data(), text.size(), nullptr, &written, nullptr) != 0 ||
      written != d.size())
    return std::nullopt;
  return d;
}

bool same_digest(const token_digest& a, const token_digest& b) {
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace dispatch::security
