#include "common/kernels/linear_rows.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FEDSIM_LINEAR_ROWS_AVX2 1
#endif

#include "common/base/check.h"

namespace fedsim {
namespace {

#if FEDSIM_LINEAR_ROWS_AVX2

// Four rows at a time, vectorised across the rows: lane r of t holds
// x(r, j), and output k of the four rows accumulates in acc[k] += t *
// broadcast(w(j, k)), K outputs [k0, k0 + K) in registers. The rows are
// read 4 floats at a time, converted and transposed in registers (4 x 4);
// a broadcast of w is a plain load. Rows at or beyond `valid` repeat the
// last valid row and are not written.
template <int K>
void FourRows(const PackedLinear& p, int k0, const float* x, int valid, double* out) {
  const std::int64_t d = p.d;
  const float* r0 = x;
  const float* r1 = x + (valid > 1 ? 1 : 0) * d;
  const float* r2 = x + (valid > 2 ? 2 : valid - 1) * d;
  const float* r3 = x + (valid > 3 ? 3 : valid - 1) * d;
  const double* w = p.w.data() + k0;
  const std::int64_t ld = p.padded;
  // Unrolled (GCC does not unroll at -O2) so that acc stays in registers.
  __m256d acc[K];
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) acc[k] = _mm256_setzero_pd();
  const auto step = [&](__m256d t, const double* wj) {
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) {
      acc[k] = _mm256_fmadd_pd(t, _mm256_broadcast_sd(wj + k), acc[k]);
    }
  };
  std::int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const __m256d a0 = _mm256_cvtps_pd(_mm_loadu_ps(r0 + j));
    const __m256d a1 = _mm256_cvtps_pd(_mm_loadu_ps(r1 + j));
    const __m256d a2 = _mm256_cvtps_pd(_mm_loadu_ps(r2 + j));
    const __m256d a3 = _mm256_cvtps_pd(_mm_loadu_ps(r3 + j));
    const __m256d u0 = _mm256_unpacklo_pd(a0, a1);  // x0j x1j x0j+2 x1j+2
    const __m256d u1 = _mm256_unpackhi_pd(a0, a1);  // x0j+1 x1j+1 x0j+3 x1j+3
    const __m256d u2 = _mm256_unpacklo_pd(a2, a3);
    const __m256d u3 = _mm256_unpackhi_pd(a2, a3);
    const double* wj = w + j * ld;
    step(_mm256_permute2f128_pd(u0, u2, 0x20), wj);           // column j
    step(_mm256_permute2f128_pd(u1, u3, 0x20), wj + ld);      // j + 1
    step(_mm256_permute2f128_pd(u0, u2, 0x31), wj + 2 * ld);  // j + 2
    step(_mm256_permute2f128_pd(u1, u3, 0x31), wj + 3 * ld);  // j + 3
  }
  for (; j < d; ++j) {
    step(_mm256_set_pd(r3[j], r2[j], r1[j], r0[j]), w + j * ld);
  }
  alignas(32) double lanes[4];
  for (int k = 0; k < K; ++k) {
    _mm256_store_pd(lanes, acc[k]);
    const double b = p.bias[static_cast<std::size_t>(k0 + k)];
    for (int r = 0; r < valid; ++r) out[r * p.c + k0 + k] = lanes[r] + b;
  }
}

using FourRowsFn = void (*)(const PackedLinear&, int, const float*, int, double*);

template <int... I>
constexpr auto MakeTable(std::integer_sequence<int, I...>) {
  return std::array<FourRowsFn, sizeof...(I)>{FourRows<I + 1>...};
}

// FourRows<1> ... FourRows<kMaxOutputs>: 12 accumulators, a row vector
// and a broadcast fit the 16 AVX registers.
constexpr int kMaxOutputs = 12;
constexpr auto kTable = MakeTable(std::make_integer_sequence<int, kMaxOutputs>());

