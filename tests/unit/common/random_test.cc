// Tests of common/random: golden outputs that pin the generator (any change
// to the engine, the key derivation or a sampler changes every recorded run
// and must fail here), independence of keyed streams, and the moments of
// every sampler. The statistical bounds are several standard errors wide;
// the streams are seeded, so each check is deterministic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <set>
#include <span>
#include <vector>

#include "common/random/stream.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace random_test {
namespace {

RngStream TestStream() { return RngStream(42, RngPurpose::kTest, 3, 7); }

// The golden values below were computed by an independent Python
// re-implementation of stream.cc (SplitMix64 key mixing, xoshiro256**,
// 53-bit uniforms, Marsaglia's polar method, Lemire's bounded integers) and
// agree with the C++ code bit for bit.
TEST(RngStreamTest, GoldenNextU64) {
  RngStream rng = TestStream();
  EXPECT_EQ(rng.NextU64(), 0x0d6bb4a8901ddddeULL);
  EXPECT_EQ(rng.NextU64(), 0xe2efa88194aadcaeULL);
  EXPECT_EQ(rng.NextU64(), 0x5d70ca7a32228638ULL);
  EXPECT_EQ(rng.NextU64(), 0xc4ac54e93e48931eULL);
}

TEST(RngStreamTest, GoldenNextU64WithoutClientOrRound) {
  RngStream rng(42, RngPurpose::kTest, -1, -1);
  EXPECT_EQ(rng.NextU64(), 0x39b772292ddaa8b3ULL);
  EXPECT_EQ(rng.NextU64(), 0x2d5e7894dcf9fc5eULL);
}

TEST(RngStreamTest, GoldenUniform01) {
  RngStream rng = TestStream();
  EXPECT_EQ(rng.Uniform01(), 0.05242470851236847);
  EXPECT_EQ(rng.Uniform01(), 0.886469394336625);
  EXPECT_EQ(rng.Uniform01(), 0.36500230296418046);
}

TEST(RngStreamTest, GoldenGaussian) {
  RngStream rng = TestStream();
  EXPECT_EQ(rng.Gaussian(), -0.6419321889228471);
  EXPECT_EQ(rng.Gaussian(), 1.2755865388582734);
  EXPECT_EQ(rng.Gaussian(), -0.32151121963340823);
  EXPECT_EQ(rng.Gaussian(), 2.6257341885742562);
}

TEST(RngStreamTest, GoldenUniformInt) {
  RngStream rng = TestStream();
  const std::vector<std::uint64_t> expected = {0, 8, 3, 7, 4, 5, 5, 0};
  for (std::uint64_t e : expected) EXPECT_EQ(rng.UniformInt(10), e);
}

TEST(RngStreamTest, SameKeySameStream) {
  RngStream a = TestStream();
  RngStream b = TestStream();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(a.NextU64(), b.NextU64());
}

TEST(RngStreamTest, EveryKeyComponentChangesTheStream) {
  auto first = [](RngStream rng) {
    std::vector<std::uint64_t> v(4);
    for (auto& x : v) x = rng.NextU64();
    return v;
  };
  const auto base = first(RngStream(42, RngPurpose::kTest, 3, 7));
  const std::vector<std::vector<std::uint64_t>> others = {
      first(RngStream(43, RngPurpose::kTest, 3, 7)),
      first(RngStream(42, RngPurpose::kShuffle, 3, 7)),
      first(RngStream(42, RngPurpose::kTest, 4, 7)),
      first(RngStream(42, RngPurpose::kTest, 3, 8)),
      first(RngStream(42, RngPurpose::kTest, -1, 7)),
      first(RngStream(42, RngPurpose::kTest, 3, -1)),
      // Client and round swapped must not give the same stream.
      first(RngStream(42, RngPurpose::kTest, 7, 3)),
  };
  std::set<std::vector<std::uint64_t>> distinct(others.begin(), others.end());
  distinct.insert(base);
  EXPECT_EQ(distinct.size(), others.size() + 1);
}

TEST(RngStreamTest, Uniform01InRangeWithUniformMoments) {
  RngStream rng(1, RngPurpose::kTest, 0, 0);
  const int n = 200000;
  double sum = 0.0, sum2 = 0.0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.Uniform01();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum2 += u * u;
  }
  // Mean 1/2 (sd of the mean 0.29/sqrt(n) = 6.5e-4), E[u^2] = 1/3.
  EXPECT_NEAR(sum / n, 0.5, 0.004);
  EXPECT_NEAR(sum2 / n, 1.0 / 3.0, 0.004);
}

