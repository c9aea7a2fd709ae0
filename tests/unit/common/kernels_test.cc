// Tests of common/kernels: exact values on small vectors, bit-identical
// results whatever the thread count (the determinism contract of
// vector_ops.h), ClipToNorm's norm and direction, AllFinite.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/base/types.h"
#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace kernels_test {
namespace {

// Long enough that every kernel takes its parallel path (>= kMinParallelSize)
// and the last block is partial.
constexpr std::int64_t kLong = 3 * kMinParallelSize + 5;
constexpr int kThreadCounts[] = {1, 2, 7};

FlatVector RandomVector(std::int64_t n, std::uint64_t key) {
  RngStream rng(42, RngPurpose::kTest, static_cast<std::int64_t>(key), 0);
  FlatVector v(n);
  // Mixed magnitudes make the sum order matter for the last bits, so a
  // thread-dependent summation would show.
  for (std::int64_t i = 0; i < n; ++i) {
    v[i] = rng.Gaussian() * std::pow(10.0, static_cast<double>(i % 7) - 3.0);
  }
  return v;
}

bool SameBits(double a, double b) {
  return std::memcmp(&a, &b, sizeof(double)) == 0;
}

bool SameBits(const FlatVector& a, const FlatVector& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

FlatVector Vec(std::initializer_list<double> values) {
  FlatVector v(static_cast<Eigen::Index>(values.size()));
  Eigen::Index i = 0;
  for (double x : values) v[i++] = x;
  return v;
}

TEST(KernelsTest, AxpyExactOnSmallVector) {
  FlatVector y = Vec({1.0, -2.0, 0.5});
  Axpy(2.0, Vec({0.25, 4.0, -1.0}), y);
  EXPECT_EQ(y, Vec({1.5, 6.0, -1.5}));
}

TEST(KernelsTest, WeightedSumExactOnSmallVector) {
  const FlatVector a = Vec({1.0, 2.0, 3.0});
  const FlatVector b = Vec({-4.0, 0.5, 8.0});
  const std::vector<double> weights = {0.25, 0.75};
  const std::vector<const Eigen::VectorXd*> inputs = {&a, &b};
  FlatVector out = Vec({99.0, 99.0, 99.0});  // overwritten, not accumulated
  WeightedSum(weights, inputs, out);
  EXPECT_EQ(out, Vec({-2.75, 0.875, 6.75}));
}

TEST(KernelsTest, WeightedSumOfNothingIsZero) {
  FlatVector out = Vec({1.0, 2.0});
  WeightedSum({}, {}, out);
  EXPECT_EQ(out, Vec({0.0, 0.0}));
}

TEST(KernelsTest, DotAndSquaredNormExactOnSmallVectors) {
  EXPECT_EQ(Dot(Vec({1.0, 2.0, 3.0}), Vec({4.0, -5.0, 0.5})), -4.5);
  EXPECT_EQ(SquaredNorm(Vec({3.0, -4.0, 12.0})), 169.0);
  EXPECT_EQ(SquaredNorm(FlatVector(0)), 0.0);
  EXPECT_EQ(Dot(FlatVector(0), FlatVector(0)), 0.0);
}

TEST(KernelsTest, DotAddsBlockPartialsLeftToRight) {
  // Five blocks (enough for the parallel path) whose only non-zero partials
  // are 1 (block 0), 1e16 (block 1) and -1e16 (block 4). Left to right:
  // (1 + 1e16) - 1e16 = 0, because 1 + 1e16 rounds to 1e16. Any other
  // grouping of the partials, such as a tree or per-thread reduction
  // (1 + (1e16 - 1e16)), gives 1.
  const std::int64_t n = 5 * kBlockSize;
  ASSERT_GE(n, kMinParallelSize);
  FlatVector x = FlatVector::Zero(n);
  const FlatVector ones = FlatVector::Ones(n);
  x[0] = 1.0;
  x[kBlockSize] = 1e16;
  x[4 * kBlockSize] = -1e16;
  for (int threads : kThreadCounts) {
    KernelContext ctx;
    ctx.num_threads = threads;
    EXPECT_EQ(Dot(x, ones, ctx), 0.0) << threads << " threads";
  }
}

TEST(KernelsTest, ReductionsBitIdenticalForEveryThreadCount) {
  const FlatVector x = RandomVector(kLong, 1);
  const FlatVector y = RandomVector(kLong, 2);
  const double dot1 = Dot(x, y);
  const double sq1 = SquaredNorm(x);
  for (int threads : kThreadCounts) {
    KernelContext ctx;
    ctx.num_threads = threads;
    EXPECT_TRUE(SameBits(Dot(x, y, ctx), dot1)) << threads << " threads";
    EXPECT_TRUE(SameBits(SquaredNorm(x, ctx), sq1)) << threads << " threads";
  }
  // And the reduction really is a dot product.
  EXPECT_NEAR(dot1, x.dot(y), 1e-9 * x.norm() * y.norm());
  EXPECT_NEAR(sq1, x.squaredNorm(), 1e-12 * sq1);
}

TEST(KernelsTest, ElementwiseKernelsBitIdenticalForEveryThreadCount) {
  const FlatVector x = RandomVector(kLong, 3);
  const FlatVector y0 = RandomVector(kLong, 4);
  const FlatVector a = RandomVector(kLong, 5);
  const FlatVector b = RandomVector(kLong, 6);
  const FlatVector c = RandomVector(kLong, 7);
  const std::vector<double> weights = {0.1, 0.7, 0.2};
  const std::vector<const Eigen::VectorXd*> inputs = {&a, &b, &c};

  FlatVector axpy_ref = y0;
  Axpy(-0.3, x, axpy_ref);
  FlatVector sum_ref(kLong);
  WeightedSum(weights, inputs, sum_ref);
  // Element by element, in input order, as documented.
  for (std::int64_t i : {std::int64_t{0}, kBlockSize + 3, kLong - 1}) {
    EXPECT_TRUE(SameBits(axpy_ref[i], y0[i] + -0.3 * x[i]));
    EXPECT_TRUE(SameBits(sum_ref[i],
                         ((0.0 + 0.1 * a[i]) + 0.7 * b[i]) + 0.2 * c[i]));
  }
  for (int threads : kThreadCounts) {
    KernelContext ctx;
    ctx.num_threads = threads;
    FlatVector y = y0;
    Axpy(-0.3, x, y, ctx);
    EXPECT_TRUE(SameBits(y, axpy_ref)) << threads << " threads";
    FlatVector out(kLong);
    WeightedSum(weights, inputs, out, ctx);
    EXPECT_TRUE(SameBits(out, sum_ref)) << threads << " threads";
  }
}

TEST(KernelsTest, ClipToNormScalesToTheBoundAndKeepsDirection) {
  const FlatVector g0 = RandomVector(1000, 8);
  const double norm = g0.norm();
  for (double c : {0.0, 0.01 * norm, 0.5 * norm, 0.999 * norm}) {
    FlatVector g = g0;
    const double factor = ClipToNorm(g, c);
    EXPECT_NEAR(g.norm(), std::min(norm, c), 1e-12 * std::max(1.0, norm))
        << "c = " << c;
    EXPECT_NEAR(factor, c / norm, 1e-15);
    if (c > 0.0) {
      // Same direction: g = factor * g0 element by element.
      EXPECT_NEAR((g / g.norm() - g0 / norm).norm(), 0.0, 1e-14);
    } else {
      EXPECT_EQ(g, FlatVector::Zero(g0.size()));
    }
  }
}

TEST(KernelsTest, ClipToNormLeavesShortVectorsAlone) {
  const FlatVector g0 = RandomVector(100, 9);
  for (double c : {g0.norm(), 2.0 * g0.norm(), 1e300}) {
    FlatVector g = g0;
    EXPECT_EQ(ClipToNorm(g, c), 1.0);
    EXPECT_TRUE(SameBits(g, g0));
  }
  FlatVector zero = FlatVector::Zero(5);
  EXPECT_EQ(ClipToNorm(zero, 0.0), 1.0);
  EXPECT_EQ(zero, FlatVector::Zero(5));
}

TEST(KernelsTest, ClipToNormExactOnPythagoreanVector) {
  FlatVector g = Vec({3.0, 4.0});
  EXPECT_EQ(ClipToNorm(g, 2.5), 0.5);
  EXPECT_EQ(g, Vec({1.5, 2.0}));
}

TEST(KernelsTest, AllFinite) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(AllFinite(FlatVector(0)));
  EXPECT_TRUE(AllFinite(Vec({0.0, -1e308, std::numeric_limits<double>::max(),
                             std::numeric_limits<double>::denorm_min()})));
  EXPECT_FALSE(AllFinite(Vec({0.0, nan})));
  EXPECT_FALSE(AllFinite(Vec({inf, 0.0})));
  EXPECT_FALSE(AllFinite(Vec({1.0, -inf, 2.0})));
  FlatVector v = RandomVector(kLong, 10);
  EXPECT_TRUE(AllFinite(v));
  v[kLong - 1] = nan;
  EXPECT_FALSE(AllFinite(v));
}

}  // namespace
}  // namespace kernels_test
}  // namespace fedsim
