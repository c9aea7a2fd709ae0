// File: common/dp/rdp_accountant.h
//
// Rényi-DP accounting of the Poisson-subsampled Gaussian mechanism
// (ALGORITHMS.md §5.3, Decision 5), as in Opacus' analysis/rdp.py:
//
//   - integer orders alpha >= 2: log A_alpha as a log-sum-exp of the
//     binomial expansion (Mironov, Talwar, Zhang 2019, Sec. 3.2);
//   - fractional orders: the erfc series of Sec. 3.3 of the same paper;
//   - composition: RDP adds order by order over steps, so steps with
//     different (q, z) compose by summing their RDP vectors;
//   - conversion to (epsilon, delta), minimised over the order grid: the
//     tighter bound of Balle et al. 2020 (Opacus, dp-accounting) by default,
//     or the classical one of Mironov 2017;
//   - calibration: the smallest noise multiplier (to a relative 1e-9) whose
//     epsilon does not exceed a target.
//
// Neighbouring data sets differ by adding or removing one example. Pure: no
// I/O, no threads, no randomness.
#ifndef FEDSIM_COMMON_DP_RDP_ACCOUNTANT_H_
#define FEDSIM_COMMON_DP_RDP_ACCOUNTANT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedsim {

enum class RdpConversion {
  // eps = rdp(a) + log((a-1)/a) - (log delta + log a)/(a-1)  (default)
  kTight,
  // eps = rdp(a) + log(1/delta)/(a-1)
  kClassical,
};

// The order grid: the integers 2..max_integer_order, plus (if `fractional`)
// Opacus' fractional orders 1.1, 1.2, ..., 10.9; sorted, without duplicates.
// Decision 5's default is RdpOrders(256, true). REQUIRES: max_integer_order >= 2.
std::vector<double> RdpOrders(int max_integer_order, bool fractional);

// Opacus' DEFAULT_ALPHAS exactly: {1 + x/10 : x = 1..99} ∪ {12, ..., 63}.
std::vector<double> OpacusDefaultOrders();

// RDP epsilon of ONE step of the Poisson-subsampled Gaussian mechanism with
// sampling rate q and noise multiplier z at order `order` (> 1). Special
// cases as in Opacus: q = 0 -> 0; z = 0 -> +inf; q = 1 -> order / (2 z^2).
// REQUIRES: 0 <= q <= 1, z >= 0, order > 1.
double PoissonGaussianRdp(double q, double z, double order);

// The same at every order of `orders`.
std::vector<double> PoissonGaussianRdp(double q, double z,
                                       std::span<const double> orders);

struct PrivacySpent {
  double epsilon = 0.0;  // +inf if no order gives a finite bound
  double order = 0.0;    // the minimising order; NaN if epsilon is +inf
};

// Converts an RDP curve (one value per order) to (epsilon, delta)-DP,
// minimising over the orders; epsilon is clamped at >= 0. An all-zero curve
// (nothing released) gives epsilon 0. REQUIRES: 0 < delta < 1,
// rdp.size() == orders.size().
PrivacySpent RdpToEpsilon(std::span<const double> orders,
                          std::span<const double> rdp, double delta,
                          RdpConversion conversion);

// Accumulates RDP over the steps one data holder ran.
class RdpAccountant {
 public:
  explicit RdpAccountant(std::vector<double> orders);

  // Adds `steps` steps of the Poisson-subsampled Gaussian (q, z).
  void Compose(double q, double z, std::int64_t steps);
  // Adds `steps` steps whose one-step RDP curve is `per_step` (one value per
  // order), e.g. a cached PoissonGaussianRdp.
  void ComposeCurve(std::span<const double> per_step, std::int64_t steps);

  PrivacySpent Spent(double delta, RdpConversion conversion) const;

  const std::vector<double>& orders() const { return orders_; }
  const std::vector<double>& rdp() const { return rdp_; }

 private:
  std::vector<double> orders_;
  std::vector<double> rdp_;
};

// Checks the arguments of one mechanism: q in (0, 1], z >= 0, steps >= 0,
// delta in (0, 1). Each failure is one line naming the value and the rule.
absl::Status ValidatePrivacyArguments(double q, double z, std::int64_t steps,
                                      double delta);

// The smallest noise multiplier z (to a relative 1e-9, rounded up) such
// that `steps` steps at rate q spend at most `target_epsilon` at `delta`;
// never overshoots the target. Fails with kInvalidArgument on bad arguments
// (target_epsilon <= 0, steps < 1, ...) or when the target cannot be met
// with these orders even with unbounded noise.
absl::StatusOr<double> CalibrateNoiseMultiplier(
    double q, std::int64_t steps, double delta, double target_epsilon,
    std::span<const double> orders, RdpConversion conversion);

// The same for several data holders sharing one z: the smallest z such
// that every (q[i], steps[i]) pair spends at most the target.
absl::StatusOr<double> CalibrateNoiseMultiplier(
    std::span<const double> q, std::span<const std::int64_t> steps,
    double delta, double target_epsilon, std::span<const double> orders,
    RdpConversion conversion);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DP_RDP_ACCOUNTANT_H_
