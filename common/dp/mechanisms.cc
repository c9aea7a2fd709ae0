#include "common/dp/mechanisms.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "common/base/check.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {

double ExpectedLotSize(std::int64_t batch_size, std::int64_t n) {
  FEDSIM_CHECK(n >= 1 && batch_size >= 0);
  return static_cast<double>(batch_size == 0 ? n : std::min(batch_size, n));
}

double SamplingRate(std::int64_t batch_size, std::int64_t n) {
  return ExpectedLotSize(batch_size, n) / static_cast<double>(n);
}

std::int64_t DpLocalSteps(int epochs, std::int64_t batch_size,
                          std::int64_t max_steps, std::int64_t n) {
  if (max_steps > 0) return max_steps;
  const auto lot = static_cast<std::int64_t>(ExpectedLotSize(batch_size, n));
  return static_cast<std::int64_t>(epochs) * ((n + lot - 1) / lot);
}

double SummedNoiseStd(const DpSpec& spec) {
  if (spec.noise_multiplier == 0.0) return 0.0;  // even with clip = +inf
  switch (spec.mode) {
    case DpMode::kNone:
      return 0.0;
    case DpMode::kClip:
      return spec.noise_multiplier * spec.clip;
    case DpMode::kDiceSgd:
      return spec.noise_multiplier * spec.clip *
             std::sqrt(1.0 + 2.0 * spec.error_clip / spec.clip);
  }
  return 0.0;
}

void PoissonSample(std::span<const std::int64_t> rows, double q, RngStream& rng,
                   std::vector<std::int64_t>& out) {
  FEDSIM_CHECK(q > 0.0);
  out.clear();
  if (q >= 1.0) {
    out.assign(rows.begin(), rows.end());
    return;
  }
  // Skip ahead by geometric gaps instead of one coin per row: the gap G
  // before the next kept row has P(G >= k) = (1 - q)^k, and
  // G = floor(log(1 - U) / log(1 - q)) has exactly that law (P(G >= k) =
  // P(1 - U <= (1 - q)^k)). About q n + 1 draws instead of n: the lots are
  // Poisson samples as before, but a seed keeps other rows than with one
  // coin per row (docs/dp.md).
  const double log_keep = std::log1p(-q);  // < 0
  const auto n = static_cast<std::int64_t>(rows.size());
  std::int64_t next = 0;  // the first row the next gap counts from
  while (true) {
    const double gap = std::floor(std::log1p(-rng.Uniform01()) / log_keep);
    if (!(gap < static_cast<double>(n - next))) break;
    next += static_cast<std::int64_t>(gap);
    out.push_back(rows[static_cast<std::size_t>(next)]);
    ++next;
  }
}

void ClipFactors(const RowMajorMatrixD& gradients, double clip,
                 Eigen::VectorXd& factors) {
  FEDSIM_CHECK(clip > 0.0);
  factors.resize(gradients.rows());
  for (Eigen::Index i = 0; i < gradients.rows(); ++i) {
    const double norm = gradients.row(i).norm();
    factors[i] = norm > clip ? clip / norm : 1.0;
  }
}

void ClipFactors(const RowMajorMatrixF& gradients, double clip,
                 Eigen::VectorXd& factors) {
  FEDSIM_CHECK(clip > 0.0);
  factors.resize(gradients.rows());
  for (Eigen::Index i = 0; i < gradients.rows(); ++i) {
    const double norm = std::sqrt(SquaredNormInDouble(gradients.row(i).data(), gradients.cols()));
    factors[i] = norm > clip ? clip / norm : 1.0;
  }
}

void SumRows(const RowMajorMatrixD& gradients, const Eigen::VectorXd& weights,
             Eigen::VectorXd& out) {
  out.resize(gradients.cols());
  out.noalias() = gradients.transpose() * weights;
}

void SumRows(const RowMajorMatrixF& gradients, const Eigen::VectorXd& weights,
             Eigen::VectorXd& out) {
  Eigen::VectorXf sum(gradients.cols());
  sum.noalias() = gradients.transpose() * weights.cast<float>();
  out = sum.cast<double>();
}

void ClipFactorsFromSquaredNorms(const Eigen::VectorXd& squared_norms, double clip,
                                 Eigen::VectorXd& factors) {
  FEDSIM_CHECK(clip > 0.0);
  factors.resize(squared_norms.size());
  for (Eigen::Index i = 0; i < squared_norms.size(); ++i) {
    const double norm = std::sqrt(squared_norms[i]);
    factors[i] = norm > clip ? clip / norm : 1.0;
  }
}

void ClipRows(RowMajorMatrixD& gradients, double clip) {
  Eigen::VectorXd factors;
  ClipFactors(gradients, clip, factors);
  for (Eigen::Index i = 0; i < gradients.rows(); ++i) {
    if (factors[i] != 1.0) gradients.row(i) *= factors[i];
  }
}

void AddGaussianNoise(double std, RngStream& rng, Eigen::Ref<Eigen::VectorXd> x) {
  FEDSIM_CHECK(std >= 0.0);
  if (std == 0.0) return;
  // A Ref<VectorXd> is contiguous (inner stride 1).
  rng.AddScaledGaussian(
      std, std::span<double>(x.data(), static_cast<std::size_t>(x.size())));
}

}  // namespace fedsim
