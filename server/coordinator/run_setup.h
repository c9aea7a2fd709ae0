// File: server/coordinator/run_setup.h
//
// Everything a coordinator does before round 0 and after the last round,
// shared by the embedded runtime and fedsim-server: build the experiment,
// open the run directory, write the resolved config, create the strategy and
// the initial model; at the end write the final model and the run summary.
#ifndef FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_
#define FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config/experiment.h"
#include "common/runlog/run_log.h"
#include "fedsim/v1/config.pb.h"
#include "server/coordinator/async_engine.h"
#include "server/coordinator/round_engine.h"

namespace fedsim {

struct CoordinatorRun {
  v1::ExperimentConfig config;
  std::unique_ptr<Experiment> experiment;
  std::unique_ptr<RunLog> log;
  // Exactly one of the two engines: synchronous rounds, or asynchronous
  // steps on the virtual clock (IsAsyncAlgorithm; embedded runtime only).
  std::unique_ptr<RoundEngine> engine;
  std::unique_ptr<AsyncEngine> async_engine;
};

// The display name of the run's algorithm ("FedAvg", "FedFix", ...).
std::string AlgorithmName(const CoordinatorRun& run);

// Builds the experiment for a validated `config` and prepares `out_dir`
// (config.json, events.jsonl with run_start, metrics.csv with its header).
// `runtime` ("embedded" or "distributed") is recorded in run_start.
absl::StatusOr<CoordinatorRun> PrepareRun(const v1::ExperimentConfig& config,
                                          const std::string& out_dir,
                                          const std::string& runtime);

// Writes model.bin and the run_end event (with the task reconciliation).
absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_RUN_SETUP_H_
