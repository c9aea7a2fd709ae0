#include "common/dp/rdp_accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(e^a + e^b) without overflow.
double LogAdd(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b), lo = std::min(a, b);
  return hi + std::log1p(std::exp(lo - hi));
}

// log(e^a - e^b) for a >= b (Opacus' _log_sub).
double LogSub(double a, double b) {
  if (b == -kInf) return a;
  if (a <= b) return -kInf;  // a == b; a < b is clamped (rounding only)
  const double diff = a - b;
  if (diff > 700.0) return a;  // expm1 would overflow; e^b is negligible
  return std::log(std::expm1(diff)) + b;
}

// log(erfc(x)), accurate in the far right tail where erfc underflows.
double LogErfc(double x) {
  if (x < 20.0) return std::log(std::erfc(x));
  // Asymptotic series: erfc(x) = e^{-x^2} / (x sqrt(pi)) * S(x),
  // S = 1 - 1/(2x^2) + 3/(2x^2)^2 - 15/(2x^2)^3 + 105/(2x^2)^4 - ...
  // At x >= 20 the first omitted term is below 1e-12 relative.
  const double u = 1.0 / (2.0 * x * x);
  const double s = 1.0 - u * (1.0 - 3.0 * u * (1.0 - 5.0 * u * (1.0 - 7.0 * u)));
  return -x * x - std::log(x) - 0.5 * std::log(M_PI) + std::log(s);
}

// log A_alpha for integer alpha >= 2 (0 < q < 1, z > 0).
double LogAInteger(double q, double z, int alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double inv_2z2 = 1.0 / (2.0 * z * z);
  const double lgamma_a1 = std::lgamma(alpha + 1.0);
  double log_a = -kInf;
  for (int k = 0; k <= alpha; ++k) {
    const double log_binom =
        lgamma_a1 - std::lgamma(k + 1.0) - std::lgamma(alpha - k + 1.0);
    const double kd = k;
    const double term = log_binom + kd * log_q + (alpha - k) * log_1mq +
                        (kd * kd - kd) * inv_2z2;
    log_a = LogAdd(log_a, term);
  }
  return log_a;
}

// log A_alpha for fractional alpha (Opacus' _compute_log_a_frac): the two
// halves of the integral, split at z0, as alternating binomial series.
double LogAFractional(double q, double z, double alpha) {
  double log_a0 = -kInf, log_a1 = -kInf;
  const double z2 = z * z;
  const double z0 = z2 * std::log(1.0 / q - 1.0) + 0.5;
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double sqrt2z = std::sqrt(2.0) * z;
  // binom(alpha, i) by its recurrence, kept as log-magnitude and sign.
  double log_abs_coef = 0.0;
  bool coef_positive = true;
  for (std::int64_t i = 0;; ++i) {
    if (i > 0) {
      const double factor = (alpha - static_cast<double>(i) + 1.0) /
                            static_cast<double>(i);
      log_abs_coef += std::log(std::abs(factor));
      if (factor < 0.0) coef_positive = !coef_positive;
    }
    const double id = static_cast<double>(i);
    const double j = alpha - id;
    const double log_t0 = log_abs_coef + id * log_q + j * log_1mq;
    const double log_t1 = log_abs_coef + j * log_q + id * log_1mq;
    const double log_e0 = std::log(0.5) + LogErfc((id - z0) / sqrt2z);
    const double log_e1 = std::log(0.5) + LogErfc((z0 - j) / sqrt2z);
    const double log_s0 = log_t0 + (id * id - id) / (2.0 * z2) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2.0 * z2) + log_e1;
    if (coef_positive) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30.0) break;
    // The series terms decay polynomially at worst; this bound is far past
    // any case where the -30 cut-off is not reached first.
    FEDSIM_CHECK(i < 100000000) << "RDP series did not converge: q = " << q
                                << ", z = " << z << ", order = " << alpha;
  }
  return LogAdd(log_a0, log_a1);
}

bool IsInteger(double x) { return x == std::floor(x); }

}  // namespace

