// File: server/strategy/fedlsa.h
//
// The server side of FedLSA and SCAFFLSA (ALGORITHMS.md §3.2-3.3, Decision
// 3): every participating agent runs H local LSA steps from theta_t and the
// server averages the final local iterates with equal weights,
//   theta_{t+1} = theta_t + (1/|S_t|) sum_c (theta_c^{t,H} - theta_t).
// SCAFFLSA differs only on the agents (their control variates never leave
// them), so one server class serves both.
//
// EXTENSION (labelled so in config and docs): with communication
// probability p > 0 the number of local steps of round t is drawn once for
// all agents, H_t ~ Geometric(p) on {1, 2, ...} (Scaffnew's shared coin),
// from the stream (seed, kCommunication, -1, t).
#ifndef FEDSIM_SERVER_STRATEGY_FEDLSA_H_
#define FEDSIM_SERVER_STRATEGY_FEDLSA_H_

#include <cstdint>
#include <string>

#include "server/strategy/strategy.h"

namespace fedsim {

struct FedLsaOptions {
  bool control_variates = false;   // display "SCAFFLSA" instead of "FedLSA"
  double eta = 0.01;               // local step size
  std::int64_t local_steps = 1;    // H (deterministic communication)
  double communication_probability = 0.0;  // p; 0 = every H steps
  std::uint64_t seed = 1;
};

class FedLsa : public SyncStrategy {
 public:
  explicit FedLsa(const FedLsaOptions& options);

  std::string_view name() const override {
    return options_.control_variates ? "SCAFFLSA" : "FedLSA";
  }
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

  // The number of local steps of `round` (H, or the Geometric(p) draw).
  std::int64_t LocalSteps(Round round) const;

 private:
  FedLsaOptions options_;
  FlatVector step_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_FEDLSA_H_
