#include "common/auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& flag,
                                     const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " = ", path, ": cannot read the file (missing or unreadable)"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " = ", path, ": the file is empty"));
  }
  return ss.str();
}

absl::Status CheckSecret(const std::string& secret, const std::string& where) {
  if (secret.size() < static_cast<std::size_t>(kMinSecretLength)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": the secret has ", secret.size(),
        " characters; it must have at least ", kMinSecretLength));
  }
  return absl::OkStatus();
}

// Files a mode does not use are an error, not silently ignored: a user who
// passes a token file with --auth=none believes the server is protected.
absl::Status RejectUnused(const AuthFiles& files, AuthMode mode) {
  auto unused = [&](const std::string& value, const char* flag) -> absl::Status {
    if (value.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " = ", value, " is not used with --auth = ", AuthModeName(mode),
        "; choose the mode that uses it (docs/security.md)"));
  };
  if (mode == AuthMode::kNone) {
    FEDSIM_RETURN_IF_ERROR(unused(files.token_file, "--token_file"));
  }
  if (mode == AuthMode::kNone || mode == AuthMode::kToken) {
    FEDSIM_RETURN_IF_ERROR(unused(files.tls_cert, "--tls_cert"));
    FEDSIM_RETURN_IF_ERROR(unused(files.tls_key, "--tls_key"));
    FEDSIM_RETURN_IF_ERROR(unused(files.tls_ca, "--tls_ca"));
  }
  return absl::OkStatus();
}

absl::Status Require(const std::string& value, const char* flag, AuthMode mode) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " is required with --auth = ", AuthModeName(mode)));
}

}  // namespace

absl::StatusOr<AuthMode> ParseAuthMode(std::string_view text, std::string_view what) {
  if (text.empty() || text == "none") return AuthMode::kNone;
  if (text == "token") return AuthMode::kToken;
  if (text == "tls") return AuthMode::kTls;
  if (text == "mtls") return AuthMode::kMtls;
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(what), " = ", std::string(text),
      "; must be one of none, token, tls, mtls"));
}

const char* AuthModeName(AuthMode mode) {
  switch (mode) {
    case AuthMode::kNone: return "none";
    case AuthMode::kToken: return "token";
    case AuthMode::kTls: return "tls";
    case AuthMode::kMtls: return "mtls";
  }
  return "?";
}

absl::StatusOr<ServerAuthConfig> ParseTokenFileText(const std::string& text,
                                                    const std::string& path) {
  ServerAuthConfig config;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    const std::string line(absl::StripAsciiWhitespace(raw));
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat("--token_file = ", path, " line ", line_no);
    if (words.size() == 1) {
      if (!config.shared_secret.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": a second shared secret; a token file has at most one "
                   "line with a secret alone (others are 'NAME SECRET')"));
      }
      FEDSIM_RETURN_IF_ERROR(CheckSecret(words[0], where));
      config.shared_secret = words[0];
    } else if (words.size() == 2) {
      FEDSIM_RETURN_IF_ERROR(CheckSecret(words[1], where));
      if (!config.worker_secrets.emplace(words[0], words[1]).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": worker name '", words[0], "' is listed twice"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": has ", words.size(),
          " words; each line is 'SECRET' or 'NAME SECRET'"));
    }
  }
  if (!config.check_token()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token_file = ", path, ": holds no secret"));
  }
  return config;
}

