// File: client/grpc/grpc_coordinator_client.h
//
// CoordinatorClient over gRPC: synchronous stubs on one channel, a deadline
// on every call, message limits matching the coordinator's.
#ifndef FEDSIM_CLIENT_GRPC_GRPC_COORDINATOR_CLIENT_H_
#define FEDSIM_CLIENT_GRPC_GRPC_COORDINATOR_CLIENT_H_

#include <memory>
#include <string>

#include "client/worker/coordinator_client.h"
#include "grpcpp/channel.h"
#include "common/auth/auth.h"

namespace fedsim {

struct GrpcClientOptions {
  std::string target = "127.0.0.1:50051";
  std::int64_t max_message_bytes = 64 << 20;
  absl::Duration rpc_timeout = absl::Seconds(30);  // all calls but PullTask
  // Authentication (docs/security.md). A refused token or certificate, and a
  // failed TLS handshake, come back as kUnauthenticated/kPermissionDenied.
  ClientAuthConfig auth;
  // If set, every call goes over this channel instead of one to `target`
  // (tests: CoordinatorServer::InProcessChannel, no network); `auth` and
  // the keepalive settings are then the channel's own.
  std::shared_ptr<grpc::Channel> channel;
};

// Creates the client. The channel connects lazily; calls fail with
// kUnavailable while the coordinator cannot be reached.
std::unique_ptr<CoordinatorClient> MakeGrpcCoordinatorClient(
    const GrpcClientOptions& options);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_GRPC_GRPC_COORDINATOR_CLIENT_H_
