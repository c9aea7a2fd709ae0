// Tests of common/dp: the RDP accountant against the reference values of
// ALGORITHMS.md §5.4 and the closed form at order 2, composition, the two
// conversions, noise calibration (never overshooting), the per-client
// ledger; per-example clipping (norms exactly min(||g||, C)); the Gaussian
// noise's mean and variance; Poisson sampling.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "common/data/dataset.h"
#include "common/dp/mechanisms.h"
#include "common/dp/privacy_ledger.h"
#include "common/dp/rdp_accountant.h"
#include "common/random/stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace dp_test {
namespace {

using ::testing::HasSubstr;

std::vector<double> Integers(int lo, int hi) {
  std::vector<double> out;
  for (int a = lo; a <= hi; ++a) out.push_back(a);
  return out;
}

PrivacySpent Spent(double q, double z, std::int64_t steps,
                   const std::vector<double>& orders, RdpConversion conversion,
                   double delta = 1e-5) {
  RdpAccountant accountant(orders);
  accountant.Compose(q, z, steps);
  return accountant.Spent(delta, conversion);
}

// A value printed with 6 significant digits (§5.4), to its printed
// precision: within half a unit of the last digit (§8.5).
void ExpectPrinted(double actual, double printed, double last_digit) {
  EXPECT_LE(std::abs(actual - printed), 0.5 * last_digit)
      << "actual " << actual << ", printed " << printed;
}

// |actual / expected - 1| <= rel.
void ExpectRelNear(double actual, double expected, double rel) {
  EXPECT_LE(std::abs(actual / expected - 1.0), rel)
      << "actual " << actual << ", expected " << expected;
}

TEST(RdpTest, SingleStepClosedFormAtOrderTwo) {
  // eps_R(2) = log(1 + q^2 (e^{1/z^2} - 1)) (§5.3 item 2).
  for (double q : {1e-4, 0.01, 0.04, 0.3, 0.9}) {
    for (double z : {0.5, 1.0, 1.5, 4.0}) {
      const double closed = std::log1p(q * q * std::expm1(1.0 / (z * z)));
      // The log-space sum loses ~1e-16 absolute to cancellation when the
      // value itself is tiny (q = 1e-4 gives ~1e-10): relative 1e-9.
      ExpectRelNear(PoissonGaussianRdp(q, z, 2.0), closed, 1e-9);
    }
  }
}

TEST(RdpTest, SingleStepReferenceValues) {
  // §5.4: q = 0.01, z = 1.
  ExpectPrinted(PoissonGaussianRdp(0.01, 1.0, 2.0), 1.718134e-4, 1e-10);
  ExpectPrinted(PoissonGaussianRdp(0.01, 1.0, 3.0), 2.646376e-4, 1e-10);
  ExpectPrinted(PoissonGaussianRdp(0.01, 1.0, 4.0), 3.631540e-4, 1e-10);
}

TEST(RdpTest, SpecialCases) {
  EXPECT_EQ(PoissonGaussianRdp(0.0, 1.0, 5.0), 0.0);
  EXPECT_TRUE(std::isinf(PoissonGaussianRdp(0.5, 0.0, 5.0)));
  // q = 1 is the plain Gaussian mechanism: alpha / (2 z^2).
  EXPECT_EQ(PoissonGaussianRdp(1.0, 2.0, 5.0), 5.0 / 8.0);
  EXPECT_EQ(PoissonGaussianRdp(1.0, 2.0, 2.5), 2.5 / 8.0);
  // Subsampling only helps: the subsampled value is below the full one.
  for (double a : {1.5, 2.0, 3.7, 10.0, 64.0}) {
    EXPECT_LT(PoissonGaussianRdp(0.1, 2.0, a), a / 8.0) << a;
  }
}

TEST(RdpTest, FractionalOrdersInterpolateTheIntegerOnes) {
  // RDP is non-decreasing in the order; the fractional series must sit
  // between its integer neighbours.
  const double q = 0.04, z = 1.5;
  double previous = 0.0;
  for (double a : RdpOrders(12, true)) {
    const double r = PoissonGaussianRdp(q, z, a);
    EXPECT_GE(r, previous) << a;
    previous = r;
  }
}

TEST(RdpTest, OrderGrids) {
  const std::vector<double> opacus = OpacusDefaultOrders();
  ASSERT_EQ(opacus.size(), 99u + 52u);
  EXPECT_EQ(opacus.front(), 1.1);
  EXPECT_EQ(opacus[98], 10.9);
  EXPECT_EQ(opacus.back(), 63.0);
  const std::vector<double> grid = RdpOrders(256, true);
  // 90 non-integer fractional orders + integers 2..256.
  EXPECT_EQ(grid.size(), 90u + 255u);
  EXPECT_TRUE(std::is_sorted(grid.begin(), grid.end()));
  EXPECT_EQ(grid.back(), 256.0);
  EXPECT_EQ(RdpOrders(64, false), Integers(2, 64));
}

// §5.4, δ = 1e-5.
TEST(RdpTest, OpacusUnitTestValue) {
  const PrivacySpent opacus =
      Spent(0.04, 1.5, 2250, OpacusDefaultOrders(), RdpConversion::kTight);
  ExpectRelNear(opacus.epsilon, 7.32911117143, 1e-9);
  EXPECT_EQ(opacus.order, 3.9);
  // fedsim's default grid contains Opacus' optimum: same value.
  const PrivacySpent fedsim =
      Spent(0.04, 1.5, 2250, RdpOrders(256, true), RdpConversion::kTight);
  ExpectRelNear(fedsim.epsilon, 7.32911117143, 1e-9);
  EXPECT_EQ(fedsim.order, 3.9);
}

TEST(RdpTest, IntegerOrdersAndBothConversions) {
  const PrivacySpent tight =
      Spent(0.04, 1.5, 2250, Integers(2, 64), RdpConversion::kTight);
  ExpectPrinted(tight.epsilon, 7.32988, 1e-5);
  EXPECT_EQ(tight.order, 4.0);
  const PrivacySpent classical =
      Spent(0.04, 1.5, 2250, Integers(2, 64), RdpConversion::kClassical);
  ExpectPrinted(classical.epsilon, 8.07966, 1e-5);
  EXPECT_EQ(classical.order, 4.0);
}

TEST(RdpTest, AbadiMomentsAccountantExample) {
  const PrivacySpent classical =
      Spent(0.01, 4.0, 10000, Integers(2, 64), RdpConversion::kClassical);
  ExpectPrinted(classical.epsilon, 1.25857, 1e-5);
  EXPECT_EQ(classical.order, 20.0);
  const PrivacySpent tight =
      Spent(0.01, 4.0, 10000, Integers(2, 64), RdpConversion::kTight);
  ExpectPrinted(tight.epsilon, 1.03549, 1e-5);
  EXPECT_EQ(tight.order, 17.0);
  const PrivacySpent opacus =
      Spent(0.01, 4.0, 10000, OpacusDefaultOrders(), RdpConversion::kTight);
  ExpectPrinted(opacus.epsilon, 1.03549, 1e-5);
}

TEST(RdpTest, HeterogeneousCompositionOpacusDocstring) {
  // (q = 1e-5, z = 1, 10 steps) then (q = 1e-4, z = 3, 4 steps), orders 2..32.
  RdpAccountant accountant(Integers(2, 32));
  accountant.Compose(1e-5, 1.0, 10);
  accountant.Compose(1e-4, 3.0, 4);
  const PrivacySpent spent = accountant.Spent(1e-5, RdpConversion::kTight);
  EXPECT_NEAR(spent.epsilon, 0.336, 0.0005);
  EXPECT_EQ(spent.order, 23.0);
  // Composition adds RDP order by order.
  const std::vector<double> orders = Integers(2, 32);
  const std::vector<double> a = PoissonGaussianRdp(1e-5, 1.0, orders);
  const std::vector<double> b = PoissonGaussianRdp(1e-4, 3.0, orders);
  for (std::size_t i = 0; i < orders.size(); ++i) {
    EXPECT_DOUBLE_EQ(accountant.rdp()[i], 10 * a[i] + 4 * b[i]) << orders[i];
  }
}

TEST(RdpTest, NothingReleasedIsZeroAndConversionsAreOrdered) {
  RdpAccountant none(RdpOrders(256, true));
  EXPECT_EQ(none.Spent(1e-5, RdpConversion::kTight).epsilon, 0.0);
  // The tighter conversion is never worse than the classical one.
  for (double z : {0.8, 1.1, 2.0, 5.0}) {
    const double tight =
        Spent(0.02, z, 500, RdpOrders(256, true), RdpConversion::kTight).epsilon;
    const double classical =
        Spent(0.02, z, 500, RdpOrders(256, true), RdpConversion::kClassical).epsilon;
    EXPECT_LT(tight, classical) << z;
  }
  // No noise: no finite guarantee.
  EXPECT_TRUE(std::isinf(
      Spent(0.02, 0.0, 1, RdpOrders(64, true), RdpConversion::kTight).epsilon));
}

TEST(RdpTest, CalibrationMatchesOpacusAndNeverOvershoots) {
  // q = 0.04, 2,250 steps, δ = 1e-5, ε = 8: crossing at z = 1.41579.
  for (const std::vector<double>& orders :
       {OpacusDefaultOrders(), RdpOrders(256, true)}) {
    absl::StatusOr<double> z = CalibrateNoiseMultiplier(
        0.04, 2250, 1e-5, 8.0, orders, RdpConversion::kTight);
    ASSERT_TRUE(z.ok()) << z.status();
    EXPECT_NEAR(*z, 1.41579, 5e-6);
    EXPECT_LE(Spent(0.04, *z, 2250, orders, RdpConversion::kTight).epsilon, 8.0);
    // Minimal: a slightly smaller z overshoots.
    EXPECT_GT(Spent(0.04, *z * (1 - 1e-8), 2250, orders, RdpConversion::kTight)
                  .epsilon,
              8.0);
  }
}

TEST(RdpTest, CalibrationOverSeveralHoldersTakesTheWorst) {
  const std::vector<double> orders = RdpOrders(64, true);
  const std::vector<double> q = {0.01, 0.05, 0.02};
  const std::vector<std::int64_t> steps = {3000, 200, 1000};
  absl::StatusOr<double> all =
      CalibrateNoiseMultiplier(q, steps, 1e-5, 2.0, orders, RdpConversion::kTight);
  ASSERT_TRUE(all.ok()) << all.status();
  double worst = 0.0;
  for (std::size_t i = 0; i < q.size(); ++i) {
    absl::StatusOr<double> one = CalibrateNoiseMultiplier(
        q[i], steps[i], 1e-5, 2.0, orders, RdpConversion::kTight);
    ASSERT_TRUE(one.ok());
    worst = std::max(worst, *one);
    EXPECT_LE(Spent(q[i], *all, steps[i], orders, RdpConversion::kTight).epsilon,
              2.0);
  }
  EXPECT_EQ(*all, worst);
}

TEST(RdpTest, UnreachableTargetsAndBadArgumentsAreRejected) {
  const std::vector<double> orders = RdpOrders(256, true);
  absl::StatusOr<double> z = CalibrateNoiseMultiplier(
      0.04, 100, 1e-5, 0.01, orders, RdpConversion::kTight);
  ASSERT_FALSE(z.ok());
  EXPECT_EQ(z.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(z.status().message(), HasSubstr("cannot be met"));
  EXPECT_EQ(std::string(z.status().message()).find('\n'), std::string::npos);
  EXPECT_FALSE(CalibrateNoiseMultiplier(0.04, 100, 1e-5, -1.0, orders,
                                        RdpConversion::kTight).ok());
  EXPECT_FALSE(CalibrateNoiseMultiplier(0.04, 0, 1e-5, 1.0, orders,
                                        RdpConversion::kTight).ok());
  EXPECT_FALSE(CalibrateNoiseMultiplier(1.5, 10, 1e-5, 1.0, orders,
                                        RdpConversion::kTight).ok());
  EXPECT_THAT(ValidatePrivacyArguments(0.0, 1.0, 1, 1e-5).message(),
              HasSubstr("must be in (0, 1]"));
  EXPECT_THAT(ValidatePrivacyArguments(1.01, 1.0, 1, 1e-5).message(),
              HasSubstr("must be in (0, 1]"));
  EXPECT_THAT(ValidatePrivacyArguments(0.5, -0.1, 1, 1e-5).message(),
              HasSubstr(">= 0"));
  EXPECT_THAT(ValidatePrivacyArguments(0.5, 1.0, 1, 1.0).message(),
              HasSubstr("delta = 1; must be in (0, 1)"));
  EXPECT_THAT(ValidatePrivacyArguments(0.5, 1.0, -1, 1e-5).message(),
              HasSubstr("steps = -1"));
  EXPECT_TRUE(ValidatePrivacyArguments(1.0, 0.0, 0, 0.5).ok());
}

TEST(PrivacyLedgerTest, ComposesEachClientsOwnSteps) {
  PrivacyLedgerOptions o;
  o.orders = RdpOrders(64, true);
  o.delta = 1e-5;
  o.noise_multiplier = 1.2;
  o.sampling_rates = {0.1, 0.05, 0.1};
  o.steps_per_task = {10, 20, 10};
  PrivacyLedger ledger(o);
  EXPECT_EQ(ledger.Summarize().max, 0.0);
  ledger.Charge(0, 10);
  ledger.Charge(1, 20);
  ledger.Charge(1, 20);
  const double e0 = Spent(0.1, 1.2, 10, o.orders, RdpConversion::kTight).epsilon;
  const double e1 = Spent(0.05, 1.2, 40, o.orders, RdpConversion::kTight).epsilon;
  EXPECT_DOUBLE_EQ(ledger.Epsilon(0), e0);
  EXPECT_DOUBLE_EQ(ledger.Epsilon(1), e1);
  EXPECT_EQ(ledger.Epsilon(2), 0.0);
  const PrivacyLedger::Summary s = ledger.Summarize();
  EXPECT_DOUBLE_EQ(s.max, std::max(e0, e1));
  EXPECT_DOUBLE_EQ(s.mean, (e0 + e1) / 3.0);
  // One more task: client 1 reaches 60 steps at q = 0.05, client 0 20 at 0.1.
  EXPECT_DOUBLE_EQ(
      ledger.MaxEpsilonAfterOneMoreTask(),
      std::max(Spent(0.1, 1.2, 20, o.orders, RdpConversion::kTight).epsilon,
               Spent(0.05, 1.2, 60, o.orders, RdpConversion::kTight).epsilon));
}

TEST(DpMechanismsTest, ClippedNormsAreExactlyMinOfNormAndC) {
  RngStream rng(3, RngPurpose::kTest, -1, -1);
  const double c = 1.5;
  RowMajorMatrixD g(40, 17);
  for (Eigen::Index i = 0; i < g.rows(); ++i) {
    const double scale = std::pow(10.0, (static_cast<double>(i) - 20.0) / 8.0);
    for (Eigen::Index j = 0; j < g.cols(); ++j) g(i, j) = scale * rng.Gaussian();
  }
  g.row(7).setZero();
  const RowMajorMatrixD original = g;
  ClipRows(g, c);
  int clipped = 0;
  for (Eigen::Index i = 0; i < g.rows(); ++i) {
    const double before = original.row(i).norm();
    const double after = g.row(i).norm();
    if (before <= c) {
      // Untouched, bit for bit.
      EXPECT_EQ(std::memcmp(g.row(i).data(), original.row(i).data(),
                            sizeof(double) * g.cols()),
                0)
          << i;
    } else {
      ++clipped;
      EXPECT_NEAR(after, c, 4 * std::numeric_limits<double>::epsilon() * c) << i;
      // Same direction: g_i = (||g_i|| / C) clip(g_i).
      EXPECT_LE((original.row(i) - (before / c) * g.row(i)).norm(),
                1e-14 * before)
          << i;
    }
    EXPECT_LE(after, c * (1 + 4 * std::numeric_limits<double>::epsilon()));
    EXPECT_NEAR(after, std::min(before, c), 4e-16 * std::max(before, 1.0)) << i;
  }
  EXPECT_GT(clipped, 5);
  EXPECT_LT(clipped, 35);
  Eigen::VectorXd f;
  ClipFactors(original, c, f);
  EXPECT_EQ(f[7], 1.0);  // a zero row is kept as is
}

// model.precision float32: the factors of float32 rows are those of the
// same values in double (norms summed in double, in another order: equal
// to a few ulps), and the weighted row sum agrees to float32 rounding.
TEST(DpMechanismsTest, Float32RowsClipAsTheirDoubleValues) {
  RngStream rng(9, RngPurpose::kTest, -1, -1);
  RowMajorMatrixF g(30, 7851);  // the softmax's 7850 and a lane tail
  for (Eigen::Index i = 0; i < g.rows(); ++i) {
    const double scale = std::pow(10.0, (static_cast<double>(i) - 15.0) / 6.0);
    for (Eigen::Index j = 0; j < g.cols(); ++j) {
      g(i, j) = static_cast<float>(scale * rng.Gaussian());
    }
  }
  g.row(4).setZero();
  const RowMajorMatrixD d = g.cast<double>();
  Eigen::VectorXd f32, f64;
  ClipFactors(g, 30.0, f32);
  ClipFactors(d, 30.0, f64);
  ASSERT_EQ(f32.size(), f64.size());
  int clipped = 0;
  for (Eigen::Index i = 0; i < f32.size(); ++i) {
    EXPECT_NEAR(f32[i], f64[i], 1e-14 * f64[i]) << i;
    if (f64[i] < 1.0) ++clipped;
  }
  EXPECT_EQ(f32[4], 1.0);
  EXPECT_GT(clipped, 5);
  EXPECT_LT(clipped, 25);
  Eigen::VectorXd sum32, sum64;
  SumRows(g, f64, sum32);
  SumRows(d, f64, sum64);
  ASSERT_EQ(sum32.size(), g.cols());
  EXPECT_LE((sum32 - sum64).cwiseAbs().maxCoeff(), 1e-5 * sum64.cwiseAbs().maxCoeff());
}

// Mean and std of `x`.
std::pair<double, double> Moments(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  const double mean = std::accumulate(x.begin(), x.end(), 0.0) / n;
  double ss = 0.0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / (n - 1))};
}

