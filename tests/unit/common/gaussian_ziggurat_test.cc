// Tests of RngStream::FillGaussian / AddScaledGaussian, the ziggurat
// sampler of the DP noise (common/random/stream.h): the tables are the
// documented ziggurat (equal strip areas, pinned bits), golden draws from an
// independent Python re-implementation, the first four moments and a
// Kolmogorov-Smirnov test on 10^6 draws, tail frequencies and the tail's
// conditional law on 10^7 draws against the exact normal probabilities
// (std::erfc), and determinism (keys, splitting a fill, threads).
//
// Every statistical bound is 5 standard errors (or the KS test at level
// 0.001) wide; the streams are seeded, so each check is deterministic, and
// the "has teeth" checks show the same bounds reject a sigma off by 1 %.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <thread>
#include <vector>

#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "tests/testing/statistics.h"

namespace fedsim {
namespace gaussian_ziggurat_test {
namespace {

RngStream TestStream() { return RngStream(42, RngPurpose::kTest, 3, 7); }

std::uint64_t Bits(double x) { return std::bit_cast<std::uint64_t>(x); }

// Bit-for-bit equality (tells -0.0 from 0.0).
bool SameBits(std::span<const double> a, std::span<const double> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (Bits(a[i]) != Bits(b[i])) return false;
  }
  return true;
}

std::vector<double> Fill(RngStream& rng, std::size_t n) {
  std::vector<double> z(n);
  rng.FillGaussian(z);
  return z;
}

// Standard normal CDF and upper tail, exact to double precision.
double NormalCdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }
double UpperTail(double x) { return 0.5 * std::erfc(x / std::numbers::sqrt2); }
double NormalPdf(double x) {
  return std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
}

using test::KolmogorovSmirnov;
using test::kKs001;

TEST(GaussianZigguratTest, TablesAreTheDocumentedZiggurat) {
  const GaussianZigguratTables& t = GetGaussianZigguratTables();
  constexpr int n = GaussianZigguratTables::kStrips;
  // r is NumPy's ziggurat_nor_r; v agrees with its (12-digit) section area.
  EXPECT_EQ(t.r, 3.6541528853610088);
  EXPECT_NEAR(t.v, 0.00492867323399, 5e-14);
  // The base strip: rectangle [0, r] x [0, f(r)] plus the tail.
  const double fr = std::exp(-0.5 * t.r * t.r);
  EXPECT_NEAR(t.r * fr + std::sqrt(std::numbers::pi / 2.0) *
                             std::erfc(t.r / std::numbers::sqrt2),
              t.v, 1e-16);
  EXPECT_EQ(t.w[0], t.v / fr / 0x1.0p52);
  EXPECT_EQ(t.k[0], static_cast<std::uint64_t>(0x1.0p52 * (t.r * fr / t.v)));
  // Strip i >= 1: [0, x_i] x [f(x_i), f[i-1]], area v; x_255 = r.
  EXPECT_EQ(t.w[n - 1] * 0x1.0p52, t.r);
  double max_area_error = 0.0;
  for (int i = 1; i < n; ++i) {
    const double x = t.w[i] * 0x1.0p52;
    EXPECT_EQ(t.f[i], std::exp(-0.5 * x * x)) << i;
    if (i >= 2) {
      const double below = t.w[i - 1] * 0x1.0p52;
      EXPECT_LT(below, x) << i;
      EXPECT_EQ(t.k[i], static_cast<std::uint64_t>(0x1.0p52 * (below / x))) << i;
    }
    max_area_error =
        std::max(max_area_error, std::abs(x * (t.f[i - 1] - t.f[i]) / t.v - 1.0));
  }
  EXPECT_EQ(t.k[1], 0u);  // the top strip has no sure-accept rectangle
  EXPECT_LT(max_area_error, 1e-12);
  // The top strip's height reaches just above the peak f(0) = 1.
  EXPECT_GE(t.f[0], 1.0);
  EXPECT_LT(t.f[0], 1.0 + 1e-14);
  // The bits of every entry, as computed by the Python re-implementation of
  // the recipe (gaussian_ziggurat_reference.py, same C library): a libm that
  // rounds differently fails here.
  std::uint64_t h = 0;
  h = Mix64(h ^ Bits(t.r));
  h = Mix64(h ^ Bits(t.v));
  for (int i = 0; i < n; ++i) h = Mix64(h ^ t.k[i]);
  for (int i = 0; i < n; ++i) h = Mix64(h ^ Bits(t.w[i]));
  for (int i = 0; i < n; ++i) h = Mix64(h ^ Bits(t.f[i]));
  EXPECT_EQ(h, 0x23bcc84609ed5ca9ULL);
}

// Golden values from an independent Python re-implementation
// (tests/unit/common/gaussian_ziggurat_reference.py prints them) of the key
// derivation, xoshiro256**, the table recipe and the sampler (the
// FillGaussian loop, wedges and tail included); they pin the DP noise of
// every recorded run.
TEST(GaussianZigguratTest, GoldenDraws) {
  RngStream rng = TestStream();
  const std::vector<double> first = Fill(rng, 8);
  const std::vector<double> expected = {
      -0.12404928796956835, 1.657762409707367,   0.37779214420026364,
      -0.6176222203467481,  0.6791995189237375,  1.6751096755255346,
      -0.8900161834345619,  0.011685251968662132};
  EXPECT_TRUE(SameBits(first, expected));
  RngStream again = TestStream();
  const std::vector<double> z = Fill(again, 100000);
  // Draws 2313 and 2775 came from the tail algorithm.
  EXPECT_EQ(z[2313], -3.7466986925364747);
  EXPECT_EQ(z[2775], 3.7585839533324763);
  std::uint64_t h = 0;
  for (double x : z) h = Mix64(h ^ Bits(x));
  EXPECT_EQ(h, 0xffb22d801b7b929eULL);
  EXPECT_EQ(again.NextU64(), 0x5afc9591f81bcdcbULL);
}

struct Moments {
  double mean, variance, skewness, kurtosis;
};

Moments SampleMoments(const std::vector<double>& x, double scale = 1.0) {
  const double n = static_cast<double>(x.size());
  double sum = 0.0;
  for (double v : x) sum += scale * v;
  const double mean = sum / n;
  double m2 = 0.0, m3 = 0.0, m4 = 0.0;
  for (double v : x) {
    const double c = scale * v - mean;
    m2 += c * c;
    m3 += c * c * c;
    m4 += c * c * c * c;
  }
  m2 /= n;
  m3 /= n;
  m4 /= n;
  return {mean, m2, m3 / std::pow(m2, 1.5), m4 / (m2 * m2)};
}

// Within 5 standard errors of N(0, 1)'s moments for n draws: mean 1/sqrt n,
// variance sqrt(2/n), skewness sqrt(6/n), kurtosis sqrt(24/n).
bool MomentsAreNormal(const Moments& m, double n) {
  return std::abs(m.mean) < 5.0 / std::sqrt(n) &&
         std::abs(m.variance - 1.0) < 5.0 * std::sqrt(2.0 / n) &&
         std::abs(m.skewness) < 5.0 * std::sqrt(6.0 / n) &&
         std::abs(m.kurtosis - 3.0) < 5.0 * std::sqrt(24.0 / n);
}

TEST(GaussianZigguratTest, MomentsAndKolmogorovSmirnovOnAMillionDraws) {
  RngStream rng(1, RngPurpose::kTest, 0, 0);
  const std::vector<double> z = Fill(rng, 1000000);
  const double n = static_cast<double>(z.size());
  const Moments m = SampleMoments(z);
  // n = 10^6: the bounds are 0.005, 0.0071, 0.012 and 0.024.
  EXPECT_TRUE(MomentsAreNormal(m, n))
      << "mean " << m.mean << " variance " << m.variance << " skewness "
      << m.skewness << " kurtosis " << m.kurtosis;
  int positive = 0;
  for (double x : z) positive += x > 0.0 ? 1 : 0;
  EXPECT_NEAR(positive, n / 2, 5.0 * std::sqrt(n / 4));
  const double ks = KolmogorovSmirnov(z, NormalCdf);
  EXPECT_LT(ks, kKs001);
  // The same checks reject a sampler whose sigma is 1 % off.
  EXPECT_FALSE(MomentsAreNormal(SampleMoments(z, 1.01), n));
  EXPECT_FALSE(MomentsAreNormal(SampleMoments(z, 0.99), n));
  EXPECT_GT(KolmogorovSmirnov(z, [](double x) { return NormalCdf(x / 1.01); }),
            kKs001);
}

// Count within 5 binomial standard deviations of n p.
void ExpectFrequency(std::int64_t count, double n, double p, const char* what) {
  EXPECT_NEAR(static_cast<double>(count), n * p, 5.0 * std::sqrt(n * p * (1 - p)))
      << what << ": p = " << p;
}

TEST(GaussianZigguratTest, TailFrequenciesAndTheTailsLawOnTenMillionDraws) {
  const GaussianZigguratTables& t = GetGaussianZigguratTables();
  const double r = t.r;
  RngStream rng(2, RngPurpose::kTest, 0, 0);
  const std::int64_t chunks = 100, chunk = 100000;
  const double n = static_cast<double>(chunks * chunk);
  std::vector<double> z(chunk);
  std::int64_t beyond35 = 0, beyond45 = 0, beyond_r = 0, beyond_r_positive = 0;
  std::vector<double> tail;  // |z| for |z| > r: the tail algorithm's draws
  for (std::int64_t c = 0; c < chunks; ++c) {
    rng.FillGaussian(z);
    for (double x : z) {
      const double a = std::abs(x);
      beyond35 += a > 3.5 ? 1 : 0;
      beyond45 += a > 4.5 ? 1 : 0;
      if (a > r) {
        ++beyond_r;
        beyond_r_positive += x > 0.0 ? 1 : 0;
        tail.push_back(a);
      }
    }
  }
  // P(|Z| > 3.5) = 4.6527e-4 (4653 +- 68), P(|Z| > 4.5) = 6.7953e-6
  // (68 +- 8), P(|Z| > r) = 2.5808e-4 (2581 +- 51).
  ExpectFrequency(beyond35, n, 2.0 * UpperTail(3.5), "|z| > 3.5");
  ExpectFrequency(beyond45, n, 2.0 * UpperTail(4.5), "|z| > 4.5");
  ExpectFrequency(beyond_r, n, 2.0 * UpperTail(r), "|z| > r");
  ExpectFrequency(beyond_r_positive, static_cast<double>(beyond_r), 0.5,
                  "sign in the tail");
  // The tail's law: |Z| given |Z| > r has survival Q(x) / Q(r); its mean is
  // the inverse Mills ratio l = phi(r) / Q(r), its variance 1 + r l - l^2.
  const double m = static_cast<double>(tail.size());
  const double mills = NormalPdf(r) / UpperTail(r);
  const double tail_var = 1.0 + r * mills - mills * mills;
  double sum = 0.0;
  for (double a : tail) sum += a;
  EXPECT_NEAR(sum / m, mills, 5.0 * std::sqrt(tail_var / m));
  const double q_r = UpperTail(r);
  EXPECT_LT(KolmogorovSmirnov(
                tail, [&](double x) { return 1.0 - UpperTail(x) / q_r; }),
            kKs001);
}

TEST(GaussianZigguratTest, SameKeySameDrawsAndASplitFillIsTheSameFill) {
  RngStream a = TestStream(), b = TestStream();
  const std::vector<double> whole = Fill(a, 1000);
  EXPECT_TRUE(SameBits(whole, Fill(b, 1000)));
  const std::uint64_t after = a.NextU64();
  // FillGaussian buffers nothing: any split gives the same values and
  // leaves the stream in the same state.
  for (std::size_t k : {0, 1, 17, 500, 999, 1000}) {
    RngStream s = TestStream();
    std::vector<double> parts(1000);
    s.FillGaussian(std::span<double>(parts).first(k));
    s.FillGaussian(std::span<double>(parts).subspan(k));
    EXPECT_TRUE(SameBits(parts, whole)) << "split at " << k;
    EXPECT_EQ(s.NextU64(), after) << "split at " << k;
  }
  // Another key, other draws.
  RngStream other(42, RngPurpose::kTest, 4, 7);
  EXPECT_FALSE(SameBits(Fill(other, 1000), whole));
}

TEST(GaussianZigguratTest, AddScaledGaussianAddsTheFilledValues) {
  RngStream a = TestStream(), b = TestStream();
  std::vector<double> x(5000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.001 * static_cast<double>(i);
  std::vector<double> expected = x;
  const std::vector<double> z = Fill(a, x.size());
  for (std::size_t i = 0; i < x.size(); ++i) expected[i] += 0.7 * z[i];
  b.AddScaledGaussian(0.7, x);
  EXPECT_TRUE(SameBits(x, expected));
  EXPECT_EQ(a.NextU64(), b.NextU64());
}

TEST(GaussianZigguratTest, LeavesThePolarMethodsSpareAlone) {
  // Gaussian() draws pairs and keeps the second; a fill in between neither
  // uses nor discards it.
  RngStream a = TestStream(), b = TestStream();
  const double a1 = a.Gaussian();
  Fill(a, 10);
  const double a2 = a.Gaussian();
  const double b1 = b.Gaussian();
  const double b2 = b.Gaussian();
  EXPECT_EQ(a1, b1);
  EXPECT_EQ(a2, b2);
  // A fill is its own sequence, not Gaussian()'s.
  RngStream c = TestStream();
  EXPECT_NE(Fill(c, 1)[0], b1);
}

TEST(GaussianZigguratTest, ThreadsDrawWhatOneThreadDraws) {
  // Each thread fills from its own keyed stream (DP noise: one stream per
  // client and round); the values do not depend on the thread or on what
  // other threads draw at the same time.
  constexpr int kThreads = 4;
  std::vector<std::vector<double>> serial(kThreads), parallel(kThreads);
  for (int k = 0; k < kThreads; ++k) {
    RngStream rng(9, RngPurpose::kDpNoise, k, 1);
    serial[k] = Fill(rng, 50000);
  }
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; ++k) {
    threads.emplace_back([k, &parallel] {
      RngStream rng(9, RngPurpose::kDpNoise, k, 1);
      parallel[k] = Fill(rng, 50000);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int k = 0; k < kThreads; ++k) {
    EXPECT_TRUE(SameBits(parallel[k], serial[k])) << "client " << k;
  }
  EXPECT_FALSE(SameBits(serial[0], serial[1]));
}

}  // namespace
}  // namespace gaussian_ziggurat_test
}  // namespace fedsim
