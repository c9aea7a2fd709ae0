// Tests of common/kernels/linear_rows.h: the numerical contract bit for
// bit (feature-order sums, fused multiply-adds when the build has FMA),
// every output-block width and row tail, independence of how rows are
// split, and exact values on a small case.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/kernels/linear_rows.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace linear_rows_test {
namespace {

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// The contract written as the plain loop: b_k + sum_j x_ij w_jk in feature
// order, each step fused exactly when the kernel's build is (x86-64-v3).
std::vector<double> Reference(const std::vector<float>& x, std::int64_t rows, std::int64_t d,
                              const std::vector<double>& w_colmajor,
                              const std::vector<double>& bias, int c) {
  std::vector<double> out(static_cast<std::size_t>(rows * c));
  for (std::int64_t i = 0; i < rows; ++i) {
    for (int k = 0; k < c; ++k) {
      double acc = 0.0;
      for (std::int64_t j = 0; j < d; ++j) {
        const double xij = static_cast<double>(x[i * d + j]);
        const double wjk = w_colmajor[k * d + j];
#if defined(__AVX2__) && defined(__FMA__)
        acc = std::fma(xij, wjk, acc);
#else
        acc = acc + xij * wjk;
#endif
      }
      out[i * c + k] = acc + bias[k];
    }
  }
  return out;
}

struct Problem {
  std::vector<float> x;
  std::vector<double> w, bias;
};

Problem Random(std::int64_t rows, std::int64_t d, int c, std::int64_t key) {
  RngStream rng(7, RngPurpose::kTest, key, 0);
  Problem p;
  // Mixed magnitudes: a different summation order would change last bits.
  for (std::int64_t i = 0; i < rows * d; ++i) {
    p.x.push_back(static_cast<float>(rng.Gaussian() * std::pow(10.0, (i % 5) - 2.0)));
  }
  for (std::int64_t i = 0; i < d * c; ++i) p.w.push_back(rng.Gaussian());
  for (int k = 0; k < c; ++k) p.bias.push_back(rng.Gaussian());
  return p;
}

TEST(LinearRowsTest, ExactOnASmallCase) {
  // X = [[1, 2], [3, -1]], W = [[1, 0.5], [-1, 2]] (d = 2, c = 2), b = (0.25, -0.5).
  const std::vector<float> x = {1, 2, 3, -1};
  const std::vector<double> w_colmajor = {1, -1, 0.5, 2};
  const std::vector<double> bias = {0.25, -0.5};
  const PackedLinear layer = PackLinear(w_colmajor.data(), bias.data(), 2, 2);
  std::vector<double> out(4);
  LinearRowsF32(layer, x.data(), 2, out.data());
  EXPECT_EQ(out, (std::vector<double>{1 - 2 + 0.25, 0.5 + 4 - 0.5, 3 + 1 + 0.25, 1.5 - 2 - 0.5}));
}

TEST(LinearRowsTest, EveryWidthAndRowTailFollowsTheContractBitForBit) {
  // d = 37: four-feature steps and a tail; rows 1..9: full blocks of four and
  // every tail; c = 1..13 and 25: every register block width, and blocks of
  // 12 outputs followed by a rest.
  std::vector<int> widths;
  for (int c = 1; c <= 13; ++c) widths.push_back(c);
  widths.push_back(25);
  for (int c : widths) {
    for (std::int64_t rows = 1; rows <= 9; ++rows) {
      const std::int64_t d = 37;
      const Problem p = Random(rows, d, c, c * 100 + rows);
      const PackedLinear layer = PackLinear(p.w.data(), p.bias.data(), d, c);
      std::vector<double> out(static_cast<std::size_t>(rows * c), NAN);
      LinearRowsF32(layer, p.x.data(), rows, out.data());
      const std::vector<double> want = Reference(p.x, rows, d, p.w, p.bias, c);
      for (std::size_t i = 0; i < out.size(); ++i) {
        ASSERT_TRUE(SameBits(out[i], want[i]))
            << "c " << c << ", rows " << rows << ", value " << i << ": " << out[i]
            << " != " << want[i];
      }
    }
  }
}

TEST(LinearRowsTest, ARowsValuesDoNotDependOnHowRowsAreSplit) {
  const std::int64_t rows = 23, d = 50;
  const int c = 10;
  const Problem p = Random(rows, d, c, 1);
  const PackedLinear layer = PackLinear(p.w.data(), p.bias.data(), d, c);
  std::vector<double> whole(static_cast<std::size_t>(rows * c));
  LinearRowsF32(layer, p.x.data(), rows, whole.data());
  for (std::int64_t split : {1, 3, 5, 22}) {
    std::vector<double> parts(whole.size());
    LinearRowsF32(layer, p.x.data(), split, parts.data());
    LinearRowsF32(layer, p.x.data() + split * d, rows - split, parts.data() + split * c);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      ASSERT_TRUE(SameBits(whole[i], parts[i])) << "split " << split << ", value " << i;
    }
  }
}

