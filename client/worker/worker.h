// File: client/worker/worker.h
//
// A worker process's control loop: join, build the experiment from the
// config the coordinator sends, then pull a task, train the virtual client
// it names, push the result, until the coordinator says the run is over.
// One worker hosts any number of virtual clients: a task names the client,
// and every worker holds the whole (deterministically partitioned) data set.
// Workers keep no client state: a stateful algorithm's task carries its
// client's state, checked against the algorithm's layout, and the result
// takes the updated state back to the coordinator, which owns it.
//
// Failures: UNAVAILABLE and DEADLINE_EXCEEDED are retried with capped,
// jittered exponential backoff (jitter changes timing only, never results);
// NOT_FOUND for the worker id means the coordinator forgot it, so the
// worker joins again. A push is retried with the same task id, which the
// coordinator treats idempotently. While the worker runs, a background
// thread sends a Heartbeat every distributed.heartbeat_interval_s, so that a
// long task does not make the coordinator declare it dead (RELIABILITY 3).
//
// Fault injection for the fault tests wraps the client
// (fault_injecting_client.h); the worker itself knows nothing of it.
//
// Thread safety: Run() is called once; it may run `parallel` loops.
#ifndef FEDSIM_CLIENT_WORKER_WORKER_H_
#define FEDSIM_CLIENT_WORKER_WORKER_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/worker/coordinator_client.h"

namespace fedsim {

struct WorkerOptions {
  // The worker's identity (fedsim-client --worker_name): joining again
  // under it after a crash makes the coordinator re-issue what the
  // earlier process held.
  std::string name = "worker";
  // Replaces config.data.path (the worker's copy of the data).
  std::string data_dir;
  // Non-empty: share the prepared rows with the other workers of this host
  // through a file in this folder (BuildExperiment's row_cache_dir): the
  // first worker writes it, the others map it.
  std::string data_cache;
  // Pull-train-push loops run concurrently in this process.
  int parallel = 1;
  // Give up when the coordinator has been unreachable this long.
  absl::Duration max_unreachable = absl::Seconds(60);
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
  // Set (by a SIGTERM handler) to stop: the loops end after their current
  // task without pushing it, and the worker leaves, so the coordinator
  // re-issues the task. Null: never.
  const std::atomic<bool>* stop = nullptr;
};

// Runs until the run finishes (OK) or a permanent error occurs.
absl::Status RunWorker(const WorkerOptions& options, CoordinatorClient& client);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_WORKER_WORKER_H_