// True when draws look like N(0, sigma^2): the mean within 4 standard
// errors of 0 and the sample std within 1% of sigma. With n = 2e5 the std's
// own standard error is 0.16%, so a 6% error in sigma fails by a wide margin.
bool LooksLikeNoise(const std::vector<double>& x, double sigma) {
  const auto [mean, std] = Moments(x);
  const double n = static_cast<double>(x.size());
  return std::abs(mean) < 4.0 * sigma / std::sqrt(n) &&
         std::abs(std / sigma - 1.0) < 0.01;
}

TEST(DpMechanismsTest, GaussianNoiseHasTheRightMeanAndVariance) {
  const double sigma = 2.5;
  RngStream rng(5, RngPurpose::kDpNoise, 0, 0);
  Eigen::VectorXd x = Eigen::VectorXd::Zero(200000);
  AddGaussianNoise(sigma, rng, x);
  std::vector<double> draws(x.data(), x.data() + x.size());
  EXPECT_TRUE(LooksLikeNoise(draws, sigma));
  // The check has teeth: a 6% error in sigma (either way) fails it.
  EXPECT_FALSE(LooksLikeNoise(draws, sigma * 1.06));
  EXPECT_FALSE(LooksLikeNoise(draws, sigma / 1.06));
  // The noise is the stream's ziggurat sampler: x[i] + sigma * z_i with z
  // from FillGaussian, bit for bit (not Gaussian()'s polar method).
  {
    RngStream fill(5, RngPurpose::kDpNoise, 0, 0), polar(5, RngPurpose::kDpNoise, 0, 0);
    Eigen::VectorXd y = Eigen::VectorXd::LinSpaced(100, -1.0, 1.0);
    Eigen::VectorXd expected = y;
    std::vector<double> z(100);
    fill.FillGaussian(z);
    for (int i = 0; i < 100; ++i) expected[i] += sigma * z[i];
    RngStream noise(5, RngPurpose::kDpNoise, 0, 0);
    AddGaussianNoise(sigma, noise, y);
    EXPECT_EQ(y, expected);
    EXPECT_EQ(noise.NextU64(), fill.NextU64());
    EXPECT_NE(z[0], polar.Gaussian());
  }
  // Zero std adds nothing and draws nothing.
  RngStream a(5, RngPurpose::kDpNoise, 0, 0), b(5, RngPurpose::kDpNoise, 0, 0);
  Eigen::VectorXd y = Eigen::VectorXd::Ones(3);
  AddGaussianNoise(0.0, a, y);
  EXPECT_EQ(y, Eigen::VectorXd::Ones(3));
  EXPECT_EQ(a.NextU64(), b.NextU64());
}

