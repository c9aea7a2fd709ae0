// File: server/coordinator/strategy_factory.h
//
// The server strategy of a synchronous algorithm, built from the config.
#ifndef FEDSIM_SERVER_COORDINATOR_STRATEGY_FACTORY_H_
#define FEDSIM_SERVER_COORDINATOR_STRATEGY_FACTORY_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config/experiment.h"
#include "fedsim/v1/config.pb.h"
#include "server/strategy/strategy.h"

namespace fedsim {

// `probabilities`: every client's true p_n (the known_prob baseline).
// kInvalidArgument for an asynchronous algorithm (no SyncStrategy).
absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeStrategy(
    const v1::ExperimentConfig& config, const Experiment& exp,
    const std::vector<double>& probabilities);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_STRATEGY_FACTORY_H_
