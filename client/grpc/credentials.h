// File: client/grpc/credentials.h
//
// A worker's (and fedsim-health's) side of authentication
// (docs/security.md): the channel credentials of each mode, the signed join
// token, and the recognition of a failed TLS handshake, which a worker must
// treat as permanent rather than retry.
#ifndef FEDSIM_CLIENT_GRPC_CREDENTIALS_H_
#define FEDSIM_CLIENT_GRPC_CREDENTIALS_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/auth/auth.h"
#include "fedsim/v1/service.pb.h"
#include "grpcpp/grpcpp.h"

namespace fedsim {

// Insecure for none/token, SSL (with the client certificate under mtls).
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const ClientAuthConfig& auth);

// Sets the server-name override of `auth` on `args`, if any.
void ApplyChannelAuthArgs(const ClientAuthConfig& auth, grpc::ChannelArguments& args);

// Fills the token fields of `request` (a fresh nonce, timestamp `now`) when
// `auth` has a secret; otherwise leaves them empty.
void SignJoinRequest(const ClientAuthConfig& auth, absl::Time now,
                     v1::JoinRequest& request);

// True if `status` (an UNAVAILABLE from a TLS channel) reports a failed TLS
// handshake: an untrusted or mismatched certificate, a rejected or missing
// client certificate, or a plaintext peer.
bool IsTlsHandshakeFailure(const ClientAuthConfig& auth, const absl::Status& status);

// What a failed Join tells the worker: a TLS handshake failure becomes
// kUnauthenticated ("TLS handshake with TARGET failed: ..."), which the
// worker does not retry; a connection the coordinator closed stays
// kUnavailable (it may be restarting) with a hint at the likely auth
// mismatch (a plaintext worker at a TLS port, or no accepted client
// certificate); anything else is returned as it is.
absl::Status ExplainJoinFailure(const ClientAuthConfig& auth, const std::string& target,
                                const absl::Status& status);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_GRPC_CREDENTIALS_H_
