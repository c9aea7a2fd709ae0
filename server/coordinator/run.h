// File: server/coordinator/run.h
//
// One run of an experiment, as both runtimes drive it (drive.h): the
// resolved config, the experiment (data, partition, objective), the run
// directory's log, the one engine, the clients' own state, and what a
// resumed run carries over. Built by run_builder.h; ended by CompleteRun.
//
// Thread safety: a plain struct. The drive loop and the distributed
// coordinator (under its lock) are its only writers.
#ifndef FEDSIM_SERVER_COORDINATOR_RUN_H_
#define FEDSIM_SERVER_COORDINATOR_RUN_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/base/client_state.h"
#include "common/config/experiment.h"
#include "common/runlog/run_log.h"
#include "fedsim/v1/config.pb.h"
#include "server/coordinator/engine.h"
#include "server/coordinator/round_engine.h"

namespace fedsim {

struct CoordinatorRun {
  v1::ExperimentConfig config;
  std::string runtime;  // "embedded" or "distributed"
  std::unique_ptr<Experiment> experiment;
  std::unique_ptr<RunLog> log;
  // The run's one engine: synchronous rounds, asynchronous steps on the
  // virtual clock, or on the wall clock (distributed runtime only).
  std::unique_ptr<Engine> engine;
  // The clients' own state (SCAFFLSA, SCAFFOLD, DiceSGD, a Markov oracle):
  // the coordinator owns it in both runtimes, so checkpoints save it.
  std::map<std::int64_t, ClientState> client_states;
  // Set when the run continues from a checkpoint.
  bool resumed = false;
  // 0 for a fresh run, the checkpoint's plus one when resumed: task ids
  // carry it (MakeTaskId), so a result computed for an earlier incarnation
  // is refused with kAborted.
  std::int64_t incarnation = 0;
  double resumed_wall_time_s = 0.0;    // run time before the restart
  double resumed_best_accuracy = NAN;
  // The rounds (steps) published so far: evaluated and logged (a wall-clock
  // engine may have taken more that its coordinator has not logged yet);
  // what CompletedRounds reports. Written by the drive loop's executor.
  std::int64_t steps_logged = 0;
  // When the last checkpoint was written (checkpoint.min_interval_s), on
  // the drive loop's clock.
  std::optional<absl::Time> last_checkpoint;
  // Called with the rounds (steps) completed before a checkpoint of them is
  // considered: the crash tests' seam (the binaries kill the process here
  // on FEDSIM_FAULT_KILL_AFTER_ROUND; docs/checkpoint.md). Empty: nothing.
  std::function<void(std::int64_t completed)> before_checkpoint;
};

// The display name of the run's algorithm ("FedAvg", "FedFix", ...).
std::string AlgorithmName(const CoordinatorRun& run);

// The run's engine as a RoundEngine; null for an asynchronous run.
const RoundEngine* RoundEngineOf(const CoordinatorRun& run);

// Rounds (asynchronous runs: aggregation steps) completed so far: the next
// round's index.
std::int64_t CompletedRounds(const CoordinatorRun& run);

// The run's length in rounds (steps) for progress reports after `row`:
// `rounds`, or, for an asynchronous run bounded by async.horizon, the steps
// estimated from the share of the horizon covered so far; the steps done
// once the engine is done.
std::int64_t ProgressTotal(const CoordinatorRun& run, const MetricsRow& row);

// Writes model.bin and the run_end event: the tally's reconciliation and
// the engine's own fields (Engine::AddRunEndFields).
absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_RUN_H_