TEST(DpMechanismsTest, PoissonSamplingRateAndOrder) {
  std::vector<std::int64_t> rows(100000);
  std::iota(rows.begin(), rows.end(), 0);
  RngStream rng(9, RngPurpose::kDpSampling, 0, 0);
  std::vector<std::int64_t> out;
  PoissonSample(rows, 0.1, rng, out);
  // Binomial(1e5, 0.1): sd ~ 95.
  EXPECT_NEAR(static_cast<double>(out.size()), 10000.0, 5 * 95.0);
  EXPECT_TRUE(std::is_sorted(out.begin(), out.end()));
  // Fresh draws for the next step.
  std::vector<std::int64_t> next;
  PoissonSample(rows, 0.1, rng, next);
  EXPECT_NE(out, next);
  // q = 1 keeps everything, in order, drawing nothing.
  RngStream a(9, RngPurpose::kDpSampling, 0, 0), b(9, RngPurpose::kDpSampling, 0, 0);
  PoissonSample(rows, 1.0, a, out);
  EXPECT_EQ(out, rows);
  EXPECT_EQ(a.NextU64(), b.NextU64());
}

// The geometric skip-ahead keeps every position independently with
// probability q: per-position frequencies, the lot size's mean and
// variance, and the correlation of neighbours.
TEST(DpMechanismsTest, PoissonSamplingKeepsEveryPositionWithProbabilityQ) {
  const int n = 40, trials = 40000;
  const double q = 0.15;
  std::vector<std::int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 100);
  RngStream rng(11, RngPurpose::kDpSampling, 3, 0);
  std::vector<double> kept(n, 0.0);
  double both_first_two = 0.0, size_sum = 0.0, size_sq = 0.0;
  std::vector<std::int64_t> out;
  for (int t = 0; t < trials; ++t) {
    PoissonSample(rows, q, rng, out);
    ASSERT_TRUE(std::is_sorted(out.begin(), out.end()));
    for (std::int64_t r : out) kept[r - 100] += 1.0;
    const bool first = !out.empty() && out[0] == 100;
    const bool second = std::find(out.begin(), out.end(), 101) != out.end();
    both_first_two += first && second ? 1.0 : 0.0;
    size_sum += static_cast<double>(out.size());
    size_sq += static_cast<double>(out.size() * out.size());
  }
  const double sd = std::sqrt(q * (1 - q) / trials);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(kept[i] / trials, q, 5 * sd) << "position " << i;
  const double mean = size_sum / trials;
  EXPECT_NEAR(mean, n * q, 5 * std::sqrt(n * q * (1 - q) / trials));
  EXPECT_NEAR(size_sq / trials - mean * mean, n * q * (1 - q), 0.05 * n * q * (1 - q));
  // Independence of neighbours: P(both) = q^2.
  EXPECT_NEAR(both_first_two / trials, q * q, 5 * std::sqrt(q * q * (1 - q * q) / trials));
}