// Single precision: eight rows at a time, lane r of a column vector holding
// x(r, j), K outputs in registers. Rows r and r + 4 share a 256-bit load
// pair (low and high halves), and a 4 x 4 transpose within each half
// turns four features of eight rows into four column vectors.
// Row q at rows[q]; rows at or beyond `valid` repeat the last valid row
// and are not written.
template <int K>
void EightRowsF(const PackedLinearF& p, int k0, const float* const* rows, int valid,
                double* out) {
  const std::int64_t d = p.d;
  const float* r[8];
  for (int q = 0; q < 8; ++q) r[q] = rows[q < valid ? q : valid - 1];
  const float* w = p.w.data() + k0;
  const std::int64_t ld = p.c;
  __m256 acc[K];
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) acc[k] = _mm256_setzero_ps();
  const auto step = [&](__m256 t, const float* wj) {
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) {
      acc[k] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(wj + k), acc[k]);
    }
  };
  const auto pair = [&](int q, std::int64_t j) {  // rows q (low) and q + 4 (high)
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(r[q] + j)),
                                _mm_loadu_ps(r[q + 4] + j), 1);
  };
  std::int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const __m256 a0 = pair(0, j), a1 = pair(1, j), a2 = pair(2, j), a3 = pair(3, j);
    const __m256 t0 = _mm256_unpacklo_ps(a0, a1);  // x0j x1j x0j+1 x1j+1 | rows 4, 5
    const __m256 t1 = _mm256_unpackhi_ps(a0, a1);  // x0j+2 x1j+2 x0j+3 x1j+3 | ...
    const __m256 t2 = _mm256_unpacklo_ps(a2, a3);
    const __m256 t3 = _mm256_unpackhi_ps(a2, a3);
    const float* wj = w + j * ld;
    step(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), wj);           // column j
    step(_mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)), wj + ld);      // j + 1
    step(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), wj + 2 * ld);  // j + 2
    step(_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)), wj + 3 * ld);  // j + 3
  }
  for (; j < d; ++j) {
    step(_mm256_set_ps(r[7][j], r[6][j], r[5][j], r[4][j], r[3][j], r[2][j], r[1][j], r[0][j]),
         w + j * ld);
  }
  alignas(32) float lanes[8];
  for (int k = 0; k < K; ++k) {
    _mm256_store_ps(lanes, acc[k]);
    const double b = p.bias[static_cast<std::size_t>(k0 + k)];
    for (int q = 0; q < valid; ++q) out[q * p.c + k0 + k] = static_cast<double>(lanes[q]) + b;
  }
}

using EightRowsFn = void (*)(const PackedLinearF&, int, const float* const*, int, double*);

template <int... I>
constexpr auto MakeTableF(std::integer_sequence<int, I...>) {
  return std::array<EightRowsFn, sizeof...(I)>{EightRowsF<I + 1>...};
}

// Up to 10 outputs a pass (a softmax over 10 classes in one pass): 10
// accumulators and the transpose's temporaries fill the 16 registers.
constexpr int kMaxOutputsF = 10;
constexpr auto kTableF = MakeTableF(std::make_integer_sequence<int, kMaxOutputsF>());

// The weight gradient for outputs [k0, k0 + K): eight features at a time,
// lane l of acc[k] holding grad(j + l, k0 + k), the rows in order.
// `mask` selects the valid lanes of a last, partial block of features.
template <int K>
void GradBlockF(const float* const* rows, std::int64_t n, std::int64_t j, const float* g,
                int c, int k0, const std::int32_t* mask_lanes, int lanes_valid, std::int64_t d,
                double* grad) {
  const __m256i mask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mask_lanes));
  __m256 acc[K];
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) acc[k] = _mm256_setzero_ps();
  for (std::int64_t i = 0; i < n; ++i) {
    const __m256 x = lanes_valid == 8 ? _mm256_loadu_ps(rows[i] + j)
                                      : _mm256_maskload_ps(rows[i] + j, mask);
    const float* gi = g + i * c + k0;
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) {
      acc[k] = _mm256_fmadd_ps(x, _mm256_broadcast_ss(gi + k), acc[k]);
    }
  }
  alignas(32) double out[8];
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) {
    double* col = grad + static_cast<std::int64_t>(k0 + k) * d + j;
    if (lanes_valid == 8) {
      _mm256_storeu_pd(col, _mm256_cvtps_pd(_mm256_castps256_ps128(acc[k])));
      _mm256_storeu_pd(col + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(acc[k], 1)));
    } else {
      _mm256_store_pd(out, _mm256_cvtps_pd(_mm256_castps256_ps128(acc[k])));
      _mm256_store_pd(out + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(acc[k], 1)));
      for (int l = 0; l < lanes_valid; ++l) col[l] = out[l];
    }
  }
}

using GradBlockFn = void (*)(const float* const*, std::int64_t, std::int64_t, const float*,
                             int, int, const std::int32_t*, int, std::int64_t, double*);