// The single-precision kernel's contract as the plain loop: a float32 sum
// in feature order of x_ij * float(w_jk), fused exactly when the build is,
// converted to double, plus b_k in double.
std::vector<double> ReferenceSingle(const std::vector<float>& x, std::int64_t rows,
                                    std::int64_t d, const std::vector<double>& w_colmajor,
                                    const std::vector<double>& bias, int c) {
  std::vector<double> out(static_cast<std::size_t>(rows * c));
  for (std::int64_t i = 0; i < rows; ++i) {
    for (int k = 0; k < c; ++k) {
      float acc = 0.0f;
      for (std::int64_t j = 0; j < d; ++j) {
        const float xij = x[i * d + j];
        const auto wjk = static_cast<float>(w_colmajor[k * d + j]);
#if defined(__AVX2__) && defined(__FMA__)
        acc = std::fma(xij, wjk, acc);
#else
        acc = acc + xij * wjk;
#endif
      }
      out[i * c + k] = static_cast<double>(acc) + bias[k];
    }
  }
  return out;
}

TEST(LinearRowsSingleTest, ExactOnASmallCase) {
  const std::vector<float> x = {1, 2, 3, -1};
  const std::vector<double> w_colmajor = {1, -1, 0.5, 2};
  const std::vector<double> bias = {0.25, -0.5};
  const PackedLinearF layer = PackLinearF(w_colmajor.data(), bias.data(), 2, 2);
  std::vector<double> out(4);
  LinearRowsF32Single(layer, x.data(), 2, out.data());
  EXPECT_EQ(out, (std::vector<double>{1 - 2 + 0.25, 0.5 + 4 - 0.5, 3 + 1 + 0.25, 1.5 - 2 - 0.5}));
}

TEST(LinearRowsSingleTest, EveryWidthAndRowTailFollowsTheContractBitForBit) {
  // d = 37: four-feature steps and a tail; rows 1..17: blocks of eight and
  // every tail; c = 1..11 and 23: every register block width, and blocks
  // of 10 outputs followed by a rest.
  std::vector<int> widths;
  for (int c = 1; c <= 11; ++c) widths.push_back(c);
  widths.push_back(23);
  for (int c : widths) {
    for (std::int64_t rows = 1; rows <= 17; ++rows) {
      const std::int64_t d = 37;
      const Problem p = Random(rows, d, c, c * 1000 + rows);
      const PackedLinearF layer = PackLinearF(p.w.data(), p.bias.data(), d, c);
      std::vector<double> out(static_cast<std::size_t>(rows * c), NAN);
      LinearRowsF32Single(layer, p.x.data(), rows, out.data());
      const std::vector<double> want = ReferenceSingle(p.x, rows, d, p.w, p.bias, c);
      for (std::size_t i = 0; i < out.size(); ++i) {
        ASSERT_TRUE(SameBits(out[i], want[i]))
            << "c " << c << ", rows " << rows << ", value " << i << ": " << out[i]
            << " != " << want[i];
      }
    }
  }
}

TEST(LinearRowsSingleTest, AgreesWithTheDoubleKernelToSinglePrecision) {
  const std::int64_t rows = 29, d = 784;
  const int c = 10;
  const Problem p = Random(rows, d, c, 3);
  std::vector<double> single(static_cast<std::size_t>(rows * c)), dbl(single.size());
  LinearRowsF32Single(PackLinearF(p.w.data(), p.bias.data(), d, c), p.x.data(), rows,
                      single.data());
  LinearRowsF32(PackLinear(p.w.data(), p.bias.data(), d, c), p.x.data(), rows, dbl.data());
  double scale = 0.0;
  for (std::int64_t i = 0; i < rows * d; ++i) scale = std::max(scale, std::abs(double{p.x[i]}));
  bool differs = false;
  for (std::size_t i = 0; i < single.size(); ++i) {
    // |error| <= d ulps of the largest term, loosely.
    EXPECT_NEAR(single[i], dbl[i], 5e-4 * scale) << i;
    differs = differs || single[i] != dbl[i];
  }
  EXPECT_TRUE(differs) << "the single-precision kernel computed in double";
}

TEST(LinearRowsSingleTest, ARowsValuesDoNotDependOnHowRowsAreSplit) {
  const std::int64_t rows = 23, d = 50;
  const int c = 10;
  const Problem p = Random(rows, d, c, 1);
  const PackedLinearF layer = PackLinearF(p.w.data(), p.bias.data(), d, c);
  std::vector<double> whole(static_cast<std::size_t>(rows * c));
  LinearRowsF32Single(layer, p.x.data(), rows, whole.data());
  for (std::int64_t split : {1, 3, 8, 22}) {
    std::vector<double> parts(whole.size());
    LinearRowsF32Single(layer, p.x.data(), split, parts.data());
    LinearRowsF32Single(layer, p.x.data() + split * d, rows - split, parts.data() + split * c);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      ASSERT_TRUE(SameBits(whole[i], parts[i])) << "split " << split << ", value " << i;
    }
  }
}

}  // namespace
}  // namespace linear_rows_test
}  // namespace fedsim