std::vector<double> RdpOrders(int max_integer_order, bool fractional) {
  FEDSIM_CHECK(max_integer_order >= 2);
  std::vector<double> orders;
  if (fractional) {
    for (int x = 1; x <= 99; ++x) {
      const double a = 1.0 + x / 10.0;
      if (!IsInteger(a)) orders.push_back(a);
    }
  }
  for (int a = 2; a <= max_integer_order; ++a) orders.push_back(a);
  std::sort(orders.begin(), orders.end());
  return orders;
}

std::vector<double> OpacusDefaultOrders() {
  std::vector<double> orders;
  for (int x = 1; x <= 99; ++x) orders.push_back(1.0 + x / 10.0);
  for (int a = 12; a <= 63; ++a) orders.push_back(a);
  return orders;
}

double PoissonGaussianRdp(double q, double z, double order) {
  FEDSIM_CHECK(q >= 0.0 && q <= 1.0 && z >= 0.0 && order > 1.0)
      << "q = " << q << ", z = " << z << ", order = " << order;
  if (q == 0.0) return 0.0;
  if (z == 0.0) return kInf;
  if (q == 1.0) return order / (2.0 * z * z);
  if (std::isinf(order)) return kInf;
  const double log_a = IsInteger(order)
                           ? LogAInteger(q, z, static_cast<int>(order))
                           : LogAFractional(q, z, order);
  return log_a / (order - 1.0);
}

std::vector<double> PoissonGaussianRdp(double q, double z,
                                       std::span<const double> orders) {
  std::vector<double> out;
  out.reserve(orders.size());
  for (double a : orders) out.push_back(PoissonGaussianRdp(q, z, a));
  return out;
}

PrivacySpent RdpToEpsilon(std::span<const double> orders,
                          std::span<const double> rdp, double delta,
                          RdpConversion conversion) {
  FEDSIM_CHECK(orders.size() == rdp.size());
  FEDSIM_CHECK(delta > 0.0 && delta < 1.0) << "delta = " << delta;
  if (std::all_of(rdp.begin(), rdp.end(), [](double r) { return r == 0.0; })) {
    return PrivacySpent{0.0, orders.empty() ? std::nan("") : orders.front()};
  }
  PrivacySpent best{kInf, std::nan("")};
  const double log_delta = std::log(delta);
  for (std::size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    double eps;
    if (conversion == RdpConversion::kClassical) {
      eps = rdp[i] - log_delta / (a - 1.0);
    } else {
      eps = rdp[i] + std::log((a - 1.0) / a) -
            (log_delta + std::log(a)) / (a - 1.0);
    }
    if (std::isnan(eps)) continue;
    if (eps < best.epsilon) best = PrivacySpent{eps, a};
  }
  if (best.epsilon < 0.0) best.epsilon = 0.0;
  return best;
}

RdpAccountant::RdpAccountant(std::vector<double> orders)
    : orders_(std::move(orders)), rdp_(orders_.size(), 0.0) {}

void RdpAccountant::Compose(double q, double z, std::int64_t steps) {
  if (steps <= 0) return;
  ComposeCurve(PoissonGaussianRdp(q, z, orders_), steps);
}

void RdpAccountant::ComposeCurve(std::span<const double> per_step,
                                 std::int64_t steps) {
  FEDSIM_CHECK(per_step.size() == rdp_.size());
  if (steps <= 0) return;
  for (std::size_t i = 0; i < rdp_.size(); ++i) {
    rdp_[i] += static_cast<double>(steps) * per_step[i];
  }
}

PrivacySpent RdpAccountant::Spent(double delta, RdpConversion conversion) const {
  return RdpToEpsilon(orders_, rdp_, delta, conversion);
}

absl::Status ValidatePrivacyArguments(double q, double z, std::int64_t steps,
                                      double delta) {
  if (!(q > 0.0 && q <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling rate q = ", q, "; must be in (0, 1]"));
  }
  if (!(z >= 0.0) || std::isinf(z)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "noise multiplier z = ", z, "; must be finite and >= 0"));
  }
  if (steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps = ", steps, "; must be >= 0"));
  }
  if (!(delta > 0.0 && delta < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta = ", delta, "; must be in (0, 1)"));
  }
  return absl::OkStatus();
}

