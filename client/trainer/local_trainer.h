// File: client/trainer/local_trainer.h
//
// Local training of one client: E epochs of mini-batch SGD over the client's
// rows (FedAvg's ClientUpdate, ALGORITHMS.md §1.2). Pure: the data, the
// start point, the hyper-parameters and the shuffling stream are handed in;
// nothing is read from a clock, a file or the network.
//
// Each epoch shuffles the client's rows with `rng` and walks them in batches
// of B; the last partial batch is kept (Decision 1). B = 0 means one
// full-batch step per epoch over the rows in their given order, with no
// shuffling (so a full-batch step is the same in every run and process).
// With spec.max_steps > 0 the client takes exactly that many steps instead
// of E epochs, passing over its data as often as needed.
//
// FedProx (spec.prox_mu = mu > 0): every step follows the gradient of the
// batch loss plus mu (w - start), the proximal term's gradient, as the
// FedProx code's PerturbedGradientDescent: w <- w - lr (g + mu (w - start)).
// SCAFFOLD: `gradient_offset` (c - c_i), when given, is added to every
// step's gradient. With mu = 0 and no offset the steps are bit for bit
// those of plain local SGD.
#ifndef FEDSIM_CLIENT_TRAINER_LOCAL_TRAINER_H_
#define FEDSIM_CLIENT_TRAINER_LOCAL_TRAINER_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/objectives/objective.h"
#include "common/data/augment.h"
#include "common/random/stream.h"

namespace fedsim {

struct LocalTrainingOutput {
  FlatVector update;          // final local parameters minus `start`
  std::int64_t num_steps = 0;
  double mean_loss = 0.0;     // example-weighted mean of the batch losses
};

// Runs local SGD from `start` on rows `rows` of `train`. Fails with
// kInvalidArgument if the client has no rows, the spec is out of range
// (including prox_mu < 0) or the offset has the wrong size,
// and with kOutOfRange if training diverges (a non-finite loss or parameter).
// `augment`, if given, replaces every batch by its augmented copy
// (local.augment; common/data/augment.h).
absl::StatusOr<LocalTrainingOutput> RunLocalSgd(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& start,
    const LocalTrainingSpec& spec, RngStream& rng,
    const FlatVector* gradient_offset = nullptr, Augmenter* augment = nullptr);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_TRAINER_LOCAL_TRAINER_H_
