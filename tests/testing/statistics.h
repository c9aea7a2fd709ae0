// File: tests/testing/statistics.h
//
// Goodness-of-fit helpers for tests of samplers.
#ifndef FEDSIM_TESTS_TESTING_STATISTICS_H_
#define FEDSIM_TESTS_TESTING_STATISTICS_H_

#include <algorithm>
#include <cmath>
#include <vector>

namespace fedsim::test {

// The Kolmogorov-Smirnov statistic sqrt(n) * sup |F_n - F| of the draws `x`
// against the continuous CDF `cdf`.
template <typename Cdf>
double KolmogorovSmirnov(std::vector<double> x, Cdf cdf) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  double d = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double f = cdf(x[i]);
    d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
  }
  return std::sqrt(n) * d;
}

// P(sqrt(n) D > 1.95) = 0.001 for a correct sampler (Kolmogorov's
// distribution, large n): the threshold at a 0.1 % false-alarm rate.
inline constexpr double kKs001 = 1.95;

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_STATISTICS_H_
