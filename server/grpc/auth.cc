#include "server/grpc/auth.h"

#include "absl/strings/str_cat.h"
#include "grpc/grpc_security_constants.h"

namespace fedsim {
namespace {

// At most this many nonces are remembered; each is dropped once its join
// timestamp has left the window, so only a flood of valid joins fills it.
constexpr std::size_t kMaxNonces = 1 << 16;

std::string Metadata(const grpc::ServerContextBase& ctx, const char* key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace

ServerAuth::ServerAuth(ServerAuthConfig config, RunLog* log)
    : config_(std::move(config)), log_(log) {}

std::shared_ptr<grpc::ServerCredentials> ServerAuth::Credentials() const {
  if (config_.mode != AuthMode::kTls && config_.mode != AuthMode::kMtls) {
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(
      config_.mode == AuthMode::kMtls
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_root_certs = config_.ca_pem;
  options.pem_key_cert_pairs.push_back({config_.key_pem, config_.cert_pem});
  return grpc::SslServerCredentials(options);
}

std::string ServerAuth::PeerIdentity(const grpc::ServerContextBase& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  for (const char* key : {GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
    std::vector<grpc::string_ref> values = auth->FindPropertyValues(key);
    if (!values.empty() && values[0].size() > 0) {
      return std::string(values[0].data(), values[0].size());
    }
  }
  return "";
}

absl::Status ServerAuth::Reject(absl::Status status, const grpc::ServerContextBase& ctx,
                                const char* rpc, std::int64_t worker,
                                const std::string& name) {
  if (log_ != nullptr) {
    nlohmann::json event = {{"event", "auth_rejected"},
                            {"rpc", rpc},
                            {"code", absl::StatusCodeToString(status.code())},
                            {"reason", std::string(status.message())},
                            {"peer", ctx.peer()}};
    if (worker != 0) event["worker"] = worker;
    if (!name.empty()) event["worker_name"] = name;
    // Anyone who can reach the port can provoke this: rate limited per
    // peer address (without the port, which changes per connection).
    std::string peer = ctx.peer();
    if (const std::size_t colon = peer.rfind(':');
        colon != std::string::npos && colon > peer.find(':')) {
      peer.resize(colon);
    }
    log_->LimitedEvent(absl::StrCat("auth_rejected ", peer), event).IgnoreError();
  }
  return status;
}

absl::StatusOr<std::string> ServerAuth::AuthenticateJoin(
    const grpc::ServerContextBase& ctx, const v1::JoinRequest& request,
    absl::Time now) {
  const std::string& requested = request.worker_name();
  std::string name = requested;
  if (config_.mode == AuthMode::kMtls) {
    name = PeerIdentity(ctx);
    if (name.empty()) {
      return Reject(absl::UnauthenticatedError(
                        "auth: the client certificate names no identity (CN or SAN)"),
                    ctx, "Join", 0, requested);
    }
  }
  if (!config_.check_token()) return name;
  if (request.auth_hmac().empty()) {
    return Reject(absl::UnauthenticatedError(
                      "auth: the join carries no token; the coordinator requires "
                      "one (fedsim-client --token_file)"),
                  ctx, "Join", 0, name);
  }
  if (request.auth_nonce().size() != static_cast<std::size_t>(kNonceBytes)) {
    return Reject(absl::UnauthenticatedError(absl::StrCat(
                      "auth: auth_nonce has ", request.auth_nonce().size(),
                      " bytes; must have ", kNonceBytes)),
                  ctx, "Join", 0, name);
  }
  const absl::Time stamp = absl::FromUnixMillis(request.auth_timestamp_ms());
  const absl::Duration age = now - stamp;
  if (!(age > -kJoinFutureSkew && age < kJoinMaxAge)) {
    return Reject(absl::UnauthenticatedError(absl::StrCat(
                      "auth: join timestamp is ", absl::ToDoubleSeconds(age),
                      " s old; must be within (-5 s, +305 s) of the coordinator's clock")),
                  ctx, "Join", 0, name);
  }
  auto secret_it = config_.worker_secrets.find(name);
  const std::string& secret = secret_it != config_.worker_secrets.end()
                                  ? secret_it->second
                                  : config_.shared_secret;
  if (secret.empty()) {
    return Reject(absl::UnauthenticatedError(absl::StrCat(
                      "auth: worker name '", name, "' has no secret in the token file")),
                  ctx, "Join", 0, name);
  }
  const std::string expected = JoinHmac(secret, requested, request.auth_timestamp_ms(),
                                        request.auth_nonce());
  if (!ConstantTimeEquals(expected, request.auth_hmac())) {
    return Reject(absl::UnauthenticatedError("auth: bad token (HMAC mismatch)"),
                  ctx, "Join", 0, name);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = nonces_.begin(); it != nonces_.end();) {
      it = now - it->second >= kJoinMaxAge ? nonces_.erase(it) : std::next(it);
    }
    if (nonces_.count(request.auth_nonce()) != 0) {
      return Reject(absl::UnauthenticatedError(
                        "auth: replayed join (this nonce was already used)"),
                    ctx, "Join", 0, name);
    }
    if (nonces_.size() >= kMaxNonces) {
      return Reject(absl::ResourceExhaustedError(absl::StrCat(
                        "auth: ", kMaxNonces, " joins in the last 305 s; retry later")),
                    ctx, "Join", 0, name);
    }
    nonces_.emplace(request.auth_nonce(), stamp);
  }
  return name;
}

std::string ServerAuth::OpenSession(std::int64_t worker, const std::string& identity) {
  std::string token = HexEncode(RandomBytes(32));
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(sessions_, [&](const auto& entry) { return entry.second.identity == identity; });
  sessions_[worker] = Session{identity, token};
  return token;
}

void ServerAuth::CloseSession(std::int64_t worker) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(worker);
}

void ServerAuth::RetainSessions(const std::function<bool(std::int64_t)>& registered) {
  std::vector<std::int64_t> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [worker, session] : sessions_) workers.push_back(worker);
  }
  std::vector<std::int64_t> gone;
  for (std::int64_t worker : workers) {
    if (!registered(worker)) gone.push_back(worker);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (std::int64_t worker : gone) sessions_.erase(worker);
}

std::size_t ServerAuth::num_sessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

absl::Status ServerAuth::CheckCall(const grpc::ServerContextBase& ctx, const char* rpc,
                                   std::int64_t worker) {
  if (!enabled()) return absl::OkStatus();
  Session session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(worker);
    if (it == sessions_.end()) return absl::OkStatus();  // NOT_FOUND follows
    session = it->second;
  }
  if (config_.mode == AuthMode::kMtls) {
    const std::string peer = PeerIdentity(ctx);
    if (peer != session.identity) {
      return Reject(absl::PermissionDeniedError(absl::StrCat(
                        "auth: worker ", worker, " was registered by certificate '",
                        session.identity, "'; this call comes from '", peer, "'")),
                    ctx, rpc, worker, peer);
    }
  }
  const std::string presented = Metadata(ctx, kSessionMetadata);
  if (presented.empty()) {
    return Reject(absl::UnauthenticatedError(absl::StrCat(
                      "auth: the call for worker ", worker,
                      " carries no session credential (", kSessionMetadata, ")")),
                  ctx, rpc, worker, session.identity);
  }
  if (!ConstantTimeEquals(presented, session.token)) {
    return Reject(absl::PermissionDeniedError(absl::StrCat(
                      "auth: the session credential is not that of worker ", worker)),
                  ctx, rpc, worker, session.identity);
  }
  return absl::OkStatus();
}

}  // namespace fedsim
