// File: server/grpc/auth.h
//
// The coordinator's side of authentication (docs/security.md): the server
// credentials of each mode, the join check (HMAC token with timestamp window
// and nonce replay cache; certificate identity under mTLS) and the
// per-worker sessions that later calls must present as metadata
// "fedsim-session". Every rejection is one events.jsonl record
// ("auth_rejected", with the rpc and the reason).
//
// Thread safety: all methods are thread-safe.
#ifndef FEDSIM_SERVER_GRPC_AUTH_H_
#define FEDSIM_SERVER_GRPC_AUTH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/auth.h"
#include "common/runlog/run_log.h"
#include "fedsim/v1/service.pb.h"
#include "grpcpp/grpcpp.h"

namespace fedsim {

inline constexpr char kSessionMetadata[] = "fedsim-session";

class ServerAuth {
 public:
  // `log` (may be null) receives the auth_rejected events.
  ServerAuth(ServerAuthConfig config, RunLog* log);

  bool enabled() const { return config_.mode != AuthMode::kNone; }
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;

  // Checks a join; returns the name to register the worker under (the
  // certificate identity under mTLS, else the requested name).
  // kUnauthenticated: no/bad token, replayed nonce, timestamp outside
  // (-5 s, +305 s), no client certificate identity.
  absl::StatusOr<std::string> AuthenticateJoin(const grpc::ServerContextBase& ctx,
                                               const v1::JoinRequest& request,
                                               absl::Time now);

  // Opens the session of a newly registered worker; returns its credential.
  // Sessions of earlier worker ids under the same identity are closed: the
  // coordinator's Join under a registered identity replaces that worker
  // (a restarted process), so their ids are gone.
  std::string OpenSession(std::int64_t worker, const std::string& identity);
  void CloseSession(std::int64_t worker);
  // Closes the session of every worker for which `registered` is false
  // (declared dead, or replaced): called on every join, so the table holds
  // only registered workers' sessions and those that went since the last
  // join. `registered` is called without this object's lock.
  void RetainSessions(const std::function<bool(std::int64_t)>& registered);
  std::size_t num_sessions() const;

  // Checks a PullTask/PushResult/Leave for `worker`. An id with no session
  // passes (the coordinator answers NOT_FOUND). kPermissionDenied: another
  // certificate identity or a wrong session credential; kUnauthenticated: no
  // session credential.
  absl::Status CheckCall(const grpc::ServerContextBase& ctx, const char* rpc,
                         std::int64_t worker);

  // The certificate identity of the caller: the subject's CN, else its first
  // SAN; empty without a verified client certificate.
  static std::string PeerIdentity(const grpc::ServerContextBase& ctx);

 private:
  struct Session {
    std::string identity;
    std::string token;
  };
  absl::Status Reject(absl::Status status, const grpc::ServerContextBase& ctx,
                      const char* rpc, std::int64_t worker, const std::string& name);

  const ServerAuthConfig config_;
  RunLog* const log_;
  mutable std::mutex mu_;
  std::map<std::string, absl::Time> nonces_;  // nonce -> its join timestamp
  std::map<std::int64_t, Session> sessions_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_GRPC_AUTH_H_
