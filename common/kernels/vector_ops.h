// File: common/kernels/vector_ops.h
//
// BLAS-1 style kernels over flat parameter vectors (Eigen maps of caller-owned
// memory). They are pure: no allocation policy, no I/O, threads only as the
// caller asks through KernelContext.
//
// Determinism: every reduction (Dot, SquaredNorm) sums partials over blocks
// of kBlockSize elements, a constant, and adds the partials in block order.
// The one-thread path uses the same blocks, so the result is bit-identical
// whatever num_threads is. Element-wise kernels (Axpy, WeightedSum) compute
// each element independently, in a fixed order over their inputs.
#ifndef FEDSIM_COMMON_KERNELS_VECTOR_OPS_H_
#define FEDSIM_COMMON_KERNELS_VECTOR_OPS_H_

#include <cstdint>
#include <span>

#include "common/base/types.h"

namespace fedsim {

struct KernelContext {
  // Threads a kernel may use. 1 runs inline, with no OpenMP region.
  int num_threads = 1;
};

// Elements per reduction block. Part of the numerical contract: changing it
// changes the last bits of reductions.
inline constexpr std::int64_t kBlockSize = 1 << 14;
// Below this many elements kernels run on one thread (threads cost more).
inline constexpr std::int64_t kMinParallelSize = 1 << 16;

// y += a * x. REQUIRES: x.size() == y.size().
void Axpy(double a, const Eigen::Ref<const Eigen::VectorXd>& x,
          Eigen::Ref<Eigen::VectorXd> y, const KernelContext& ctx = {});

// out = sum_k weights[k] * inputs[k], summed in k order for every element.
// REQUIRES: weights.size() == inputs.size(); every input has out.size()
// elements. With no inputs, out is set to zero.
void WeightedSum(std::span<const double> weights,
                 std::span<const Eigen::VectorXd* const> inputs,
                 Eigen::Ref<Eigen::VectorXd> out,
                 const KernelContext& ctx = {});

// Inner product with block-ordered summation.
double Dot(const Eigen::Ref<const Eigen::VectorXd>& x,
           const Eigen::Ref<const Eigen::VectorXd>& y,
           const KernelContext& ctx = {});

// Squared Euclidean norm with block-ordered summation.
double SquaredNorm(const Eigen::Ref<const Eigen::VectorXd>& x,
                   const KernelContext& ctx = {});

// True when no element is NaN or infinite.
bool AllFinite(const Eigen::Ref<const Eigen::VectorXd>& x);

// Fixes the cache sizes Eigen uses to block matrix products (L1 32 KiB,
// L2 512 KiB, L3 8 MiB) instead of those it reads from the CPU, so that a
// product sums in the same order on every machine and the processes of a
// multi-host run compute the same bits. Process-wide and idempotent; the
// runtimes call it before any training. Changing the constants changes the
// last bits of every run.
void UseFixedEigenBlocking();

// sum_j x_j^2 of n float32 values, accumulated in double in 8 lanes
// (element j into lane j % 8), the lanes added in order at the end: a
// fixed order (the same bits on any thread count) that the compiler
// vectorises. Clipping norms of float32 gradients (model.precision float32).
double SquaredNormInDouble(const float* x, std::int64_t n);

// Scales x to norm at most c: x *= min(1, c / ||x||). Returns the factor used.
// REQUIRES: c >= 0.
double ClipToNorm(Eigen::Ref<Eigen::VectorXd> x, double c);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_KERNELS_VECTOR_OPS_H_
