#include "client/grpc/credentials.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fedsim {

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const ClientAuthConfig& auth) {
  if (auth.mode != AuthMode::kTls && auth.mode != AuthMode::kMtls) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = auth.ca_pem;
  if (auth.mode == AuthMode::kMtls) {
    options.pem_private_key = auth.key_pem;
    options.pem_cert_chain = auth.cert_pem;
  }
  return grpc::SslCredentials(options);
}

void ApplyChannelAuthArgs(const ClientAuthConfig& auth, grpc::ChannelArguments& args) {
  if (!auth.server_name.empty()) args.SetSslTargetNameOverride(auth.server_name);
}

void SignJoinRequest(const ClientAuthConfig& auth, absl::Time now,
                     v1::JoinRequest& request) {
  if (auth.secret.empty()) return;
  const std::int64_t stamp = absl::ToUnixMillis(now);
  const std::string nonce = RandomBytes(kNonceBytes);
  request.set_auth_timestamp_ms(stamp);
  request.set_auth_nonce(nonce);
  request.set_auth_hmac(JoinHmac(auth.secret, request.worker_name(), stamp, nonce));
}

bool IsTlsHandshakeFailure(const ClientAuthConfig& auth, const absl::Status& status) {
  if (auth.mode != AuthMode::kTls && auth.mode != AuthMode::kMtls) return false;
  if (!absl::IsUnavailable(status)) return false;
  const std::string m = absl::AsciiStrToLower(status.message());
  for (const char* needle : {"handshake", "ssl", "tls", "certificate", "peer name"}) {
    if (absl::StrContains(m, needle)) return true;
  }
  return false;
}

absl::Status ExplainJoinFailure(const ClientAuthConfig& auth, const std::string& target,
                                const absl::Status& status) {
  if (IsTlsHandshakeFailure(auth, status)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "TLS handshake with ", target, " failed: ", status.message()));
  }
  if (absl::IsUnavailable(status) &&
      (absl::StrContains(status.message(), "Socket closed") ||
       absl::StrContains(status.message(), "Connection reset"))) {
    const bool tls = auth.mode == AuthMode::kTls || auth.mode == AuthMode::kMtls;
    return absl::UnavailableError(absl::StrCat(
        status.message(), " (the coordinator closed the connection; ",
        tls ? "does it require a client certificate this worker lacks (--auth=mtls)?"
            : "does it run with TLS (then --auth=tls or mtls)?",
        " docs/security.md)"));
  }
  return status;
}

}  // namespace fedsim