TEST(RngStreamTest, GaussianMomentsAndTails) {
  RngStream rng(2, RngPurpose::kTest, 0, 0);
  const int n = 200000;
  double sum = 0.0, sum2 = 0.0, sum4 = 0.0;
  int beyond2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng.Gaussian();
    sum += x;
    sum2 += x * x;
    sum4 += x * x * x * x;
    if (std::abs(x) > 2.0) ++beyond2;
  }
  const double mean = sum / n;
  const double var = sum2 / n - mean * mean;
  // Standard errors for n = 2e5: mean 1/sqrt(n) = 0.0022; variance
  // sqrt(2/n) = 0.0032; E[x^4] sqrt(96/n) = 0.022; P(|x| > 2) = 0.0455
  // with sd 4.7e-4. The bounds are about 5-6 standard errors. A sampler
  // whose sigma is off by 6% has variance 1 +- 0.12 and fails by far.
  EXPECT_NEAR(mean, 0.0, 0.012);
  EXPECT_NEAR(var, 1.0, 0.018);
  EXPECT_NEAR(sum4 / n, 3.0, 0.12);
  EXPECT_NEAR(static_cast<double>(beyond2) / n, 0.0455, 0.0028);
}

TEST(RngStreamTest, GammaMoments) {
  // Gamma(k, 1) has mean k and variance k. Shapes below 1 take the boosting
  // branch of the sampler.
  for (double shape : {0.3, 0.5, 1.0, 2.5, 10.0}) {
    RngStream rng(3, RngPurpose::kTest, 0, static_cast<std::int64_t>(shape * 10));
    const int n = 100000;
    double sum = 0.0, sum2 = 0.0;
    for (int i = 0; i < n; ++i) {
      const double g = rng.Gamma(shape);
      ASSERT_GE(g, 0.0);
      sum += g;
      sum2 += g * g;
    }
    const double mean = sum / n;
    const double var = sum2 / n - mean * mean;
    // Standard errors: mean sqrt(k/n); variance k sqrt((2 + 6/k)/n).
    const double se_mean = std::sqrt(shape / n);
    const double se_var = shape * std::sqrt((2.0 + 6.0 / shape) / n);
    EXPECT_NEAR(mean, shape, 6.0 * se_mean) << "shape " << shape;
    EXPECT_NEAR(var, shape, 6.0 * se_var) << "shape " << shape;
  }
}

TEST(RngStreamTest, DirichletOnSimplexWithRightMoments) {
  const int k = 4;
  for (double alpha : {0.1, 0.5, 3.0}) {
    RngStream rng(4, RngPurpose::kTest, 0, static_cast<std::int64_t>(alpha * 10));
    const int n = 40000;
    std::vector<double> sum(k, 0.0), sum2(k, 0.0);
    for (int i = 0; i < n; ++i) {
      const std::vector<double> p = rng.Dirichlet(k, alpha);
      ASSERT_EQ(p.size(), static_cast<std::size_t>(k));
      double total = 0.0;
      for (int j = 0; j < k; ++j) {
        ASSERT_GE(p[j], 0.0);
        total += p[j];
        sum[j] += p[j];
        sum2[j] += p[j] * p[j];
      }
      ASSERT_NEAR(total, 1.0, 1e-12);
    }
    // Symmetric Dirichlet: E p_j = 1/k, Var p_j = (1/k)(1 - 1/k)/(k alpha + 1).
    const double mean = 1.0 / k;
    const double var = mean * (1.0 - mean) / (k * alpha + 1.0);
    for (int j = 0; j < k; ++j) {
      const double m = sum[j] / n;
      const double v = sum2[j] / n - m * m;
      EXPECT_NEAR(m, mean, 6.0 * std::sqrt(var / n)) << "alpha " << alpha;
      // The fourth moment of a Beta is at most its second: se(v) <=
      // sqrt(E p^4 / n) <= sqrt(E p^2 / n).
      EXPECT_NEAR(v, var, 6.0 * std::sqrt((var + mean * mean) / n))
          << "alpha " << alpha;
    }
  }
}