TEST(DpMechanismsTest, LotSizeRateStepsAndNoiseStd) {
  EXPECT_EQ(ExpectedLotSize(32, 600), 32.0);
  EXPECT_EQ(ExpectedLotSize(0, 600), 600.0);
  EXPECT_EQ(ExpectedLotSize(64, 40), 40.0);
  EXPECT_EQ(SamplingRate(30, 600), 0.05);
  EXPECT_EQ(SamplingRate(64, 40), 1.0);
  EXPECT_EQ(DpLocalSteps(2, 32, 0, 600), 2 * 19);
  EXPECT_EQ(DpLocalSteps(3, 0, 0, 600), 3);
  EXPECT_EQ(DpLocalSteps(3, 32, 7, 600), 7);
  DpSpec dp;
  dp.mode = DpMode::kClip;
  dp.clip = 0.5;
  dp.error_clip = 2.0;
  dp.noise_multiplier = 1.3;
  EXPECT_EQ(SummedNoiseStd(dp), 1.3 * 0.5);
  dp.mode = DpMode::kDiceSgd;
  // z C1 sqrt(1 + 2 C2 / C1) = 1.3 * 0.5 * sqrt(9).
  EXPECT_DOUBLE_EQ(SummedNoiseStd(dp), 1.3 * 0.5 * 3.0);
  dp.mode = DpMode::kNone;
  EXPECT_EQ(SummedNoiseStd(dp), 0.0);
}

}  // namespace
}  // namespace dp_test
}  // namespace fedsim
