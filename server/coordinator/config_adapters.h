// File: server/coordinator/config_adapters.h
//
// The config (fedsim.v1.ExperimentConfig) turned into the option structs of
// the pure layers, once, at the edge (STYLE 5.6: libraries take structs):
// the participation model, update validation, the simulated adversary, the
// virtual clock's time model. What the algorithms' strategies take (local
// training, robust rule, server optimiser, stragglers) is in
// algorithms/strategy_options.h. No state; only trace files are read
// (participation and time traces).
#ifndef FEDSIM_SERVER_COORDINATOR_CONFIG_ADAPTERS_H_
#define FEDSIM_SERVER_COORDINATOR_CONFIG_ADAPTERS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/config/experiment.h"
#include "fedsim/v1/config.pb.h"
#include "algorithms/strategy_options.h"
#include "nlohmann/json.hpp"
#include "server/clock/time_model.h"
#include "server/coordinator/validate_update.h"
#include "server/participation/participation.h"
#include "server/strategy/async_fl.h"
#include "server/strategy/byzantine.h"

namespace fedsim {

// The participation model of the config and the true p_n of every client
// (for the known_prob baseline and the run log).
struct ParticipationSetup {
  std::unique_ptr<ParticipationModel> model;
  std::vector<double> probabilities;
};
// kInvalidArgument / kNotFound with one line for what the config names but
// the experiment cannot give (a trace file, data-correlated probabilities
// without labels, p_n = 0 under the Markov model).
absl::StatusOr<ParticipationSetup> MakeParticipation(const v1::ExperimentConfig& config,
                                                     const Experiment& exp);

// aggregation.max_update_norm and norm_bound_action.
UpdateValidation ValidationOf(const v1::ExperimentConfig& config);
// The simulated Byzantine clients (config `adversary`); null without one.
std::shared_ptr<const Adversary> AdversaryOf(const v1::ExperimentConfig& config,
                                             std::int64_t num_clients);
// The run_start block of a non-default aggregation or adversary; null for
// the defaults (default runs log exactly what they logged before).
nlohmann::json RobustInfo(const v1::ExperimentConfig& config,
                          const UpdateValidation& validation, const Adversary* adversary);

// The virtual clock's time model of `n` clients (async.*).
absl::StatusOr<TimeModelSpec> MakeTimeModelSpec(const v1::ExperimentConfig& config,
                                                std::int64_t n);
// The unnormalised importance of every client: 1 (uniform) or n_i (ratio).
std::vector<double> ImportanceMass(const v1::ExperimentConfig& config, const Experiment& e);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_CONFIG_ADAPTERS_H_
