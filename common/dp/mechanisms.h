// File: common/dp/mechanisms.h
//
// The building blocks of example-level DP-SGD and DiceSGD (ALGORITHMS.md
// §5.1-5.2, Decision 5): the local-DP settings of a client, Poisson
// sampling, per-example clipping of a per-example gradient matrix, and
// Gaussian noise from a keyed stream. Pure: randomness is handed in as
// RngStreams (purposes kDpSampling and kDpNoise).
#ifndef FEDSIM_COMMON_DP_MECHANISMS_H_
#define FEDSIM_COMMON_DP_MECHANISMS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/random/stream.h"

namespace fedsim {

enum class DpMode {
  kNone,     // plain local SGD
  kClip,     // DP-SGD with per-example clipping (DPSGD-GC, §5.1)
  kDiceSgd,  // DP-SGD with clipped error feedback (§5.2)
};

// A client's local DP settings (config: local.dp), the noise multiplier
// already resolved (calibrated if the config asked for a target epsilon).
struct DpSpec {
  DpMode mode = DpMode::kNone;
  // C (DiceSGD's C1), the per-example clipping threshold. +inf disables
  // clipping (tests only: the noise is then unbounded unless z = 0).
  double clip = 1.0;
  // DiceSGD's C2, the threshold of the fed-back error (mean scale).
  double error_clip = 1.0;
  // z: the noise std on the summed clipped gradient is z * C (DP-SGD) or
  // z * C1 * sqrt(1 + 2 C2 / C1) (DiceSGD, the official code's form).
  double noise_multiplier = 1.0;
  // Ghost clipping (local.dp.ghost_clipping): per-example norms and the
  // clipped sum from the objective's outer-product factors, without the
  // B x d matrix of per-example gradients. The same mechanism and epsilon;
  // the floating-point sums run in another order (docs/dp.md).
  bool ghost_clipping = false;
};

// Expected lot size L = q n of a client with n rows and batch size B:
// min(B, n), with B = 0 meaning the whole local data set.
double ExpectedLotSize(std::int64_t batch_size, std::int64_t n);

// Poisson sampling rate q = L / n, in (0, 1].
double SamplingRate(std::int64_t batch_size, std::int64_t n);

// Local steps one task runs: E * ceil(n / L) (E epochs of the expected lot
// size), or max_steps if > 0. REQUIRES: n >= 1.
std::int64_t DpLocalSteps(int epochs, std::int64_t batch_size,
                          std::int64_t max_steps, std::int64_t n);

// Std of the Gaussian noise added to the SUMMED clipped gradient of one
// step: z C for DP-SGD, z C1 sqrt(1 + 2 C2/C1) for DiceSGD; 0 for kNone.
double SummedNoiseStd(const DpSpec& spec);

// Poisson sampling: every element of `rows` is kept independently with
// probability q, in the given order, drawing the geometric gaps between
// kept rows (about q |rows| + 1 uniforms, not one per row). q >= 1 keeps
// every row and draws nothing from `rng`. REQUIRES: q > 0.
void PoissonSample(std::span<const std::int64_t> rows, double q, RngStream& rng,
                   std::vector<std::int64_t>& out);

// Per-example clipping factors f_i = min(1, C / ||g_i||) of the rows of
// `gradients` (f_i = 1 for a zero row or C = +inf), written to `factors`.
// Then clip(g_i, C) = f_i g_i has norm min(||g_i||, C). REQUIRES: C > 0.
void ClipFactors(const RowMajorMatrixD& gradients, double clip,
                 Eigen::VectorXd& factors);
// float32 per-example gradients (model.precision float32): the norms are
// accumulated in double.
void ClipFactors(const RowMajorMatrixF& gradients, double clip,
                 Eigen::VectorXd& factors);

// out = sum_i weights_i g_i over the rows g_i of `gradients` (out resized
// to gradients.cols()); for float32 rows the products and the sum are in
// float32, converted to double at the end.
void SumRows(const RowMajorMatrixD& gradients, const Eigen::VectorXd& weights,
             Eigen::VectorXd& out);
void SumRows(const RowMajorMatrixF& gradients, const Eigen::VectorXd& weights,
             Eigen::VectorXd& out);

// The same factors from the squared norms ||g_i||^2 (ghost clipping).
void ClipFactorsFromSquaredNorms(const Eigen::VectorXd& squared_norms, double clip,
                                 Eigen::VectorXd& factors);

// Scales every row of `gradients` to norm at most C in place (f_i g_i).
void ClipRows(RowMajorMatrixD& gradients, double clip);

// Adds std * N(0, 1) to every element of `x`, in index order: bit for bit
// x[i] + std * z_i with z the values rng.FillGaussian would give (the
// ziggurat sampler, not RngStream::Gaussian's polar method; docs/dp.md).
// std = 0 adds nothing and draws nothing.
void AddGaussianNoise(double std, RngStream& rng, Eigen::Ref<Eigen::VectorXd> x);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DP_MECHANISMS_H_