absl::StatusOr<ServerAuthConfig> LoadServerAuth(const AuthFiles& files) {
  FEDSIM_ASSIGN_OR_RETURN(const AuthMode mode, ParseAuthMode(files.mode));
  FEDSIM_RETURN_IF_ERROR(RejectUnused(files, mode));
  ServerAuthConfig config;
  if (mode == AuthMode::kToken) {
    FEDSIM_RETURN_IF_ERROR(Require(files.token_file, "--token_file", mode));
  }
  if (!files.token_file.empty()) {
    FEDSIM_ASSIGN_OR_RETURN(std::string text,
                            ReadFile("--token_file", files.token_file));
    FEDSIM_ASSIGN_OR_RETURN(config, ParseTokenFileText(text, files.token_file));
  }
  config.mode = mode;
  if (mode == AuthMode::kTls || mode == AuthMode::kMtls) {
    FEDSIM_RETURN_IF_ERROR(Require(files.tls_cert, "--tls_cert", mode));
    FEDSIM_RETURN_IF_ERROR(Require(files.tls_key, "--tls_key", mode));
    FEDSIM_ASSIGN_OR_RETURN(config.cert_pem, ReadFile("--tls_cert", files.tls_cert));
    FEDSIM_ASSIGN_OR_RETURN(config.key_pem, ReadFile("--tls_key", files.tls_key));
  }
  if (mode == AuthMode::kMtls) {
    FEDSIM_RETURN_IF_ERROR(Require(files.tls_ca, "--tls_ca", mode));
  }
  if (!files.tls_ca.empty()) {
    FEDSIM_ASSIGN_OR_RETURN(config.ca_pem, ReadFile("--tls_ca", files.tls_ca));
  }
  return config;
}

absl::StatusOr<ClientAuthConfig> LoadClientAuth(const AuthFiles& files) {
  FEDSIM_ASSIGN_OR_RETURN(const AuthMode mode, ParseAuthMode(files.mode));
  FEDSIM_RETURN_IF_ERROR(RejectUnused(files, mode));
  ClientAuthConfig config;
  config.mode = mode;
  if (mode == AuthMode::kToken) {
    FEDSIM_RETURN_IF_ERROR(Require(files.token_file, "--token_file", mode));
  }
  if (!files.token_file.empty()) {
    FEDSIM_ASSIGN_OR_RETURN(std::string text,
                            ReadFile("--token_file", files.token_file));
    config.secret = std::string(absl::StripAsciiWhitespace(text));
    const std::string where = absl::StrCat("--token_file = ", files.token_file);
    if (config.secret.find_first_of(" \t\n") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a worker's token file holds its secret alone, on one line"));
    }
    FEDSIM_RETURN_IF_ERROR(CheckSecret(config.secret, where));
  }
  if (mode == AuthMode::kTls || mode == AuthMode::kMtls) {
    FEDSIM_RETURN_IF_ERROR(Require(files.tls_ca, "--tls_ca", mode));
    FEDSIM_ASSIGN_OR_RETURN(config.ca_pem, ReadFile("--tls_ca", files.tls_ca));
  }
  if (mode == AuthMode::kMtls) {
    FEDSIM_RETURN_IF_ERROR(Require(files.tls_cert, "--tls_cert", mode));
    FEDSIM_RETURN_IF_ERROR(Require(files.tls_key, "--tls_key", mode));
    FEDSIM_ASSIGN_OR_RETURN(config.cert_pem, ReadFile("--tls_cert", files.tls_cert));
    FEDSIM_ASSIGN_OR_RETURN(config.key_pem, ReadFile("--tls_key", files.tls_key));
  } else if (!files.tls_cert.empty() || !files.tls_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_cert/--tls_key are client certificates, used only with --auth = "
        "mtls (here --auth = ", AuthModeName(mode), ")"));
  }
  return config;
}

std::string JoinSigningString(std::string_view worker_name,
                              std::int64_t timestamp_ms, std::string_view nonce) {
  return absl::StrCat("fedsim-join-v1\n", std::string(worker_name), "\n",
                      timestamp_ms, "\n", HexEncode(nonce));
}

std::string JoinHmac(std::string_view secret, std::string_view worker_name,
                     std::int64_t timestamp_ms, std::string_view nonce) {
  const std::string message = JoinSigningString(worker_name, timestamp_ms, nonce);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
       out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string RandomBytes(int n) {
  std::string out(static_cast<std::size_t>(n), '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), n) != 1) {
    // Never expected; failing open with predictable bytes is not an option.
    std::abort();
  }
  return out;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace fedsim
