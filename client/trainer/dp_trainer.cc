#include "client/trainer/dp_trainer.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {
namespace {

// RunLocalDpSgd on mini-batches and per-example gradients of precision T
// (the objective's precision); clipping factors, the privatised gradient,
// the noise, the error buffer and the parameters in double.
template <typename T>
absl::StatusOr<LocalTrainingOutput> RunLocalDpSgdIn(
    const Objective& objective, const Dataset& data,
    std::span<const std::int64_t> rows, const FlatVector& start,
    const LocalTrainingSpec& spec, const DpSpec& dp, RngStream& sampling,
    RngStream& noise, FlatVector* error_buffer, Augmenter* augment) {
  if (rows.empty()) {
    return absl::InvalidArgumentError("local training: the client has no rows");
  }
  if (spec.epochs < 1 || spec.batch_size < 0 || !(spec.lr > 0.0) ||
      spec.max_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local training: epochs = ", spec.epochs, ", batch_size = ",
        spec.batch_size, ", lr = ", spec.lr, ", max_steps = ", spec.max_steps,
        "; need epochs >= 1, batch_size >= 0, lr > 0, max_steps >= 0"));
  }
  const bool dice = dp.mode == DpMode::kDiceSgd;
  const bool clipping = !std::isinf(dp.clip);
  if (dp.mode == DpMode::kNone) {
    return absl::InvalidArgumentError(
        "DP local training: mode is none (use plain local SGD)");
  }
  if (!(dp.clip > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP local training: clip = ", dp.clip, "; must be > 0"));
  }
  if (!(dp.noise_multiplier >= 0.0) || std::isinf(dp.noise_multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DP local training: noise_multiplier = ", dp.noise_multiplier,
        "; must be finite and >= 0"));
  }
  if (!clipping && (dp.noise_multiplier > 0.0 || dice)) {
    return absl::InvalidArgumentError(
        "DP local training: clip = inf; noise and DiceSGD need a finite clip");
  }
  if (dice && (!(dp.error_clip > 0.0) || std::isinf(dp.error_clip))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DP local training: error_clip = ", dp.error_clip,
        "; must be finite and > 0"));
  }
  const std::int64_t d = objective.NumParameters();
  if (dice) {
    if (error_buffer == nullptr) {
      return absl::InvalidArgumentError(
          "DiceSGD local training needs the client's error buffer");
    }
    if (error_buffer->size() == 0) *error_buffer = FlatVector::Zero(d);
    if (error_buffer->size() != d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DiceSGD error buffer has ", error_buffer->size(), " values, expected ", d));
    }
  }

  const auto n = static_cast<std::int64_t>(rows.size());
  const double lot = ExpectedLotSize(spec.batch_size, n);
  const double q = lot / static_cast<double>(n);
  const std::int64_t total_steps =
      DpLocalSteps(spec.epochs, spec.batch_size, spec.max_steps, n);
  // Noise std on v, the mean-scale privatised gradient.
  const double noise_std = SummedNoiseStd(dp) / lot;

  FlatVector w = start;
  FlatVector v(d), grad(d), residual(d), fed_back(d);
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> per_example, delta;
  RowMajorMatrixD delta_in_place;
  Eigen::VectorXd factors, squared_norms;
  std::vector<std::int64_t> sampled;
  BatchT<T> batch;
  double loss_sum = 0.0;
  std::int64_t loss_count = 0;
  for (std::int64_t step = 0; step < total_steps; ++step) {
    PoissonSample(rows, q, sampling, sampled);
    const auto b = static_cast<std::int64_t>(sampled.size());
    // With augmentation the lot is its augmented copy (the same examples,
    // each cropped and flipped as drawn).
    const Dataset& train = augment != nullptr && b > 0 ? augment->Apply(data, sampled) : data;
    const std::span<const std::int64_t> lot_rows =
        augment != nullptr && b > 0 ? augment->Identity(b)
                                    : std::span<const std::int64_t>(sampled);
    v.setZero();
    if (dice) residual.setZero();  // only DiceSGD feeds it back
    if (b > 0) {
      double loss = 0.0;
      // Ghost clipping on the rows where they are stored (float32 linear
      // models): no batch gathered. Every other step gathers one.
      const bool in_place =
          clipping && dp.ghost_clipping &&
          objective.OuterProductFactorsOnRows(w, train, lot_rows, delta_in_place, squared_norms,
                                              loss);
      if (!in_place) GatherBatch(train, lot_rows, batch);
      if (in_place) {
        ClipFactorsFromSquaredNorms(squared_norms, dp.clip, factors);
        objective.WeightedOuterProductSumOnRows(train, lot_rows, delta_in_place, factors, v);
        v /= lot;
        if (dice) {
          const Eigen::VectorXd kept_out = 1.0 - factors.array();
          objective.WeightedOuterProductSumOnRows(train, lot_rows, delta_in_place, kept_out,
                                                  residual);
          residual /= lot;  // mean of g_i - clip(g_i, C1)
        }
      } else if (!clipping) {
        // No clipping: the objective's mean gradient, rescaled from the
        // realised to the expected lot size (a factor of exactly 1 at q = 1).
        loss = objective.Evaluate(w, batch, &grad);
        v = grad * (static_cast<double>(b) / lot);
      } else if (dp.ghost_clipping &&
                 objective.GhostClippedSums(
                     w, batch,
                     [&](const Eigen::VectorXd& sq, Eigen::VectorXd& f) {
                       ClipFactorsFromSquaredNorms(sq, dp.clip, f);
                     },
                     v, dice ? &residual : nullptr, factors, loss)) {
        // A network: norms layer by layer without the B x d matrix, then
        // sum_i f_i g_i (and sum_i (1 - f_i) g_i) by weighted backward passes.
        v /= lot;
        if (dice) residual /= lot;
      } else if (dp.ghost_clipping) {
        // The same sums from g_i = delta_i (x) [x_i; 1], never formed.
        if (!objective.OuterProductFactors(w, batch, delta, squared_norms, loss)) {
          return absl::InvalidArgumentError(
              "DP local training: ghost_clipping needs a linear model or a network");
        }
        ClipFactorsFromSquaredNorms(squared_norms, dp.clip, factors);
        objective.WeightedOuterProductSum(batch, delta, factors, v);  // sum_i f_i g_i
        v /= lot;
        if (dice) {
          const Eigen::VectorXd kept_out = 1.0 - factors.array();
          objective.WeightedOuterProductSum(batch, delta, kept_out, residual);
          residual /= lot;  // mean of g_i - clip(g_i, C1)
        }
      } else {
        loss = objective.Evaluate(w, batch, nullptr);
        objective.PerExampleGradients(w, batch, per_example);
        ClipFactors(per_example, dp.clip, factors);
        SumRows(per_example, factors, v);  // sum_i f_i g_i
        v /= lot;
        if (dice) {
          const Eigen::VectorXd kept_out = 1.0 - factors.array();
          SumRows(per_example, kept_out, residual);
          residual /= lot;  // mean of g_i - clip(g_i, C1)
        }
      }
      if (!std::isfinite(loss)) {
        return absl::OutOfRangeError(absl::StrCat(
            "local training diverged: loss = ", loss, " at step ", step,
            " (lower local.lr)"));
      }
      loss_sum += loss * static_cast<double>(b);
      loss_count += b;
    }
    if (dice) {
      FlatVector& e = *error_buffer;
      fed_back = e;
      ClipToNorm(fed_back, dp.error_clip);  // clip(e, C2)
      v += fed_back;
      e -= fed_back;
      e += residual;
    }
    AddGaussianNoise(noise_std, noise, v);
    Axpy(-spec.lr, v, w);
  }
  if (!AllFinite(w)) {
    return absl::OutOfRangeError(
        "local training diverged: non-finite parameters (lower local.lr)");
  }
  LocalTrainingOutput out;
  out.update = w - start;
  out.num_steps = total_steps;
  out.mean_loss =
      loss_count > 0 ? loss_sum / static_cast<double>(loss_count) : 0.0;
  return out;
}

}  // namespace

absl::StatusOr<LocalTrainingOutput> RunLocalDpSgd(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& start,
    const LocalTrainingSpec& spec, const DpSpec& dp, RngStream& sampling,
    RngStream& noise, FlatVector* error_buffer, Augmenter* augment) {
  if (objective.precision() == Precision::kFloat32) {
    return RunLocalDpSgdIn<float>(objective, train, rows, start, spec, dp, sampling, noise,
                                  error_buffer, augment);
  }
  return RunLocalDpSgdIn<double>(objective, train, rows, start, spec, dp, sampling, noise,
                                 error_buffer, augment);
}

}  // namespace fedsim