TEST(RngStreamTest, SampleWithoutReplacementDistinctSortedUniform) {
  RngStream rng(5, RngPurpose::kTest, 0, 0);
  const std::int64_t n = 10, m = 3;
  const int trials = 30000;
  std::vector<int> count(n, 0);
  for (int t = 0; t < trials; ++t) {
    const std::vector<std::int64_t> s = rng.SampleWithoutReplacement(n, m);
    ASSERT_EQ(s.size(), static_cast<std::size_t>(m));
    ASSERT_TRUE(std::is_sorted(s.begin(), s.end()));
    ASSERT_EQ(std::adjacent_find(s.begin(), s.end()), s.end()) << "repeat";
    for (std::int64_t x : s) {
      ASSERT_GE(x, 0);
      ASSERT_LT(x, n);
      ++count[x];
    }
  }
  // Every element is picked with probability m/n = 0.3: count ~
  // Binomial(30000, 0.3), sd 79.4; bound 6 sd.
  for (std::int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(count[i], trials * 0.3, 480.0) << "element " << i;
  }
}

TEST(RngStreamTest, SampleWithoutReplacementEdges) {
  RngStream rng(6, RngPurpose::kTest, 0, 0);
  EXPECT_TRUE(rng.SampleWithoutReplacement(5, 0).empty());
  const std::vector<std::int64_t> all = rng.SampleWithoutReplacement(7, 7);
  std::vector<std::int64_t> expected(7);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);
  EXPECT_TRUE(rng.SampleWithoutReplacement(0, 0).empty());
}

TEST(RngStreamTest, UniformIntUnbiasedChiSquare) {
  RngStream rng(7, RngPurpose::kTest, 0, 0);
  const std::uint64_t k = 7;  // not a power of two
  const int n = 70000;
  std::vector<int> count(k, 0);
  for (int i = 0; i < n; ++i) {
    const std::uint64_t x = rng.UniformInt(k);
    ASSERT_LT(x, k);
    ++count[x];
  }
  double chi2 = 0.0;
  const double expected = static_cast<double>(n) / k;
  for (int c : count) chi2 += (c - expected) * (c - expected) / expected;
  // Chi-square with 6 degrees of freedom: P(chi2 > 27.9) = 1e-4.
  EXPECT_LT(chi2, 27.9);
}

TEST(RngStreamTest, UniformIntHugeRangeUsesRejectionCorrectly) {
  // n = 3 * 2^62: a third of the 64-bit products fall in the rejected
  // zone, so the rejection loop runs. Values must stay below n and the
  // three equal sub-ranges [0, 2^62), [2^62, 2^63), [2^63, n) must be
  // equally likely.
  RngStream rng(8, RngPurpose::kTest, 0, 0);
  const std::uint64_t n = 3ULL << 62;
  const int draws = 60000;
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < draws; ++i) {
    const std::uint64_t x = rng.UniformInt(n);
    ASSERT_LT(x, n);
    ++counts[x >> 62];
  }
  // Each ~ Binomial(60000, 1/3), sd 115.5.
  for (int c : counts) EXPECT_NEAR(c, draws / 3.0, 700.0);
  EXPECT_EQ(rng.UniformInt(1), 0u);
}

TEST(RngStreamTest, ShuffleIsAPermutationWithUniformPositions) {
  RngStream rng(9, RngPurpose::kTest, 0, 0);
  const int n = 5, trials = 50000;
  // count[i][j]: how often value i ends at position j; each 1/5.
  std::vector<std::vector<int>> count(n, std::vector<int>(n, 0));
  for (int t = 0; t < trials; ++t) {
    std::vector<int> v = {0, 1, 2, 3, 4};
    rng.Shuffle(std::span<int>(v));
    std::vector<int> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted, (std::vector<int>{0, 1, 2, 3, 4}));
    for (int j = 0; j < n; ++j) ++count[v[j]][j];
  }
  // Binomial(50000, 0.2): sd 89.4.
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) EXPECT_NEAR(count[i][j], trials / 5.0, 540.0);
  }
}

TEST(Mix64Test, KnownValueAndBijectiveOnSample) {
  // SplitMix64's finaliser of 0 (its first output from state 0).
  EXPECT_EQ(Mix64(0), 0xe220a8397b1dcdafULL);
  std::set<std::uint64_t> seen;
  for (std::uint64_t i = 0; i < 1000; ++i) seen.insert(Mix64(i));
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace random_test
}  // namespace fedsim
