// File: common/auth/auth.h
//
// The transport-independent half of fedsim's authentication
// (docs/security.md): the mode names, the secret and certificate files read
// from flags or the environment (never from the experiment config, which is
// sent to workers and written to config.json), and the HMAC-SHA256 join
// token. No gRPC here: server/grpc/auth.h and client/grpc/credentials.h build
// the transport credentials from these settings.
//
// Join token: the worker sends its name, a timestamp (Unix ms) and a random
// 16-byte nonce, with HMAC-SHA256(secret, JoinSigningString(...)). The
// coordinator accepts a timestamp t iff -5 s < now - t < 305 s (Flower's
// window) and each nonce once.
#ifndef FEDSIM_COMMON_AUTH_AUTH_H_
#define FEDSIM_COMMON_AUTH_AUTH_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedsim {

enum class AuthMode { kNone, kToken, kTls, kMtls };

// "none", "token", "tls" or "mtls"; anything else is kInvalidArgument
// naming `what` (e.g. "--auth").
absl::StatusOr<AuthMode> ParseAuthMode(std::string_view text,
                                       std::string_view what = "--auth");
const char* AuthModeName(AuthMode mode);

// Where the secrets come from, as given by flags or environment variables
// (empty = not given).
struct AuthFiles {
  std::string mode;        // --auth
  std::string token_file;  // --token_file
  std::string tls_cert;    // --tls_cert (PEM)
  std::string tls_key;     // --tls_key (PEM)
  std::string tls_ca;      // --tls_ca (PEM)
};

// The coordinator's settings. Token checking is on in mode kToken, and in
// kTls/kMtls when a token file was given.
struct ServerAuthConfig {
  AuthMode mode = AuthMode::kNone;
  std::string shared_secret;                          // any worker name
  std::map<std::string, std::string> worker_secrets;  // name -> secret
  std::string cert_pem, key_pem, ca_pem;
  bool check_token() const {
    return !shared_secret.empty() || !worker_secrets.empty();
  }
};

// A worker's (or probe's) settings.
struct ClientAuthConfig {
  AuthMode mode = AuthMode::kNone;
  std::string secret;  // token; empty = none
  std::string ca_pem, cert_pem, key_pem;
  // Overrides the name checked against the server certificate (for a
  // certificate that does not name the address dialled).
  std::string server_name;
};

inline constexpr int kMinSecretLength = 16;
inline constexpr int kNonceBytes = 16;
// The accepted join timestamps: -5 s < now - t < +305 s.
inline constexpr absl::Duration kJoinFutureSkew = absl::Seconds(5);
inline constexpr absl::Duration kJoinMaxAge = absl::Seconds(305);

// Reads and checks the coordinator's files. Errors are one line naming the
// flag, the value and the rule (callers exit 2).
absl::StatusOr<ServerAuthConfig> LoadServerAuth(const AuthFiles& files);
absl::StatusOr<ServerAuthConfig> ParseTokenFileText(const std::string& text,
                                                    const std::string& path);
// Reads and checks a worker's files.
absl::StatusOr<ClientAuthConfig> LoadClientAuth(const AuthFiles& files);

// The bytes the join HMAC covers.
std::string JoinSigningString(std::string_view worker_name,
                              std::int64_t timestamp_ms, std::string_view nonce);
// HMAC-SHA256(secret, JoinSigningString(...)), 32 raw bytes.
std::string JoinHmac(std::string_view secret, std::string_view worker_name,
                     std::int64_t timestamp_ms, std::string_view nonce);
// Cryptographically random bytes (OpenSSL RAND_bytes).
std::string RandomBytes(int n);
std::string HexEncode(std::string_view bytes);
// Equality in time independent of where the strings differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_AUTH_AUTH_H_
