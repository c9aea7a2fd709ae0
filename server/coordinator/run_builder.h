// File: server/coordinator/run_builder.h
//
// Building a run (run.h): the experiment, the run directory (config.json,
// events.jsonl with run_start, metrics.csv), the initial model and the
// engine; or, with --resume, the run directory reopened at its newest
// checkpoint and the engine and the clients' states restored from it.
#ifndef FEDSIM_SERVER_COORDINATOR_RUN_BUILDER_H_
#define FEDSIM_SERVER_COORDINATOR_RUN_BUILDER_H_

#include <string>

#include "absl/status/statusor.h"
#include "fedsim/v1/config.pb.h"
#include "server/coordinator/run.h"

namespace fedsim {

// Builds the experiment for a validated `config` and prepares `out_dir`
// (config.json, events.jsonl with run_start, metrics.csv with its header).
// `runtime` ("embedded" or "distributed") is recorded in run_start.
// kInvalidArgument for what the config asks but cannot be built (the wall
// clock embedded, a missing data file, ...), one line.
absl::StatusOr<CoordinatorRun> PrepareRun(const v1::ExperimentConfig& config,
                                          const std::string& out_dir,
                                          const std::string& runtime);

// Like PrepareRun, but if `out_dir` holds a checkpoint the run continues
// from the newest readable one (`--resume`): metrics.csv loses the rows of
// rounds that will be redone, events.jsonl gets a run_resumed record, and
// the engine and the clients' states are restored. The config must equal
// the checkpointed one except for the runtime, distributed, checkpoint and
// logging sections (kFailedPrecondition otherwise, naming the first
// difference); the checkpoint must be of the config's kind of run
// (kInvalidArgument).
absl::StatusOr<CoordinatorRun> PrepareOrResumeRun(
    const v1::ExperimentConfig& config, const std::string& out_dir,
    const std::string& runtime);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_RUN_BUILDER_H_
