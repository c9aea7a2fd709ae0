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
#include "server/coordinator/round_engine.h"
#include "server/coordinator/wall_engine.h"

namespace fedsim {

struct CoordinatorRun {
  v1::ExperimentConfig config;
  std::string runtime;  // "embedded" or "distributed"
  std::unique_ptr<Experiment> experiment;
  std::unique_ptr<RunLog> log;
  // Exactly one of the two engines: synchronous rounds, or asynchronous
  // steps on the virtual clock (IsAsyncAlgorithm; embedded runtime only).
  std::unique_ptr<RoundEngine> engine;
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
  std::unique_ptr<AsyncEngine> async_engine;
  // Asynchronous steps on the wall clock (async.clock = wall; distributed
  // runtime only). When set, `engine` and `async_engine` are null.
  std::unique_ptr<WallEngine> wall_engine;
  // Wall clock: the steps evaluated and logged so far (the engine may have
  // taken more that its coordinator has not logged yet); what
  // CompletedRounds reports. Written by the coordinator under its lock.
  std::int64_t wall_steps_logged = 0;
  // When MaybeCheckpoint last wrote a checkpoint (checkpoint.min_interval_s).
  std::optional<std::chrono::steady_clock::time_point> last_checkpoint;
};

// The display name of the run's algorithm ("FedAvg", "FedFix", ...).
std::string AlgorithmName(const CoordinatorRun& run);

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

// Called after every finished round: writes a checkpoint when one is due
// (checkpoint.every; always after the last round). `wall_time_s` is the run
// time so far, including time before a restart.
absl::Status MaybeCheckpoint(CoordinatorRun& run, const RunSummary& summary,
                             double wall_time_s);

// Whether MaybeCheckpoint writes a checkpoint after the round just finished.
bool CheckpointDue(const CoordinatorRun& run);

// The run's checkpoint as it stands. REQUIRES: a synchronous run, no round
// open.
CheckpointData MakeCheckpointData(const CoordinatorRun& run,
                                  const RunSummary& summary, double wall_time_s);

// The wall clock's MaybeCheckpoint, after `step` was evaluated and logged:
// writes a checkpoint of it when one is due (`last`: the run's last step).
// Returns whether it wrote one.
absl::StatusOr<bool> MaybeCheckpointWallStep(CoordinatorRun& run, const WallStepReport& step,
                                             bool last, const RunSummary& summary,
                                             double wall_time_s);
// The checkpoint of a wall-clock step.
CheckpointData MakeWallCheckpointData(const CoordinatorRun& run, const WallStepReport& step,
                                      const RunSummary& summary, double wall_time_s);

// Writes model.bin and the run_end event (with the task reconciliation).
absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_