template <int... I>
constexpr auto MakeGradTable(std::integer_sequence<int, I...>) {
  return std::array<GradBlockFn, sizeof...(I)>{GradBlockF<I + 1>...};
}

// 12 accumulators, the row's features and a broadcast fit the 16 registers.
constexpr int kMaxGradOutputs = 12;
constexpr auto kGradTable = MakeGradTable(std::make_integer_sequence<int, kMaxGradOutputs>());

#endif  // FEDSIM_LINEAR_ROWS_AVX2

}  // namespace

PackedLinear PackLinear(const double* w_colmajor, const double* bias, std::int64_t d, int c) {
  FEDSIM_CHECK(d >= 1 && c >= 1) << "d " << d << ", c " << c;
  PackedLinear p;
  p.d = d;
  p.c = c;
  p.padded = (c + 3) / 4 * 4;
  p.w.assign(static_cast<std::size_t>(d * p.padded), 0.0);
  p.bias.assign(static_cast<std::size_t>(p.padded), 0.0);
  for (std::int64_t j = 0; j < d; ++j) {
    for (int k = 0; k < c; ++k) p.w[j * p.padded + k] = w_colmajor[k * d + j];
  }
  std::copy(bias, bias + c, p.bias.begin());
  return p;
}

void LinearRowsF32(const PackedLinear& p, const float* x, std::int64_t rows, double* out) {
#if FEDSIM_LINEAR_ROWS_AVX2
  for (int k0 = 0; k0 < p.c; k0 += kMaxOutputs) {
    const FourRowsFn fn = kTable[static_cast<std::size_t>(std::min(kMaxOutputs, p.c - k0) - 1)];
    for (std::int64_t i = 0; i < rows; i += 4) {
      fn(p, k0, x + i * p.d, static_cast<int>(std::min<std::int64_t>(4, rows - i)), out + i * p.c);
    }
  }
#else
  // The same sums, one row at a time, the outputs innermost (contiguous in
  // the packed W, so the compiler may vectorise across them).
  std::vector<double> acc(static_cast<std::size_t>(p.padded));
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * p.d;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (std::int64_t j = 0; j < p.d; ++j) {
      const double xij = static_cast<double>(xi[j]);
      const double* wj = p.w.data() + j * p.padded;
      for (int k = 0; k < p.padded; ++k) acc[k] += xij * wj[k];
    }
    for (int k = 0; k < p.c; ++k) out[i * p.c + k] = acc[k] + p.bias[k];
  }
#endif
}

PackedLinearF PackLinearF(const double* w_colmajor, const double* bias, std::int64_t d, int c) {
  FEDSIM_CHECK(d >= 1 && c >= 1) << "d " << d << ", c " << c;
  PackedLinearF p;
  p.d = d;
  p.c = c;
  p.w.resize(static_cast<std::size_t>(d * c));
  // Training packs W at every step, so this transpose is on the hot path:
  // blocks of 8 features, converted column by column into a small tile
  // (contiguous reads, vectorised), then written out row by row
  // (contiguous writes).
  float* out = p.w.data();
  constexpr std::int64_t kBlock = 8;
  std::vector<float> tile(static_cast<std::size_t>(kBlock * c));
  std::int64_t j0 = 0;
#if FEDSIM_LINEAR_ROWS_AVX2
  // 8 x 8 blocks in registers: 8 features of 8 outputs converted, then
  // transposed (the standard unpack/shuffle/permute sequence), each row's
  // 8 outputs stored at once; the outputs beyond a multiple of 8 go through
  // the tile below. The same values as the plain loop: only the
  // conversion double -> float, in another order.
  const int c8 = c / 8 * 8;
  if (c8 > 0) {
    for (; j0 + kBlock <= d; j0 += kBlock) {
      for (int k0 = 0; k0 < c8; k0 += 8) {
        __m256 v[8];
        for (int k = 0; k < 8; ++k) {
          const double* col = w_colmajor + static_cast<std::int64_t>(k0 + k) * d + j0;
          v[k] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(_mm256_loadu_pd(col))),
                                      _mm256_cvtpd_ps(_mm256_loadu_pd(col + 4)), 1);
        }
        // v[k] lane l = W(j0 + l, k0 + k); transpose to rows j0 + l.
        const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
        const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
        const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
        const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
        const __m256 rows[8] = {
            _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
            _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
            _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
            _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
        for (int l = 0; l < 8; ++l) _mm256_storeu_ps(out + (j0 + l) * c + k0, rows[l]);
      }
      for (int k = c8; k < c; ++k) {
        const double* col = w_colmajor + static_cast<std::int64_t>(k) * d + j0;
        for (std::int64_t l = 0; l < kBlock; ++l) out[(j0 + l) * c + k] = static_cast<float>(col[l]);
      }
    }
  }
