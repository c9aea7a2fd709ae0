#include "common/kernels/vector_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "Eigen/Core"
#include "common/base/check.h"

namespace fedsim {
namespace {

std::int64_t NumBlocks(std::int64_t n) {
  return (n + kBlockSize - 1) / kBlockSize;
}

int ThreadsFor(std::int64_t n, const KernelContext& ctx) {
  return n >= kMinParallelSize ? std::max(1, ctx.num_threads) : 1;
}

// Runs fn(begin, end) over the fixed blocks of [0, n), in parallel when asked.
template <typename Fn>
void ForEachBlock(std::int64_t n, const KernelContext& ctx, Fn fn) {
  const std::int64_t blocks = NumBlocks(n);
  const int threads = ThreadsFor(n, ctx);
  if (threads == 1) {
    for (std::int64_t b = 0; b < blocks; ++b) {
      fn(b, b * kBlockSize, std::min(n, (b + 1) * kBlockSize));
    }
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < blocks; ++b) {
    fn(b, b * kBlockSize, std::min(n, (b + 1) * kBlockSize));
  }
}

}  // namespace

void Axpy(double a, const Eigen::Ref<const Eigen::VectorXd>& x,
          Eigen::Ref<Eigen::VectorXd> y, const KernelContext& ctx) {
  FEDSIM_CHECK(x.size() == y.size()) << x.size() << " vs " << y.size();
  ForEachBlock(y.size(), ctx, [&](std::int64_t, std::int64_t lo,
                                  std::int64_t hi) {
    y.segment(lo, hi - lo) += a * x.segment(lo, hi - lo);
  });
}

void WeightedSum(std::span<const double> weights,
                 std::span<const Eigen::VectorXd* const> inputs,
                 Eigen::Ref<Eigen::VectorXd> out, const KernelContext& ctx) {
  FEDSIM_CHECK(weights.size() == inputs.size());
  for (const auto* v : inputs) FEDSIM_CHECK(v->size() == out.size());
  ForEachBlock(out.size(), ctx, [&](std::int64_t, std::int64_t lo,
                                    std::int64_t hi) {
    const std::int64_t len = hi - lo;
    auto seg = out.segment(lo, len);
    auto in = [&](std::size_t k) { return inputs[k]->segment(lo, len); };
    seg.setZero();
    // Four inputs per pass over the block: a quarter of the passes over
    // `seg` and four memory streams at once (docs/performance.md). Every
    // element still sums in k order, ((((s + w0 x0) + w1 x1) + w2 x2) +
    // w3 x3), bit for bit the one-input-per-pass loop.
    std::size_t k = 0;
    for (; k + 4 <= inputs.size(); k += 4) {
      seg = seg + weights[k] * in(k) + weights[k + 1] * in(k + 1) +
            weights[k + 2] * in(k + 2) + weights[k + 3] * in(k + 3);
    }
    for (; k < inputs.size(); ++k) seg += weights[k] * in(k);
  });
}

double Dot(const Eigen::Ref<const Eigen::VectorXd>& x,
           const Eigen::Ref<const Eigen::VectorXd>& y,
           const KernelContext& ctx) {
  FEDSIM_CHECK(x.size() == y.size());
  std::vector<double> partial(NumBlocks(x.size()), 0.0);
  ForEachBlock(x.size(), ctx, [&](std::int64_t b, std::int64_t lo,
                                  std::int64_t hi) {
    partial[b] = x.segment(lo, hi - lo).dot(y.segment(lo, hi - lo));
  });
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

double SquaredNorm(const Eigen::Ref<const Eigen::VectorXd>& x,
                   const KernelContext& ctx) {
  std::vector<double> partial(NumBlocks(x.size()), 0.0);
  ForEachBlock(x.size(), ctx, [&](std::int64_t b, std::int64_t lo,
                                  std::int64_t hi) {
    partial[b] = x.segment(lo, hi - lo).squaredNorm();
  });
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

bool AllFinite(const Eigen::Ref<const Eigen::VectorXd>& x) {
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

void UseFixedEigenBlocking() {
  Eigen::setCpuCacheSizes(32 * 1024, 512 * 1024, 8 * 1024 * 1024);
}

double ClipToNorm(Eigen::Ref<Eigen::VectorXd> x, double c) {
  FEDSIM_CHECK(c >= 0.0);
  const double norm = std::sqrt(SquaredNorm(x));
  if (norm <= c) return 1.0;
  const double factor = c / norm;
  x *= factor;
  return factor;
}

double SquaredNormInDouble(const float* x, std::int64_t n) {
  constexpr int kLanes = 8;
  double lane[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const double v = x[j + l];
      lane[l] += v * v;
    }
  }
  for (int l = 0; j < n; ++j, ++l) {
    const double v = x[j];
    lane[l] += v * v;
  }
  double sum = 0.0;
  for (int l = 0; l < kLanes; ++l) sum += lane[l];
  return sum;
}

}  // namespace fedsim
