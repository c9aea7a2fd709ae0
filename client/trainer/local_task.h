// File: client/trainer/local_task.h
//
// The client step of the algorithms whose clients run plain local training
// and send back their update (FedAvg, FedProx, FedAU and its baselines,
// the asynchronous algorithms, FedVARP, MIFA): local SGD
// (local_trainer.h), or example-level DP-SGD (dp_trainer.h, clipped or
// DiceSGD) when the experiment trains with local DP.
#ifndef FEDSIM_CLIENT_TRAINER_LOCAL_TASK_H_
#define FEDSIM_CLIENT_TRAINER_LOCAL_TASK_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "common/base/client_state.h"
#include "common/base/task.h"
#include "common/data/augment.h"
#include "common/data/dataset.h"
#include "common/dp/mechanisms.h"
#include "common/objectives/objective.h"

namespace fedsim {

// What a local-training client needs of its experiment.
struct LocalTaskInputs {
  const Objective* objective = nullptr;
  const Dataset* train = nullptr;
  std::span<const std::int64_t> rows;  // the client's rows of `train`
  std::int64_t num_examples = 0;       // n_k, reported with the result
  // Local DP (null: none). DiceSGD keeps its error buffer in the client's
  // state, updated on a copy and kept only if the local work succeeded.
  const DpSpec* dp = nullptr;
  // Augmentation of the client's image rows (null: none); its draws come
  // from the stream (seed, kAugment, client, round).
  const AugmentSpec* augment = nullptr;
};

// Runs `task`: without DP, local SGD with the shuffling stream (seed,
// kShuffle, client, round); with DP, DP-SGD with the sampling and noise
// streams (seed, kDpSampling / kDpNoise, client, round). `state` may be
// null unless DiceSGD (kFailedPrecondition). Fails with kInvalidArgument
// for FedProx's proximal term with DP, and as the trainers.
absl::StatusOr<ClientResult> RunLocalTask(const LocalTaskInputs& in, std::uint64_t seed,
                                          const Task& task, ClientState* state);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_TRAINER_LOCAL_TASK_H_
