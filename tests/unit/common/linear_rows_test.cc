// Tests of common/kernels/linear_rows.h: the numerical contract bit for
// bit (feature-order sums, fused multiply-adds when the build has FMA),
// every output-block width and row tail, independence of how rows are
// split, and exact values on a small case.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
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

// A kernel under test, bound to its packed layer: (x, rows, out).
using Kernel = std::function<void(const float*, std::int64_t, double*)>;
// Packs (w, b, d, c) for one of the two kernels.
using MakeKernel = std::function<Kernel(const std::vector<double>&, const std::vector<double>&,
                                        std::int64_t, int)>;

Kernel Double(const std::vector<double>& w, const std::vector<double>& b, std::int64_t d,
              int c) {
  auto layer = std::make_shared<PackedLinear>(PackLinear(w.data(), b.data(), d, c));
  return [layer](const float* x, std::int64_t rows, double* out) {
    LinearRowsF32(*layer, x, rows, out);
  };
}

Kernel Single(const std::vector<double>& w, const std::vector<double>& b, std::int64_t d,
              int c) {
  auto layer = std::make_shared<PackedLinearF>(PackLinearF(w.data(), b.data(), d, c));
  return [layer](const float* x, std::int64_t rows, double* out) {
    LinearRowsF32Single(*layer, x, rows, out);
  };
}

// X = [[1, 2], [3, -1]], W = [[1, 0.5], [-1, 2]] (d = 2, c = 2), b = (0.25,
// -0.5): every product and sum exact in both precisions.
void ExpectExactOnASmallCase(const MakeKernel& make) {
  const std::vector<float> x = {1, 2, 3, -1};
  const Kernel kernel = make({1, -1, 0.5, 2}, {0.25, -0.5}, 2, 2);
  std::vector<double> out(4);
  kernel(x.data(), 2, out.data());
  EXPECT_EQ(out, (std::vector<double>{1 - 2 + 0.25, 0.5 + 4 - 0.5, 3 + 1 + 0.25, 1.5 - 2 - 0.5}));
}

// Rows computed in two calls, split anywhere, give the same bits as one.
void ExpectSplitIndependent(const MakeKernel& make) {
  const std::int64_t rows = 23, d = 50;
  const int c = 10;
  const Problem p = Random(rows, d, c, 1);
  const Kernel kernel = make(p.w, p.bias, d, c);
  std::vector<double> whole(static_cast<std::size_t>(rows * c));
  kernel(p.x.data(), rows, whole.data());
  for (std::int64_t split : {1, 3, 5, 8, 22}) {
    std::vector<double> parts(whole.size());
    kernel(p.x.data(), split, parts.data());
    kernel(p.x.data() + split * d, rows - split, parts.data() + split * c);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      ASSERT_TRUE(SameBits(whole[i], parts[i])) << "split " << split << ", value " << i;
    }
  }
}

TEST(LinearRowsTest, ExactOnASmallCase) { ExpectExactOnASmallCase(Double); }

// Every output width 1..max_width and rest_width, every row count up to
// max_rows, and d from 1 to 4 and 37 to 39 (four-feature steps and every
// tail), against `reference`, bit for bit.
using ReferenceFn = std::vector<double> (*)(const std::vector<float>&, std::int64_t, std::int64_t,
                                            const std::vector<double>&,
                                            const std::vector<double>&, int);
void ExpectContract(const MakeKernel& make, ReferenceFn reference, int max_width,
                    int rest_width, std::int64_t max_rows) {
  std::vector<int> widths;
  for (int c = 1; c <= max_width; ++c) widths.push_back(c);
  widths.push_back(rest_width);
  for (int c : widths) {
   for (const std::int64_t d : {1, 2, 3, 4, 37, 38, 39}) {  // every feature tail
    for (std::int64_t rows = 1; rows <= max_rows; ++rows) {
      const Problem p = Random(rows, d, c, c * 1000 + rows + 100000 * d);
      std::vector<double> out(static_cast<std::size_t>(rows * c), NAN);
      make(p.w, p.bias, d, c)(p.x.data(), rows, out.data());
      const std::vector<double> want = reference(p.x, rows, d, p.w, p.bias, c);
      for (std::size_t i = 0; i < out.size(); ++i) {
        ASSERT_TRUE(SameBits(out[i], want[i]))
            << "c " << c << ", d " << d << ", rows " << rows << ", value " << i << ": "
            << out[i] << " != " << want[i];
      }
    }
   }
  }
}

TEST(LinearRowsTest, EveryWidthAndRowTailFollowsTheContractBitForBit) {
  // Rows 1..9: blocks of four and every tail; c = 1..13 and 25: every
  // register block width, and blocks of 12 outputs followed by a rest.
  ExpectContract(Double, Reference, 13, 25, 9);
}

TEST(LinearRowsTest, ARowsValuesDoNotDependOnHowRowsAreSplit) { ExpectSplitIndependent(Double); }

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

TEST(LinearRowsSingleTest, ExactOnASmallCase) { ExpectExactOnASmallCase(Single); }

TEST(LinearRowsSingleTest, EveryWidthAndRowTailFollowsTheContractBitForBit) {
  // Rows 1..17: blocks of eight and every tail; c = 1..11 and 23: every
  // register block width, and blocks of 10 outputs followed by a rest.
  ExpectContract(Single, ReferenceSingle, 11, 23, 17);
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
  ExpectSplitIndependent(Single);
}

