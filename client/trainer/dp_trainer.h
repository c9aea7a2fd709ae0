// File: client/trainer/dp_trainer.h
//
// Example-level differentially private local training of one client
// (ALGORITHMS.md §5.1-5.2, Decision 5): DP-SGD with per-example clipping
// (DPSGD-GC) and DiceSGD (DP-SGD with clipped error feedback). Pure, like
// RunLocalSgd: data, start point, settings and streams are handed in.
//
// Every step t:
//   1. Poisson sampling: each of the client's rows joins the lot with
//      probability q = L / n (L = ExpectedLotSize(B, n)); an empty lot
//      still makes a (pure-noise) step.
//   2. Per-example gradients g_i (objective.PerExampleGradients, matrix
//      form) and clipping factors f_i = min(1, C1 / ||g_i||).
//   3. DP-SGD:  v = (sum_i f_i g_i + N(0, (z C1)^2 I)) / L.
//      DiceSGD: v = (sum_i f_i g_i) / L + clip(e, C2) + N(0, s^2 I),
//               s = z C1 sqrt(1 + 2 C2/C1) / L, and afterwards
//               e <- (e - clip(e, C2)) + (sum_i (1 - f_i) g_i) / L
//      (the paper's buffer rule; e and C2 live at the mean scale of v).
//   4. w <- w - lr v.
// The number of steps is DpLocalSteps(E, B, max_steps, n). Sampling draws
// come from `sampling` (kDpSampling) and noise from `noise` (kDpNoise); both
// are consumed step after step, so every step has fresh draws.
//
// With C1 = +inf nothing is clipped and the gradient is taken in the
// objective's own matrix form, mean * (|lot| / L): with z = 0 and q = 1
// (B = 0 or B >= n) this is exactly, bit for bit, full-batch RunLocalSgd.
#ifndef FEDSIM_CLIENT_TRAINER_DP_TRAINER_H_
#define FEDSIM_CLIENT_TRAINER_DP_TRAINER_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "client/trainer/local_trainer.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/dp/mechanisms.h"
#include "common/objectives/objective.h"
#include "common/data/augment.h"
#include "common/random/stream.h"

namespace fedsim {

// Runs DP local training from `start` on rows `rows` of `train`.
// `error_buffer` is DiceSGD's e (resized to zeros if empty; updated in
// place) and must be non-null for kDiceSgd. The objective's L2 term is not
// supported (its gradient is not per example); use l2 = 0. Errors as
// RunLocalSgd, plus kInvalidArgument for bad DP settings. `augment`, if
// given, replaces every lot by its augmented copy (local.augment).
absl::StatusOr<LocalTrainingOutput> RunLocalDpSgd(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& start,
    const LocalTrainingSpec& spec, const DpSpec& dp, RngStream& sampling,
    RngStream& noise, FlatVector* error_buffer, Augmenter* augment = nullptr);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_TRAINER_DP_TRAINER_H_