#endif
  for (; j0 + kBlock <= d; j0 += kBlock) {
    for (int k = 0; k < c; ++k) {
      const double* col = w_colmajor + static_cast<std::int64_t>(k) * d + j0;
      float* t = tile.data() + k * kBlock;
      for (std::int64_t l = 0; l < kBlock; ++l) t[l] = static_cast<float>(col[l]);
    }
    for (std::int64_t l = 0; l < kBlock; ++l) {
      float* row = out + (j0 + l) * c;
      for (int k = 0; k < c; ++k) row[k] = tile[static_cast<std::size_t>(k * kBlock + l)];
    }
  }
  for (std::int64_t j = j0; j < d; ++j) {
    for (int k = 0; k < c; ++k) out[j * c + k] = static_cast<float>(w_colmajor[k * d + j]);
  }
  p.bias.assign(bias, bias + c);
  return p;
}

void LinearRowsF32Single(const PackedLinearF& p, const float* x, std::int64_t rows, double* out) {
  const float* at[8];
  for (std::int64_t i = 0; i < rows; i += 8) {
    const std::int64_t block = std::min<std::int64_t>(8, rows - i);
    for (std::int64_t q = 0; q < block; ++q) at[q] = x + (i + q) * p.d;
    LinearRowsF32SingleAt(p, at, block, out + i * p.c);
  }
}

void LinearRowsF32SingleAt(const PackedLinearF& p, const float* const* rows, std::int64_t n,
                           double* out) {
#if FEDSIM_LINEAR_ROWS_AVX2
  for (int k0 = 0; k0 < p.c; k0 += kMaxOutputsF) {
    const EightRowsFn fn =
        kTableF[static_cast<std::size_t>(std::min(kMaxOutputsF, p.c - k0) - 1)];
    for (std::int64_t i = 0; i < n; i += 8) {
      fn(p, k0, rows + i, static_cast<int>(std::min<std::int64_t>(8, n - i)), out + i * p.c);
    }
  }
#else
  std::vector<float> acc(static_cast<std::size_t>(p.c));
  for (std::int64_t i = 0; i < n; ++i) {
    const float* xi = rows[i];
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (std::int64_t j = 0; j < p.d; ++j) {
      const float* wj = p.w.data() + j * p.c;
      for (int k = 0; k < p.c; ++k) acc[k] += xi[j] * wj[k];
    }
    for (int k = 0; k < p.c; ++k) out[i * p.c + k] = static_cast<double>(acc[k]) + p.bias[k];
  }
#endif
}

void LinearGradF32(const float* const* rows, std::int64_t n, std::int64_t d, const float* g,
                   int c, double* grad) {
  FEDSIM_CHECK(n >= 1 && d >= 1 && c >= 1) << "n " << n << ", d " << d << ", c " << c;
#if FEDSIM_LINEAR_ROWS_AVX2
  for (int k0 = 0; k0 < c; k0 += kMaxGradOutputs) {
    const GradBlockFn fn =
        kGradTable[static_cast<std::size_t>(std::min(kMaxGradOutputs, c - k0) - 1)];
    // The lanes of the last, partial block of features.
    const int tail = static_cast<int>(d % 8);
    std::int32_t mask[8];
    for (int l = 0; l < 8; ++l) mask[l] = l < tail ? -1 : 0;
    std::int64_t j = 0;
    for (; j + 8 <= d; j += 8) fn(rows, n, j, g, c, k0, mask, 8, d, grad);
    if (j < d) fn(rows, n, j, g, c, k0, mask, tail, d, grad);
  }
#else
  for (int k = 0; k < c; ++k) {
    for (std::int64_t j = 0; j < d; ++j) {
      float acc = 0.0f;
      for (std::int64_t i = 0; i < n; ++i) acc += rows[i][j] * g[i * c + k];
      grad[static_cast<std::int64_t>(k) * d + j] = static_cast<double>(acc);
    }
  }
#endif
}

}  // namespace fedsim
