// Tokens and their stored form. The dispatcher keeps only SHA-256 hashes of tokens, so a leaked
// tokens file or memory dump does not hand out credentials; tokens are long random strings, so an
// unsalted hash is enough (there is no dictionary to attack).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch::security {

using token_digest = std::array<unsigned char, 32>;

// A fresh token: "dsp_" and 64 hex digits of the system's CSPRNG (256 bits). The prefix lets
// secret scanners and humans recognise one.
std::string generate_token();

token_digest digest_of(std::string_view token);
// "sha256:<64 lowercase hex digits>", the form the tokens file stores.
std::string hash_text(std::string_view token);
std::string hash_text(const token_digest& digest);
// Parses the form above; nullopt when it is anything else.
std::optional<token_digest> parse_hash_text(std::string_view text);

// Compares in time independent of where the digests differ.
bool same_digest(const token_digest& a, const token_digest& b);

}  // namespace dispatch::security
