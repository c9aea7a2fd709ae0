// File: server/grpc/coordinator_server.h
//
// The gRPC face of a Coordinator: the fedsim.v1.Coordinator service on the
// callback API (handlers never block; a waiting PullTask is a parked reactor
// that holds no thread) plus the standard grpc.health.v1 service.
//
// Usage:
//   CoordinatorServer::Options options;
//   options.listen = "0.0.0.0:50051";   // port 0 picks a free port
//   FEDSIM_ASSIGN_OR_RETURN(auto server,
//                           CoordinatorServer::Start(options, &coordinator));
//   ... coordinator.Run() ...
//   server->Shutdown(absl::Seconds(5));
//
// Thread safety: Start/Shutdown from one thread; gRPC owns the handler threads.
#ifndef FEDSIM_SERVER_GRPC_COORDINATOR_SERVER_H_
#define FEDSIM_SERVER_GRPC_COORDINATOR_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/auth.h"
#include "common/runlog/run_log.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/rpc_stats.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace fedsim {

class CoordinatorServer {
 public:
  struct Options {
    // Empty: no listening port, only InProcessChannel() (tests, fuzzers).
    std::string listen = "0.0.0.0:50051";
    std::int64_t max_message_bytes = 64 << 20;
    // Sent to workers with their id; changes with every coordinator start.
    std::uint64_t run_id = 0;
    // Authentication (docs/security.md); rejections go to `log` if set.
    ServerAuthConfig auth;
    RunLog* log = nullptr;
    // If set (it must outlive the server), every call handled is recorded:
    // method, final status code, bytes, latency (docs/reliability.md, "Load
    // held"). Calls that gRPC refuses before a handler runs (a failed TLS
    // handshake, an oversized message) are not seen.
    RpcStats* stats = nullptr;
  };

  // Binds and starts serving. `coordinator` must outlive the server.
  // Fails with kUnavailable if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const Options& options, Coordinator* coordinator,
      const v1::ExperimentConfig& config);

  ~CoordinatorServer();
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  // The bound port (useful with port 0).
  int port() const;
  // Authentication sessions held (docs/security.md): at most the registered
  // workers' plus those that left since the last join.
  std::size_t num_sessions() const;

  // Marks the health service NOT_SERVING (a graceful stop begins).
  void SetNotServing();
  // A channel to this server inside the process, no network; its message
  // limits are `max_message_bytes` both ways.
  std::shared_ptr<grpc::Channel> InProcessChannel(
      std::int64_t max_message_bytes) const;

  // Marks the health service NOT_SERVING, then stops, letting in-flight
  // calls finish for at most `grace`. Idempotent.
  void Shutdown(absl::Duration grace);

  class Impl;

 private:
  explicit CoordinatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_GRPC_COORDINATOR_SERVER_H_
