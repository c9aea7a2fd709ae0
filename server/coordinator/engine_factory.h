// File: server/coordinator/engine_factory.h
//
// The engine of a config (engine.h): the round engine with its
// participation model, strategy and privacy ledger, or an asynchronous
// engine on the virtual or the wall clock with its schedule and weights;
// and the run_start record that describes it.
#ifndef FEDSIM_SERVER_COORDINATOR_ENGINE_FACTORY_H_
#define FEDSIM_SERVER_COORDINATOR_ENGINE_FACTORY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config/experiment.h"
#include "common/runlog/run_log.h"
#include "fedsim/v1/config.pb.h"
#include "nlohmann/json.hpp"
#include "server/coordinator/engine.h"

namespace fedsim {

struct EngineSetup {
  std::unique_ptr<Engine> engine;
  nlohmann::json run_start;  // the run_start record of a fresh run
};

// Builds the engine of `config` over the experiment `e` (which must
// outlive it), starting from `initial`; `runtime` ("embedded" or
// "distributed") decides whether the round quorum applies; task ids carry
// `incarnation`; events go to `log` (may be null). Errors: kInvalidArgument
// (or kNotFound for a missing trace file) with one line for what the
// config asks but the experiment cannot give.
absl::StatusOr<EngineSetup> MakeEngine(const v1::ExperimentConfig& config, const Experiment& e,
                                       const std::string& runtime, std::int64_t incarnation,
                                       RunLog* log, FlatVector initial);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_ENGINE_FACTORY_H_
