// File: algorithms/strategy_options.h
//
// The config turned into the option structs the server strategies and the
// trainers take (STYLE 5.6: libraries take structs), for the algorithms'
// registrations: every task's local work, the robust rule, the server
// optimiser, stragglers.
#ifndef FEDSIM_ALGORITHMS_STRATEGY_OPTIONS_H_
#define FEDSIM_ALGORITHMS_STRATEGY_OPTIONS_H_

#include "common/base/task.h"
#include "fedsim/v1/config.pb.h"
#include "server/strategy/robust_aggregation.h"
#include "server/strategy/server_optimizer.h"
#include "server/strategy/stragglers.h"

namespace fedsim {

// Every task's local work (local.*, algorithm.prox_mu).
LocalTrainingSpec LocalSpec(const v1::ExperimentConfig& config);
// aggregation.rule and its parameters.
RobustOptions RobustOf(const v1::ExperimentConfig& config);
// algorithm.server_optimizer with algorithm.server_lr.
ServerOptimizerOptions ServerOptimizerOf(const v1::ExperimentConfig& config);
// clients.straggler_fraction, algorithm.keep_stragglers.
StragglerOptions StragglersOf(const v1::ExperimentConfig& config);

}  // namespace fedsim

#endif  // FEDSIM_ALGORITHMS_STRATEGY_OPTIONS_H_
