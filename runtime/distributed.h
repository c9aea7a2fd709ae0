// File: runtime/distributed.h
//
// The distributed runtime: a coordinator serving gRPC (ServeRun, what
// fedsim-server runs) and the local multi-process launcher (LaunchRun, what
// `fedsim launch` runs: a coordinator in this process plus P fedsim-client
// processes on loopback). Both write the same run directory as the embedded
// runtime, with bit-identical metrics and model for synchronous algorithms.
#ifndef FEDSIM_RUNTIME_DISTRIBUTED_H_
#define FEDSIM_RUNTIME_DISTRIBUTED_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/auth/auth.h"
#include "common/base/stop_signal.h"
#include "absl/time/time.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/progress.h"
#include "server/coordinator/run_builder.h"

namespace fedsim {

// The coordinator's options from the config's `distributed` section (and
// pinning on the wall clock), as ServeRun and LaunchRun use them.
CoordinatorOptions CoordinatorOptionsFromConfig(const v1::ExperimentConfig& config);

struct ServeOptions {
  std::string listen = "0.0.0.0:50051";
  ProgressFn progress;
  // Called with the bound port once the server is listening.
  std::function<absl::Status(int port)> on_listening;
  // Authentication (docs/security.md): secrets from flags, never the config.
  ServerAuthConfig auth;
  // Called (from the signal thread) when a graceful stop begins.
  std::function<void()> on_stop;
  // On a graceful stop, wait this long for workers to leave before the
  // drain (`fedsim launch`, whose workers are stopped too).
  absl::Duration stop_wait_for_workers = absl::ZeroDuration();
  // Print the per-RPC statistics table (RpcStats::Table) to stderr at the
  // end (the binaries also set it from FEDSIM_RPC_STATS=1). The `rpc_stats`
  // event is written to events.jsonl either way.
  bool print_rpc_stats = false;
  // The process's signal handler (StopSignal::Install, by the binaries);
  // null: no graceful stop on a signal.
  StopSignal* stop_signal = nullptr;
};

// Serves a prepared run until it ends, then waits briefly for workers to
// leave and stops the server.
//
// With options.stop_signal, the first SIGTERM/SIGINT stops the
// run gracefully (RELIABILITY 12): health NOT_SERVING, no more joins or
// tasks, the open round abandoned, calls in flight drained for up to 5 s,
// a checkpoint of the last completed round written (unless the newest one
// is that round), a `shutdown` event; then ServeRun returns kCancelled
// naming the checkpoint, and the caller exits 0. `--resume` continues it
// bit-identically.
absl::StatusOr<RunSummary> ServeRun(CoordinatorRun& run,
                                    const ServeOptions& options);

struct LaunchOptions {
  int workers = 2;
  // The fedsim-client executable; empty = next to the running executable.
  std::string client_binary;
  ProgressFn progress;
  // Authentication between the coordinator and its local workers. launch
  // makes the secrets itself: a random token, or a throw-away CA with a
  // certificate for 127.0.0.1 and one per worker (CN worker-<i>), kept in a
  // private temporary directory removed at the end.
  AuthMode auth = AuthMode::kNone;
  // As ServeOptions::print_rpc_stats and stop_signal (a stop is also
  // forwarded to the workers).
  bool print_rpc_stats = false;
  StopSignal* stop_signal = nullptr;
};

// Runs a prepared run with `workers` local worker processes. Their logs go
// to <run dir>/workers/worker-<i>.log. Fails if the run fails or a worker
// exits with an error; workers are killed if the run fails.
absl::StatusOr<RunSummary> LaunchRun(CoordinatorRun& run,
                                     const LaunchOptions& options);

}  // namespace fedsim

#endif  // FEDSIM_RUNTIME_DISTRIBUTED_H_