namespace {

double EpsilonAt(double q, std::int64_t steps, double z, double delta,
                 std::span<const double> orders, RdpConversion conversion) {
  std::vector<double> rdp = PoissonGaussianRdp(q, z, orders);
  for (double& r : rdp) r *= static_cast<double>(steps);
  return RdpToEpsilon(orders, rdp, delta, conversion).epsilon;
}

}  // namespace

absl::StatusOr<double> CalibrateNoiseMultiplier(
    double q, std::int64_t steps, double delta, double target_epsilon,
    std::span<const double> orders, RdpConversion conversion) {
  if (!(target_epsilon > 0.0) || std::isinf(target_epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target epsilon = ", target_epsilon, "; must be finite and > 0"));
  }
  if (absl::Status s = ValidatePrivacyArguments(q, 1.0, steps, delta); !s.ok()) {
    return s;
  }
  if (steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps = ", steps, "; calibration needs >= 1"));
  }
  if (orders.empty()) {
    return absl::InvalidArgumentError("calibration needs at least one order");
  }
  // With unbounded noise every RDP value tends to 0 and epsilon to the
  // conversion term alone: a target at or below it cannot be met.
  const std::vector<double> tiny(orders.size(), 1e-300);
  const double floor = RdpToEpsilon(orders, tiny, delta, conversion).epsilon;
  if (!(target_epsilon > floor)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target epsilon = ", target_epsilon, " cannot be met at delta = ", delta,
        ": even unbounded noise gives epsilon >= ", floor,
        " with these orders (raise delta or the largest order)"));
  }
  auto eps = [&](double z) {
    return EpsilonAt(q, steps, z, delta, orders, conversion);
  };
  double lo = 0.0, hi = 1.0;
  while (eps(hi) > target_epsilon) {
    lo = hi;
    hi *= 2.0;
    if (hi > 1e12) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target epsilon = ", target_epsilon, " cannot be met at delta = ",
          delta, " with a noise multiplier below 1e12"));
    }
  }
  // Invariant: eps(hi) <= target < eps(lo) (or lo = 0, where eps = inf).
  while (hi - lo > 1e-9 * hi) {
    const double mid = 0.5 * (lo + hi);
    if (eps(mid) > target_epsilon) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return hi;
}

absl::StatusOr<double> CalibrateNoiseMultiplier(
    std::span<const double> q, std::span<const std::int64_t> steps,
    double delta, double target_epsilon, std::span<const double> orders,
    RdpConversion conversion) {
  FEDSIM_CHECK(q.size() == steps.size());
  if (q.empty()) {
    return absl::InvalidArgumentError("calibration needs at least one (q, steps)");
  }
  // Every holder's epsilon decreases in z, so the answer is the largest of
  // the holders' own calibrated z. Instead of calibrating every distinct
  // (q, steps) pair, calibrate the currently worst one, check the others at
  // that z, and repeat with the worst violator (z only grows).
  std::map<std::pair<double, std::int64_t>, bool> pairs;
  for (std::size_t i = 0; i < q.size(); ++i) pairs[{q[i], steps[i]}] = true;
  auto first = pairs.begin()->first;
  FEDSIM_ASSIGN_OR_RETURN(double z,
                          CalibrateNoiseMultiplier(first.first, first.second,
                                                   delta, target_epsilon,
                                                   orders, conversion));
  while (true) {
    double worst = -1.0;
    std::pair<double, std::int64_t> worst_pair;
    for (const auto& [pair, unused] : pairs) {
      const double e = EpsilonAt(pair.first, pair.second, z, delta, orders,
                                 conversion);
      if (e > worst) {
        worst = e;
        worst_pair = pair;
      }
    }
    if (worst <= target_epsilon) return z;
    FEDSIM_ASSIGN_OR_RETURN(
        const double next,
        CalibrateNoiseMultiplier(worst_pair.first, worst_pair.second, delta,
                                 target_epsilon, orders, conversion));
    z = std::max(next, std::nextafter(z, kInf));
  }
}

}  // namespace fedsim
