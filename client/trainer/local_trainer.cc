#include "client/trainer/local_trainer.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {
namespace {

// RunLocalSgd on mini-batches of precision T (the objective's precision):
// the batches and the objective's products in T, the parameters, the
// gradient and the step in double in both precisions.
template <typename T>
absl::StatusOr<LocalTrainingOutput> RunLocalSgdIn(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& start,
    const LocalTrainingSpec& spec, RngStream& rng,
    const FlatVector* gradient_offset, Augmenter* augment) {
  if (rows.empty()) {
    return absl::InvalidArgumentError("local training: the client has no rows");
  }
  if (spec.epochs < 1 || spec.batch_size < 0 || !(spec.lr > 0.0) ||
      spec.max_steps < 0 || !(spec.prox_mu >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local training: epochs = ", spec.epochs, ", batch_size = ",
        spec.batch_size, ", lr = ", spec.lr, ", max_steps = ", spec.max_steps,
        ", prox_mu = ", spec.prox_mu,
        "; need epochs >= 1, batch_size >= 0, lr > 0, max_steps >= 0, "
        "prox_mu >= 0"));
  }
  if (gradient_offset != nullptr &&
      gradient_offset->size() != objective.NumParameters()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local training: gradient offset has ", gradient_offset->size(),
        " values, expected ", objective.NumParameters()));
  }
  if (!(spec.momentum >= 0.0 && spec.momentum < 1.0) ||
      !(spec.grad_clip_norm >= 0.0) ||
      (spec.fresh_batches && (spec.max_steps < 1 || spec.batch_size < 1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local training: momentum = ", spec.momentum, ", grad_clip_norm = ",
        spec.grad_clip_norm, ", fresh_batches = ", spec.fresh_batches,
        "; need momentum in [0, 1), grad_clip_norm >= 0, and fresh_batches "
        "only with max_steps >= 1 and batch_size >= 1"));
  }
  const auto n = static_cast<std::int64_t>(rows.size());
  const std::int64_t b =
      spec.batch_size == 0 ? n : std::min<std::int64_t>(spec.batch_size, n);

  // E epochs of ceil(n / b) steps, or exactly max_steps steps when set
  // (FedAU's I local iterations), reshuffling at every pass over the data.
  const std::int64_t steps_per_pass = (n + b - 1) / b;
  const std::int64_t total_steps =
      spec.max_steps > 0 ? spec.max_steps : spec.epochs * steps_per_pass;

  FlatVector w = start;
  FlatVector grad(objective.NumParameters());
  // Heavy-ball velocity (PyTorch's SGD: v <- mu v + g, w <- w - lr v, v = g
  // at the first step); zero at the start of every task.
  FlatVector velocity;
  if (spec.momentum > 0.0) velocity = FlatVector::Zero(w.size());
  // One SGD step from the gradient in `grad`.
  auto step = [&](std::int64_t index) {
    // FedProx's proximal term and SCAFFOLD's correction c - c_i belong to
    // the step's gradient, before clipping and momentum.
    if (spec.prox_mu > 0.0) grad += spec.prox_mu * (w - start);
    if (gradient_offset != nullptr) grad += *gradient_offset;
    if (spec.grad_clip_norm > 0.0) ClipToNorm(grad, spec.grad_clip_norm);
    if (spec.momentum > 0.0) {
      if (index == 0) {
        velocity = grad;
      } else {
        velocity *= spec.momentum;
        velocity += grad;
      }
      Axpy(-spec.lr, velocity, w);
    } else {
      Axpy(-spec.lr, grad, w);
    }
  };
  std::vector<std::int64_t> order(rows.begin(), rows.end());
  BatchT<T> batch;
  bool gathered_all = false;
  // The loss of a step on `batch_rows` and its gradient (into grad): on the
  // rows where they are stored if the objective can (TrainOnRows; a
  // network's Dropout masks come from the task's stream `rng`), else
  // on a gathered batch (full-batch training gathers once, `whole`).
  // With augmentation every step reads fresh augmented copies of its rows.
  const auto loss_on = [&](std::span<const std::int64_t> batch_rows, bool whole) {
    const Dataset* source = &train;
    if (augment != nullptr) {
      source = &augment->Apply(train, batch_rows);
      batch_rows = augment->Identity(static_cast<std::int64_t>(batch_rows.size()));
      whole = false;
    }
    if (std::optional<double> loss = objective.TrainOnRows(w, *source, batch_rows, &grad, rng)) {
      return *loss;
    }
    if (!gathered_all) GatherBatch(*source, batch_rows, batch);
    gathered_all = whole;
    return objective.Evaluate(w, batch, &grad);
  };
  double loss_sum = 0.0;
  std::int64_t loss_count = 0;
  std::int64_t steps = 0;
  if (spec.fresh_batches) {
    // The FedFix code's next(iter(DataLoader)): every step reshuffles the
    // rows and takes the first b of them, i.e. b rows drawn uniformly
    // without replacement, independently at every step.
    for (; steps < total_steps; ++steps) {
      rng.Shuffle(std::span<std::int64_t>(order));
      const double loss = loss_on(std::span<const std::int64_t>(order).subspan(0, b), false);
      if (!std::isfinite(loss)) {
        return absl::OutOfRangeError(absl::StrCat(
            "local training diverged: loss = ", loss, " at step ", steps,
            " (lower local.lr)"));
      }
      step(steps);
      loss_sum += loss * static_cast<double>(b);
      loss_count += b;
    }
  }
  while (steps < total_steps) {
    if (spec.batch_size != 0) rng.Shuffle(std::span<std::int64_t>(order));
    for (std::int64_t begin = 0; begin < n && steps < total_steps; begin += b) {
      const std::int64_t end = std::min(n, begin + b);
      const double loss =
          loss_on(std::span<const std::int64_t>(order).subspan(begin, end - begin),
                  spec.batch_size == 0);
      if (!std::isfinite(loss)) {
        return absl::OutOfRangeError(absl::StrCat(
            "local training diverged: loss = ", loss, " at step ", steps,
            " (lower local.lr)"));
      }
      step(steps);
      loss_sum += loss * static_cast<double>(end - begin);
      loss_count += end - begin;
      ++steps;
    }
  }
  if (!AllFinite(w)) {
    return absl::OutOfRangeError(
        "local training diverged: non-finite parameters (lower local.lr)");
  }
  LocalTrainingOutput out;
  out.update = w - start;
  out.num_steps = steps;
  out.mean_loss = loss_count > 0 ? loss_sum / static_cast<double>(loss_count) : 0.0;
  return out;
}

}  // namespace

absl::StatusOr<LocalTrainingOutput> RunLocalSgd(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& start,
    const LocalTrainingSpec& spec, RngStream& rng,
    const FlatVector* gradient_offset, Augmenter* augment) {
  if (objective.precision() == Precision::kFloat32) {
    return RunLocalSgdIn<float>(objective, train, rows, start, spec, rng, gradient_offset,
                                augment);
  }
  return RunLocalSgdIn<double>(objective, train, rows, start, spec, rng, gradient_offset,
                               augment);
}

}  // namespace fedsim
