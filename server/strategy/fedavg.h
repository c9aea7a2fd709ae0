// File: server/strategy/fedavg.h
//
// FedAvg (McMahan et al., AISTATS 2017) exactly as ALGORITHMS.md §1 and
// Decision 1: the round's participants (FedAvg's own cohort sampling is the
// UniformCohort participation model) train locally; the clients that
// return are aggregated with weights
// n_k / m_t, m_t = sum of n_k over those clients, in the delta form
//   w_{t+1} = w_t + eta_g * sum_k (n_k / m_t) * Delta_k.
// Clients that fail or miss the deadline are dropped and the weights
// renormalised over the rest; if nobody returns, w is unchanged.
//
// The same class runs FedProx (Li et al., MLSys 2020): local.prox_mu > 0
// adds the proximal term to local SGD (client/trainer/local_trainer.h) and
// stragglers are kept with partial work (stragglers.h); the aggregation is
// FedAvg's. A server optimiser (server_optimizer.h) may replace the final
// step x += eta_g * mean update (FedAvgM, FedAdam, FedYogi, FedAdagrad).
#ifndef FEDSIM_SERVER_STRATEGY_FEDAVG_H_
#define FEDSIM_SERVER_STRATEGY_FEDAVG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/kernels/vector_ops.h"
#include "server/strategy/robust_aggregation.h"
#include "server/strategy/server_optimizer.h"
#include "server/strategy/stragglers.h"
#include "server/strategy/strategy.h"

namespace fedsim {

struct FedAvgOptions {
  double server_lr = 1.0;         // eta_g > 0
  LocalTrainingSpec local;        // E, B, eta (and FedProx's mu) for every client
  KernelContext kernel;           // threads for the aggregation kernel
  bool fedprox = false;           // display "FedProx" instead of "FedAvg"
  StragglerOptions stragglers;    // none by default
  // The server step; its lr is server_lr (the field here is ignored).
  ServerOptimizerOptions server_optimizer;
  // aggregation.rule (docs/robust.md): kMean is the weighted mean above;
  // any other rule replaces it by an unweighted robust aggregate of the
  // updates, which the server optimiser then applies as Delta_t.
  RobustOptions robust;
};

class FedAvg : public SyncStrategy {
 public:
  // `client_sizes[k]` is n_k, the number of training rows of client k.
  // REQUIRES: options validated (see common/config), client_sizes non-empty.
  FedAvg(const FedAvgOptions& options, std::vector<std::int64_t> client_sizes);

  // The server optimiser's moments (FedAvgM, FedAdam, ...).
  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;
  std::string_view name() const override { return name_; }
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

 private:
  FedAvgOptions options_;
  ServerOptimizer optimizer_;  // its m and v are FedAvg's only state
  std::string name_;
  std::vector<std::int64_t> client_sizes_;
  std::vector<TaskSpec> planned_;  // this round's plan, for checking results
  FlatVector step_;                // scratch: the weighted mean update
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_FEDAVG_H_
