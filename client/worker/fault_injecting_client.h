// File: client/worker/fault_injecting_client.h
//
// A CoordinatorClient that wraps the real one and injects the faults of the
// fault tests (docs/reliability.md, "Faults"; leveldb's EnvWrapper idea):
// a delay before every push, N x (1 + task id mod 3) ms, which also
// reorders the pushes of parallel tasks; and every accepted push sent a
// second time, logged on stderr as "[NAME] fault: duplicate push sent for
// task T: duplicate|accepted|<status>". The binaries install it from the
// environment (tools/fault_injection.h); library code never reads it.
//
// Thread safety: as the wrapped client.
#ifndef FEDSIM_CLIENT_WORKER_FAULT_INJECTING_CLIENT_H_
#define FEDSIM_CLIENT_WORKER_FAULT_INJECTING_CLIENT_H_

#include <memory>
#include <string>

#include "client/worker/coordinator_client.h"

namespace fedsim {

struct WorkerFaults {
  int delay_push_ms = 0;       // > 0: the delay's unit
  bool duplicate_push = false;
  std::string name;            // the worker's name, for the log line
  bool any() const { return delay_push_ms > 0 || duplicate_push; }
};

class FaultInjectingClient : public CoordinatorClient {
 public:
  FaultInjectingClient(std::unique_ptr<CoordinatorClient> inner, WorkerFaults faults)
      : inner_(std::move(inner)), faults_(std::move(faults)) {}

  absl::StatusOr<JoinReply> Join(const std::string& worker_name) override {
    return inner_->Join(worker_name);
  }
  absl::StatusOr<PullResult> PullTask(WorkerId worker, absl::Duration wait,
                                      std::int64_t dim) override {
    return inner_->PullTask(worker, wait, dim);
  }
  absl::StatusOr<bool> PushResult(WorkerId worker, const ClientResult& result) override;
  absl::Status Leave(WorkerId worker) override { return inner_->Leave(worker); }
  absl::Status Heartbeat(WorkerId worker) override { return inner_->Heartbeat(worker); }
  void CancelCalls() override { inner_->CancelCalls(); }

 private:
  std::unique_ptr<CoordinatorClient> inner_;
  const WorkerFaults faults_;
};

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_WORKER_FAULT_INJECTING_CLIENT_H_
