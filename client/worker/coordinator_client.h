// File: client/worker/coordinator_client.h
//
// What a worker needs from the coordinator, independent of the transport.
// The gRPC implementation is client/grpc/grpc_coordinator_client.h; tests
// substitute fakes. Every call returns the coordinator's status (codes as in
// proto/fedsim/v1/service.proto) or kUnavailable / kDeadlineExceeded when
// the coordinator cannot be reached in time.
#ifndef FEDSIM_CLIENT_WORKER_COORDINATOR_CLIENT_H_
#define FEDSIM_CLIENT_WORKER_COORDINATOR_CLIENT_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/task.h"
#include "fedsim/v1/config.pb.h"

namespace fedsim {

struct JoinReply {
  WorkerId worker;
  std::uint64_t run_id = 0;
  v1::ExperimentConfig config;
  // distributed.worker_slowdown's factor for this worker (>= 1).
  double slowdown = 1.0;
};

struct PullResult {
  std::optional<Task> task;
  bool run_finished = false;
  int retry_after_ms = 0;
};

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<JoinReply> Join(const std::string& worker_name) = 0;
  // Long poll, waiting at most `wait`. `dim` is the expected parameter
  // count, used to validate the task before it is handed out.
  virtual absl::StatusOr<PullResult> PullTask(WorkerId worker,
                                              absl::Duration wait,
                                              std::int64_t dim) = 0;
  // Returns whether the push duplicated an accepted result.
  virtual absl::StatusOr<bool> PushResult(WorkerId worker,
                                          const ClientResult& result) = 0;
  virtual absl::Status Leave(WorkerId worker) = 0;
  // A sign of life while a task trains (kNotFound: the coordinator
  // declared this worker dead). Transports without it do nothing.
  virtual absl::Status Heartbeat(WorkerId /*worker*/) { return absl::OkStatus(); }
  // Cancels the calls in flight and fails later ones but Leave with
  // kCancelled (a graceful stop).
  virtual void CancelCalls() {}
};

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_WORKER_COORDINATOR_CLIENT_H_
