// File: common/objectives/network_objective.h
//
// The Objective of a neural network (common/nn/network.h): the mean
// softmax cross-entropy of its logits over a batch, plus (l2 / 2)
// ||params||^2. docs/networks.md.
#ifndef FEDSIM_COMMON_OBJECTIVES_NETWORK_OBJECTIVE_H_
#define FEDSIM_COMMON_OBJECTIVES_NETWORK_OBJECTIVE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "common/nn/network.h"
#include "common/objectives/objective.h"

namespace fedsim {

// Fails with one line if the network cannot be a classifier (fewer than 2
// outputs) or l2 is not finite and >= 0.
absl::StatusOr<std::unique_ptr<Objective>> MakeNetworkObjective(
    std::shared_ptr<const nn::Network> network, double l2, Precision precision);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_OBJECTIVES_NETWORK_OBJECTIVE_H_
