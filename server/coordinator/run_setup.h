// File: server/coordinator/run_setup.h
//
// Everything a coordinator does before round 0 and after the last round,
// shared by the embedded runtime and fedsim-server: build the experiment,
// open the run directory, write the resolved config, create the strategy and
// the initial model; at the end write the final model and the run summary.
#ifndef FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_
#define FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/client_state.h"
#include "common/config/experiment.h"
#include "common/runlog/run_log.h"
#include "fedsim/v1/config.pb.h"
#include "server/coordinator/progress.h"
#include "server/coordinator/async_engine.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/engine.h"
#include "server/coordinator/round_engine.h"
#include "server/coordinator/wall_engine.h"

namespace fedsim {

struct CoordinatorRun {
  v1::ExperimentConfig config;
  std::string runtime;  // "embedded" or "distributed"
  std::unique_ptr<Experiment> experiment;
  std::unique_ptr<RunLog> log;
  // The run's one engine: synchronous rounds, asynchronous steps on the
  // virtual clock, or on the wall clock (distributed runtime only).
  std::unique_ptr<Engine> engine;
  // The clients' own state in the embedded runtime (SCAFFLSA, DiceSGD, a
  // Markov oracle): owned here so that checkpoints can save it.
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
  // what CompletedRounds reports. Written by the drive loop.
  std::int64_t steps_logged = 0;
  // When MaybeCheckpoint last wrote a checkpoint (checkpoint.min_interval_s).
  std::optional<std::chrono::steady_clock::time_point> last_checkpoint;
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

// Builds the experiment for a validated `config` and prepares `out_dir`
// (config.json, events.jsonl with run_start, metrics.csv with its header).
// `runtime` ("embedded" or "distributed") is recorded in run_start.
absl::StatusOr<CoordinatorRun> PrepareRun(const v1::ExperimentConfig& config,
                                          const std::string& out_dir,
                                          const std::string& runtime);

// Like PrepareRun, but if `out_dir` holds a checkpoint the run continues
// from the newest readable one (`--resume`): metrics.csv loses the rows of
// rounds that will be redone, events.jsonl gets a run_resumed record, and
// the engine (and the embedded clients' state) is restored. The config
// must equal the checkpointed one except for the runtime, distributed and
// checkpoint sections (kFailedPrecondition otherwise, naming the first
// difference). A distributed run whose clients keep state cannot resume
// (that state lives in the workers).
absl::StatusOr<CoordinatorRun> PrepareOrResumeRun(
    const v1::ExperimentConfig& config, const std::string& out_dir,
    const std::string& runtime);

// Called after a round or step was published (`report`; the engine has no
// round or step open, except on the wall clock): writes a checkpoint when
// one is due (checkpoint.every, checkpoint.min_interval_s; always after the
// run's last step, `last`). `wall_time_s` is the run time so far, including
// time before a restart. Returns whether it wrote one.
absl::StatusOr<bool> MaybeCheckpoint(CoordinatorRun& run, const StepReport& report,
                                     bool last, const RunSummary& summary,
                                     double wall_time_s);

// The checkpoint of the run after `report`: the report's snapshot (wall
// clock) or the engine's. REQUIRES: no round or step open, but on the wall
// clock.
CheckpointData MakeCheckpointData(const CoordinatorRun& run, const StepReport& report,
                                  const RunSummary& summary, double wall_time_s);

// Writes model.bin and the run_end event (with the task reconciliation).
absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_
