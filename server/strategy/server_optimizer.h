// File: server/strategy/server_optimizer.h
//
// Server optimisers for the FedAvg family (Reddi et al., ICLR 2021,
// "Adaptive Federated Optimization", Algorithm 2; FedAvgM after Hsu et al.
// 2019). The round's aggregated update Delta_t (the strategy's weighted mean
// of the client updates) is the negative of a pseudo-gradient; eta is the
// server step size (algorithm.server_lr):
//
//   kSgd:      x += eta Delta_t                       (FedAvg: unchanged)
//   kMomentum: m = beta m + Delta_t;  x += eta m      (FedAvgM)
//   kAdam, kYogi, kAdagrad:
//     m = beta1 m + (1 - beta1) Delta_t
//     kAdagrad: v = v + Delta_t^2
//     kYogi:    v = v - (1 - beta2) Delta_t^2 sign(v - Delta_t^2)
//     kAdam:    v = beta2 v + (1 - beta2) Delta_t^2
//     x += eta m / (sqrt(v) + tau)
//
// All operations are element-wise (squares, sign, sqrt and division per
// coordinate), so they are deterministic. Before the first step m = 0 and
// v = tau^2 (Algorithm 2 requires v_{-1} >= tau^2; fedsim takes the bound).
// There is no bias correction (the paper has none). kSgd and kMomentum with
// beta = 0 run exactly FedAvg's Axpy, so they are bit for bit FedAvg.
//
// Thread safety: not thread-safe; the strategy serialises calls.
#ifndef FEDSIM_SERVER_STRATEGY_SERVER_OPTIMIZER_H_
#define FEDSIM_SERVER_STRATEGY_SERVER_OPTIMIZER_H_

#include <string>
#include <string_view>

#include "common/base/types.h"
#include "common/base/byte_io.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {

enum class ServerOptimizerKind { kSgd, kMomentum, kAdam, kYogi, kAdagrad };

struct ServerOptimizerOptions {
  ServerOptimizerKind kind = ServerOptimizerKind::kSgd;
  double lr = 1.0;        // eta > 0
  double momentum = 0.9;  // kMomentum's beta, in [0, 1)
  double beta1 = 0.9;     // in [0, 1)
  double beta2 = 0.99;    // in [0, 1)
  double tau = 1e-3;      // > 0
};

// `o` with its step size set to `lr` (the strategies' server_lr).
inline ServerOptimizerOptions WithServerLr(ServerOptimizerOptions o, double lr) {
  o.lr = lr;
  return o;
}

class ServerOptimizer {
 public:
  // REQUIRES: options in range (checked).
  explicit ServerOptimizer(const ServerOptimizerOptions& options);

  // One server step with the round's aggregated update `delta`:
  // updates m, v and `global`. REQUIRES: delta.size() == global.size(),
  // and the same size at every call.
  void Step(const FlatVector& delta, FlatVector& global,
            const KernelContext& kernel = {});

  // The display name of `base` ("FedAvg") with this optimiser: FedAvg
  // becomes FedAvgM, FedAdam, FedYogi, FedAdagrad; other bases get a suffix
  // ("FedAU+Adam"). kSgd keeps `base`.
  std::string DisplayName(std::string_view base) const;

  const ServerOptimizerOptions& options() const { return options_; }
  // m and v (empty before the first step; v unused by kSgd and kMomentum).
  const FlatVector& first_moment() const { return m_; }
  const FlatVector& second_moment() const { return v_; }

  // m and v for a checkpoint, and back. Decode fails (returns false,
  // changing nothing) on a malformed buffer or vectors of unequal size.
  void Encode(ByteWriter& out) const;
  bool Decode(ByteReader& in);

 private:
  ServerOptimizerOptions options_;
  FlatVector m_;
  FlatVector v_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_SERVER_OPTIMIZER_H_
