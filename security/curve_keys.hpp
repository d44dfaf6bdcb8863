// CURVE (ZeroMQ's CurveZMQ) key material for the dispatcher and its clients: key pairs, the key
// files they live in, the allow list of client keys, and the socket options that turn CURVE on.
//
// Contract:
//  * Keys are passed around as Z85 text: 40 characters encoding 32 bytes. Every key a function
//    here hands out (generated or read) has been decoded once with zmq_z85_decode, so it is well
//    formed. The allow list also holds the 32-byte binary form, the form a ZAP request carries.
//  * Failures never throw: each function returns false and sets `error` to a sentence naming the
//    file (and line, counted from 1) and the reason. Key text never appears in an error message,
//    so errors can be logged as they are.
//  * Key file format (public and secret alike): the key alone on one line. Blank lines and lines
//    whose first non-blank character is '#' are ignored; whitespace around the key is trimmed.
//    write_key_pair() writes `<prefix>.key` (secret, mode 0600) and `<prefix>.pub` (public, 0644).
//  * Allow list format: one client public key (Z85) per line, optionally followed by whitespace
//    and a name for logs (the rest of the line, trimmed). Blank and '#' lines are ignored. A key
//    listed twice keeps the first name. An empty allow list is valid and lets nobody in.
//  * No shared state: every function may be called from any thread.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

namespace dispatch::security {

inline constexpr std::size_t curve_z85_key_size = 40;
inline constexpr std::size_t curve_binary_key_size = 32;
// The ZAP domain servers announce (apply_curve_server) and dispatch::zap_handler serves.
inline constexpr const char* curve_zap_domain = "dispatch";

struct curve_key_pair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters; never log it
};

// A fresh key pair from libzmq's CSPRNG (zmq_curve_keypair). Fails only when libzmq was built
// without CURVE.
bool generate_key_pair(curve_key_pair& out, std::string& error);

// The public key that belongs to `secret_z85` (zmq_curve_public).
bool public_key_of(std::string_view secret_z85, std::string& public_z85, std::string& error);

// True when `text` is exactly 40 characters of the Z85 alphabet that decode to 32 bytes.
bool is_curve_key(std::string_view text);
// Z85 <-> 32-byte binary. z85_to_binary returns false on anything is_curve_key() rejects;
// binary_to_z85 returns "" unless `binary` is exactly 32 bytes.
bool z85_to_binary(std::string_view z85, std::string& binary);
std::string binary_to_z85(std::string_view binary);

enum class overwrite { refuse, replace };

// Writes `<prefix>.key` (the secret key, created with mode 0600) and `<prefix>.pub` (the public
// key, mode 0644). With overwrite::refuse, fails without touching anything when either file
// exists (checked with O_EXCL, so a concurrent writer cannot slip in between). With
// overwrite::replace, each file is written to a temporary file beside it and renamed over the old
// one, so a reader sees the old key or the new one, never half of one, and the secret file never
// keeps an older, looser mode (should the second rename fail, the files on disk may not match;
// read_key_pair() says so). `pair` must hold a valid, matching pair (checked).
bool write_key_pair(const std::string& prefix, const curve_key_pair& pair, overwrite mode,
                    std::string& error);

enum class secret_file_mode {
  private_only,  // refuse a secret key file that its group or others may read or write (like ssh)
  any,           // accept any mode (e.g. keys mounted by an orchestrator with fixed modes)
};

// Reads a key file (format above). Fails when the file cannot be read, holds no key, more than
// one key, or a line that is not a key.
bool read_public_key_file(const std::string& path, std::string& public_z85, std::string& error);
bool read_secret_key_file(const std::string& path, std::string& secret_z85, std::string& error,
                          secret_file_mode mode = secret_file_mode::private_only);
// Reads `<prefix>.key` and `<prefix>.pub` and checks that the public key belongs to the secret
// one, so a mixed-up pair is caught at start and not as failing handshakes later.
bool read_key_pair(const std::string& prefix, curve_key_pair& out, std::string& error,
                   secret_file_mode mode = secret_file_mode::private_only);

struct curve_allow_list {
  // 32-byte binary public key -> name from the file ("" when the line gave none).
  std::map<std::string, std::string> names;
  // One entry per bad line: "<path>:<line>: <reason>". Good lines are kept regardless.
  std::vector<std::string> errors;

  // The binary keys alone, the form dispatch::zap_handler takes.
  std::set<std::string> keys() const;
};

// Reads an allow list file into `out` (replacing its content). Returns false when the file cannot
// be read (then `error` says why and `out` is empty) or when some lines are bad (then `error`
// names the first and the count, `out.errors` lists them all, and `out.names` still holds every
// good line, so a caller may choose to carry on with them, e.g. on a reload).
bool read_allow_list(const std::string& path, curve_allow_list& out, std::string& error);
// The same on text already in memory; `source` names it in messages (e.g. a file name).
bool parse_allow_list(std::string_view text, std::string_view source, curve_allow_list& out,
                      std::string& error);

// Makes `socket` a CURVE server: its secret key, curve_server=1 and a ZAP domain, so that every
// client handshake is put to the ZAP handler of the socket's context (dispatch::zap_handler).
// Call before bind(). The ZAP handler must already be serving when clients connect: without one,
// libzmq 4.3 admits every client that knows the server's public key.
bool apply_curve_server(zmq::socket_t& socket, const curve_key_pair& server, std::string& error,
                        const std::string& zap_domain = curve_zap_domain);
// Makes `socket` a CURVE client with its own key pair, trusting only a server that holds the
// secret key of `server_public_z85`. Call before connect().
bool apply_curve_client(zmq::socket_t& socket, const curve_key_pair& client,
                        std::string_view server_public_z85, std::string& error);

// What a client needs to speak CURVE: its own key pair and the server's public key.
struct curve_client_keys {
  curve_key_pair client;
  std::string server_public;  // Z85
};

// Reads the client's secret key file (its public key is derived from it) and the server's
// public key, given as a key file or as the 40-character Z85 text itself.
bool load_curve_client_keys(const std::string& secret_key_file, const std::string& server_key,
                            curve_client_keys& out, std::string& error);

}  // namespace dispatch::security
