// File: common/kernels/linear_rows.h
//
// A linear layer applied to stored float32 rows, computed in float64 without
// converting the rows first: out = X W + 1 b^T for X (rows x d, float32,
// row-major, read in place), W (d x c) and b (c), float64.
//
// Why: the evaluator used to copy every row to float64 (GatherRange) and
// hand the copy to Eigen's GEMM, which packed it again: three passes over
// the data where one suffices, half of an evaluating quickstart round
// (docs/performance.md). Here every row is read once, converted in
// registers, and the c outputs of R rows are accumulated in registers
// (vectorised across the outputs, blocked over rows).
//
// Numerical contract: out(i, k) = b_k + (((0 + x_i0 w_0k) + x_i1 w_1k) + ...
// + x_i,d-1 w_d-1,k), summed in feature order, each step a fused
// multiply-add when the build targets FMA (x86-64-v3, the default), a
// multiply then an add otherwise (the portable build; -ffp-contract=off).
// Each output depends on its own row only, so the result does not depend
// on how rows are split among threads or blocks.
//
// Thread safety: pure functions; PackedLinear is immutable after PackLinear.
#ifndef FEDSIM_COMMON_KERNELS_LINEAR_ROWS_H_
#define FEDSIM_COMMON_KERNELS_LINEAR_ROWS_H_

#include <cstdint>
#include <vector>

namespace fedsim {

// W transposed to rows of `padded` doubles (c rounded up to a multiple of
// 4, zeros beyond c), and b.
struct PackedLinear {
  std::int64_t d = 0;
  int c = 0;
  int padded = 0;
  std::vector<double> w;  // d x padded, row-major
  std::vector<double> bias;
};

// Packs W, given column-major (W(j, k) at w[k * d + j], the layout of the
// linear objectives' parameter vectors), and b.
// REQUIRES: d >= 1, c >= 1.
PackedLinear PackLinear(const double* w_colmajor, const double* bias, std::int64_t d, int c);

// out(i, k) = (X W + 1 b^T)(i, k) for i < rows, written row-major with row
// stride c. x: rows x layer.d floats, row i at x + i * layer.d.
void LinearRowsF32(const PackedLinear& layer, const float* x, std::int64_t rows, double* out);

// The same layer in single precision, for models whose precision is
// float32 (model.precision; docs/architecture.md, "Precision"): W rounded
// to float32 once (b stays double), the products and sums in float32, 8
// rows at a time, twice the lanes of the float64 kernel.
//
// Numerical contract: out(i, k) = (double)(((0 + x_i0 w_0k) + x_i1 w_1k) +
// ... + x_i,d-1 w_d-1,k) + b_k, the sum in float32 in feature order with
// float32 W (each step a fused multiply-add when the build targets FMA, a
// multiply then an add otherwise), converted to double, then b_k (float64)
// added in double. Each output depends on its own row only.
struct PackedLinearF {
  std::int64_t d = 0;
  int c = 0;
  std::vector<float> w;      // d x c, row-major
  std::vector<double> bias;  // c
};

PackedLinearF PackLinearF(const double* w_colmajor, const double* bias, std::int64_t d, int c);

void LinearRowsF32Single(const PackedLinearF& layer, const float* x, std::int64_t rows,
                         double* out);

// The same for n rows anywhere: row i at rows[i] (a mini-batch read where
// its rows are stored, with no gather). Same contract.
void LinearRowsF32SingleAt(const PackedLinearF& layer, const float* const* rows, std::int64_t n,
                           double* out);

// The weight gradient of a linear layer in single precision, for n rows
// anywhere (row i at rows[i], d features) and output gradients g (n x c,
// row-major, float32): grad(j, k) = sum_i x_i[j] g(i, k), written
// column-major as doubles (grad[k * d + j], the layout of the linear
// objectives' parameters). Reads every row in place: no gather, no
// packing.
//
// Numerical contract: grad(j, k) = (double)(((0 + x_0j g_0k) + x_1j g_1k)
// + ... + x_n-1,j g_n-1,k), the sum in float32 in row order (each step a
// fused multiply-add in builds with AVX2 and FMA, x86-64-v3 and up; a
// multiply then an add in other builds, -ffp-contract=off), converted to
// double. REQUIRES: n, d, c >= 1.
void LinearGradF32(const float* const* rows, std::int64_t n, std::int64_t d, const float* g,
                   int c, double* grad);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_KERNELS_LINEAR_ROWS_H_