// Rows anywhere: the contract's values, bit for bit, for the rows in the
// order given, for every row tail, with repeated rows.
TEST(LinearRowsSingleTest, RowsAnywhereGiveTheContiguousKernelsBits) {
  const std::int64_t stored = 40, d = 37;
  const int c = 10;
  const Problem p = Random(stored, d, c, 5);
  const PackedLinearF layer = PackLinearF(p.w.data(), p.bias.data(), d, c);
  RngStream rng(3, RngPurpose::kTest, 0, 0);
  for (std::int64_t n = 1; n <= 19; ++n) {
    std::vector<const float*> at;
    std::vector<float> copied;
    for (std::int64_t i = 0; i < n; ++i) {
      const auto r = static_cast<std::int64_t>(rng.UniformInt(stored));
      at.push_back(p.x.data() + r * d);
      copied.insert(copied.end(), p.x.begin() + r * d, p.x.begin() + (r + 1) * d);
    }
    std::vector<double> anywhere(static_cast<std::size_t>(n * c));
    LinearRowsF32SingleAt(layer, at.data(), n, anywhere.data());
    const std::vector<double> want = ReferenceSingle(copied, n, d, p.w, p.bias, c);
    for (std::size_t i = 0; i < anywhere.size(); ++i) {
      ASSERT_TRUE(SameBits(anywhere[i], want[i])) << "n " << n << " value " << i;
    }
  }
}

// PackLinearF is W transposed and rounded to float32, exactly, for every
// width (blocks of 8 outputs in registers and the rest) and feature tail.
TEST(LinearRowsSingleTest, PackIsTheTransposeRoundedToFloat) {
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 1; d <= 20; ++d) dims.push_back(d);
  dims.push_back(784);
  for (const std::int64_t d : dims) {
    for (int c = 1; c <= 25; ++c) {
      const Problem p = Random(1, d, c, 7000 + c * 100 + d);
      const PackedLinearF packed = PackLinearF(p.w.data(), p.bias.data(), d, c);
      ASSERT_EQ(packed.w.size(), static_cast<std::size_t>(d * c));
      for (std::int64_t j = 0; j < d; ++j) {
        for (int k = 0; k < c; ++k) {
          ASSERT_EQ(packed.w[static_cast<std::size_t>(j * c + k)],
                    static_cast<float>(p.w[static_cast<std::size_t>(k * d + j)]))
              << "d " << d << " c " << c << " (" << j << ", " << k << ")";
        }
      }
      EXPECT_EQ(packed.bias, p.bias);
    }
  }
}

// LinearGradF32's contract as the plain loop: grad(j, k) = a float32 sum in
// row order of x_ij * g_ik, fused exactly when the build is, as a double.
std::vector<double> ReferenceGrad(const std::vector<const float*>& rows, std::int64_t d,
                                  const std::vector<float>& g, int c) {
  std::vector<double> out(static_cast<std::size_t>(d * c));
  for (int k = 0; k < c; ++k) {
    for (std::int64_t j = 0; j < d; ++j) {
      float acc = 0.0f;
      for (std::size_t i = 0; i < rows.size(); ++i) {
#if defined(__AVX2__) && defined(__FMA__)
        acc = std::fma(rows[i][j], g[i * c + k], acc);
#else
        acc = acc + rows[i][j] * g[i * c + k];
#endif
      }
      out[static_cast<std::size_t>(k * d + j)] = static_cast<double>(acc);
    }
  }
  return out;
}

TEST(LinearGradTest, EveryWidthAndFeatureTailFollowsTheContractBitForBit) {
  // d = 1..17 and 784: every tail of an 8-feature block; c = 1..13 and 25:
  // every register block width (12), and blocks followed by a rest.
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 1; d <= 17; ++d) dims.push_back(d);
  dims.push_back(784);
  std::vector<int> widths;
  for (int c = 1; c <= 13; ++c) widths.push_back(c);
  widths.push_back(25);
  std::int64_t key = 0;
  for (const std::int64_t d : dims) {
    for (const int c : widths) {
      const std::int64_t n = 1 + (key % 7) * 5;  // 1 .. 31 rows
      const Problem p = Random(n + 3, d, c, 100 + key++);
      std::vector<const float*> rows;
      for (std::int64_t i = 0; i < n; ++i) rows.push_back(p.x.data() + ((i * 5) % (n + 3)) * d);
      std::vector<float> g;
      for (std::int64_t i = 0; i < n * c; ++i) {
        g.push_back(static_cast<float>(p.w[static_cast<std::size_t>(i % (d * c))] *
                                       std::pow(10.0, (i % 3) - 1.0)));
      }
      // Poisoned output: every value must be written.
      std::vector<double> got(static_cast<std::size_t>(d * c), std::nan(""));
      LinearGradF32(rows.data(), n, d, g.data(), c, got.data());
      const std::vector<double> want = ReferenceGrad(rows, d, g, c);
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(SameBits(got[i], want[i]))
            << "d " << d << " c " << c << " n " << n << " value " << i << ": " << got[i]
            << " vs " << want[i];
      }
    }
  }
}

TEST(LinearGradTest, SumsInSinglePrecision) {
  // 1 + 2^-30 is 1 in float32: a kernel summing in double would keep it.
  const float x0[1] = {1.0f}, x1[1] = {1.0f};
  const float* rows[2] = {x0, x1};
  const float g[2] = {1.0f, std::ldexp(1.0f, -30)};
  double grad = 0.0;
  LinearGradF32(rows, 2, 1, g, 1, &grad);
  EXPECT_EQ(grad, 1.0);
}

}  // namespace
}  // namespace linear_rows_test
}  // namespace fedsim
